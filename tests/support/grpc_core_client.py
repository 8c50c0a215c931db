"""A gRPC C-core client (Debian's python3-grpcio) for tests/grpc_core_client_test.ts.

It drives the `test.Test` service through the proxy with grpc's generic API and raw bytes, so
no generated stubs are needed. All cases run on one channel, so one HTTP/2 connection carries
them together with C-core's BDP and keepalive pings, and must stay up throughout.

Protocol with the test:
- stdin, first line: a JSON config: the target, the method paths, limits, cases to skip, and
  metadata values as hex (so the test knows the exact bytes without trusting this script).
- stdout: one JSON object per line. `{"case": NAME, ...}` is a result; `{"case": NAME,
  "error": ...}` a case that raised. `{"await": NAME}` means the script blocks until the test
  writes a line to stdin, for conditions only the test can see (the backend got the call, C-core
  finished N keepalive pings).
- stderr: C-core's own log (the test sets GRPC_TRACE), plus `MARK NAME` lines written just
  before an `await`, so the test can count the pings C-core logged after that point.
"""

import hashlib
import json
import os
import queue
import sys
import threading
import traceback

import grpc

# No call may hang the test: every call has a deadline well inside the test's own bounds.
CALL_TIMEOUT_S = 20.0

MiB = 1 << 20


def emit(record):
    print(json.dumps(record), flush=True)


def await_test(name):
    """Lets the test check a condition before the script goes on."""
    # The mark goes through fd 2 like C-core's log, so its position there is exact.
    sys.stderr.write(f"MARK {name}\n")
    sys.stderr.flush()
    emit({"await": name})
    if not sys.stdin.readline():
        raise RuntimeError(f"the test closed stdin while {name} was waiting")


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def metadata_json(metadata):
    """Metadata as C-core reports it, in order; binary values (-bin keys) as hex."""
    entries = []
    for key, value in metadata or ():
        if isinstance(value, bytes):
            entries.append({"key": key, "hex": value.hex()})
        else:
            entries.append({"key": key, "value": value})
    return entries


def status_json(error):
    code = error.code()
    return {"code": code.value[0], "name": code.name, "details": error.details()}


def error_json(error):
    return {
        "status": status_json(error),
        "headers": metadata_json(error.initial_metadata()),
        "trailers": metadata_json(error.trailing_metadata()),
    }


def payload_json(sent, received):
    return {
        "sentBytes": len(sent),
        "receivedBytes": len(received),
        "sent": sha256(sent),
        "received": sha256(received),
    }


def expect_error(call, *args, **kwargs):
    try:
        call(*args, **kwargs)
    except grpc.RpcError as error:
        return error
    raise AssertionError("the call succeeded but should have failed")


def random_sizes(count, largest):
    return [int.from_bytes(os.urandom(2), "big") % (largest + 1) for _ in range(count)]


def channel_options(config):
    return [
        ("grpc.max_receive_message_length", config["maxMessageBytes"]),
        ("grpc.max_send_message_length", config["maxMessageBytes"]),
        ("grpc.keepalive_time_ms", config["keepaliveMs"]),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.http2.bdp_probe", 1),  # the default, stated: BDP pings are part of the test
        ("grpc.enable_http_proxy", 0),  # loopback only, whatever the environment says
    ]


class Outbox:
    """A request iterator fed one message at a time, for lock-step streams."""

    def __init__(self):
        self._queue = queue.Queue()

    def send(self, message):
        self._queue.put(message)

    def close(self):
        self._queue.put(None)

    def __iter__(self):
        return self

    def __next__(self):
        message = self._queue.get()
        if message is None:
            raise StopIteration
        return message


class Service:
    """The `test.Test` methods on one channel, by the names the test's `TestMethod` gives them
    (plus `noRoute`, a path the proxy has no route for)."""

    def __init__(self, channel, config):
        self.channel = channel
        self.config = config
        self._paths = config["methods"]

    def unary(self, name):
        return self.channel.unary_unary(self._paths[name])

    def client_stream(self, name):
        return self.channel.stream_unary(self._paths[name])

    def server_stream(self, name):
        return self.channel.unary_stream(self._paths[name])

    def bidi(self, name):
        return self.channel.stream_stream(self._paths[name])

    def read_stream(self, count, size):
        """Reads a whole `Stream` call of `count` messages of `size` bytes."""
        metadata = (("x-count", str(count)), ("x-size", str(size)))
        call = self.server_stream("stream")(b"", metadata=metadata, timeout=CALL_TIMEOUT_S)
        messages = list(call)
        return {
            "count": count,
            "size": size,
            "messages": len(messages),
            "sizes": sorted({len(message) for message in messages}),
            "received": sha256(b"".join(messages)),
            "headers": metadata_json(call.initial_metadata()),
        }


def case_unary(service):
    results = []
    headers = []
    for size in [0, 1, 1000, 65_536, 4 * MiB]:
        request = os.urandom(size)
        response, call = service.unary("echo").with_call(request, timeout=CALL_TIMEOUT_S)
        results.append(payload_json(request, response))
        headers.append(metadata_json(call.initial_metadata()))
    return {"payloads": results, "headers": headers}


def case_client_streaming(service):
    # Many small messages, empty ones, and one large message in the middle.
    parts = [os.urandom(size) for size in random_sizes(1000, 4096)]
    parts[10:10] = [b"", os.urandom(MiB), b""]
    collect = service.client_stream("collect")
    response, call = collect.with_call(iter(parts), timeout=CALL_TIMEOUT_S)
    return {
        "messages": len(parts),
        "payload": payload_json(b"".join(parts), response),
        "headers": metadata_json(call.initial_metadata()),
    }


def case_server_streaming(service):
    # 2000 small messages, then 4 of 2 MiB (8 MiB: flow-control windows and BDP pings).
    return {"streams": [service.read_stream(2000, 100), service.read_stream(4, 2 * MiB)]}


def chat_json(sent, echoes):
    return {
        "messages": len(sent),
        "echoes": len(echoes),
        "payload": payload_json(b"".join(sent), b"".join(echoes)),
        "inOrder": echoes == sent,
    }


def case_bidi_streaming(service):
    # Lock-step: each message goes out only after the previous echo came back.
    lock_step = [os.urandom(size) for size in random_sizes(100, 2000)] + [os.urandom(2 * MiB)]
    outbox = Outbox()
    call = service.bidi("chat")(outbox, timeout=CALL_TIMEOUT_S)
    echoes = []
    for message in lock_step:
        outbox.send(message)
        echoes.append(next(call))
    outbox.close()
    echoes += list(call)
    # Pipelined: all messages are queued before any echo is read.
    pipelined = [os.urandom(size) for size in random_sizes(1000, 1000)]
    burst = list(service.bidi("chat")(iter(pipelined), timeout=CALL_TIMEOUT_S))
    return {
        "lockStep": chat_json(lock_step, echoes),
        "pipelined": chat_json(pipelined, burst),
        "headers": metadata_json(call.initial_metadata()),
    }


def echo_metadata(service, metadata):
    _, call = service.unary("echoMetadata").with_call(b"", metadata=metadata,
                                                      timeout=CALL_TIMEOUT_S)
    return {
        "headers": metadata_json(call.initial_metadata()),
        "trailers": metadata_json(call.trailing_metadata()),
    }


def case_metadata(service):
    config = service.config
    return echo_metadata(service, (
        ("x-text", config["text"]),
        ("x-blob-bin", bytes.fromhex(config["blobHex"])),
        ("x-second-bin", bytes.fromhex(config["secondHex"])),
    ))


def case_repeated_metadata(service):
    # Joined into one "a, b" field, two base64 values are one value C-core cannot decode: it
    # then drops the connection, which the test's last step reports as well.
    config = service.config
    return echo_metadata(service, (
        ("x-text", "first"),
        ("x-text", "second"),
        ("x-blob-bin", bytes.fromhex(config["blobHex"])),
        ("x-blob-bin", bytes.fromhex(config["secondHex"])),
    ))


def case_errors(service):
    config = service.config
    metadata = (
        ("x-error-detail", config["text"]),
        ("x-error-detail-bin", bytes.fromhex(config["errorHex"])),
    )
    fail = expect_error(service.unary("fail"), b"", metadata=metadata, timeout=CALL_TIMEOUT_S)
    immediate = expect_error(service.unary("failImmediately"), b"", timeout=CALL_TIMEOUT_S)
    # No route: a trailers-only error the proxy makes itself, on a unary and a stream call.
    no_route = expect_error(service.unary("noRoute"), b"", timeout=CALL_TIMEOUT_S)
    streamed = service.server_stream("noRoute")(b"", timeout=CALL_TIMEOUT_S)
    stream_error = expect_error(list, streamed)
    return {
        "fail": error_json(fail),
        "failImmediately": error_json(immediate),
        "noRoute": error_json(no_route),
        "noRouteStream": error_json(stream_error),
    }


def case_deadline(service):
    timeout_s = service.config["deadlineMs"] / 1000
    return {"status": status_json(expect_error(service.unary("hang"), b"", timeout=timeout_s))}


def case_cancel_unary(service):
    future = service.unary("hang").future(b"", timeout=CALL_TIMEOUT_S)
    await_test("cancel_unary")  # the test waits until the backend holds the call
    cancelled = future.cancel()
    return {"cancelled": cancelled, "code": future.code().name}


def case_cancel_stream(service):
    # x-hold: the backend sends one message, then waits, so the stream is open mid-transfer.
    metadata = (("x-count", "10"), ("x-size", "100"), ("x-hold", "1"))
    call = service.server_stream("stream")(b"", metadata=metadata, timeout=CALL_TIMEOUT_S)
    first = next(call)
    cancelled = call.cancel()
    return {"first": len(first), "cancelled": cancelled, "code": call.code().name}


def case_concurrent(service):
    count = service.config["concurrentCalls"]
    requests = [i.to_bytes(4, "big") + os.urandom(1000 + i) for i in range(count)]
    # Every call is started before any result is read, so all are in flight together.
    echo = service.unary("echo")
    futures = [echo.future(request, timeout=CALL_TIMEOUT_S) for request in requests]
    failures = []
    for request, future in zip(requests, futures):
        try:
            if future.result() != request:
                failures.append("wrong payload")
        except grpc.RpcError as error:
            failures.append(f"{error.code().name}: {error.details()}")
    return {"calls": count, "ok": count - len(failures), "failures": failures[:5]}


def case_keepalive(service):
    # Bulk first: BDP pings go out while DATA frames stream in; then an upload the other way.
    bulk = service.read_stream(64, 128 * 1024)
    upload = [os.urandom(256 * 1024) for _ in range(24)]
    collected = service.client_stream("collect")(iter(upload), timeout=CALL_TIMEOUT_S)
    # Idle with a stream open: keepalive pings while a long-lived call waits for messages.
    outbox = Outbox()
    chat = service.bidi("chat")(outbox, timeout=CALL_TIMEOUT_S)
    before, after = os.urandom(100), os.urandom(100)
    outbox.send(before)
    echoed = [next(chat)]
    await_test("idle_with_stream")
    outbox.send(after)
    echoed.append(next(chat))
    outbox.close()
    echoed += list(chat)
    # Idle with no call at all (keepalive_permit_without_calls).
    await_test("idle_without_calls")
    request = os.urandom(1000)
    response = service.unary("echo")(request, timeout=CALL_TIMEOUT_S)
    return {
        "bulk": bulk,
        "upload": payload_json(b"".join(upload), collected),
        "chat": {"echoed": echoed == [before, after], "code": chat.code().name},
        "afterIdle": payload_json(request, response),
    }


CASES = [
    ("unary", case_unary),
    ("client_streaming", case_client_streaming),
    ("server_streaming", case_server_streaming),
    ("bidi_streaming", case_bidi_streaming),
    ("metadata", case_metadata),
    ("repeated_metadata", case_repeated_metadata),
    ("errors", case_errors),
    ("deadline", case_deadline),
    ("cancel_unary", case_cancel_unary),
    ("cancel_stream", case_cancel_stream),
    ("concurrent", case_concurrent),
    ("keepalive", case_keepalive),
]


class StateLog:
    """Every connectivity state the channel passes through; leaving READY means the
    connection closed (GOAWAY, reset or error)."""

    def __init__(self, channel):
        self._lock = threading.Lock()
        self._states = []
        channel.subscribe(self._record, try_to_connect=True)

    def _record(self, state):
        with self._lock:
            self._states.append(state.name)

    def states(self):
        with self._lock:
            return list(self._states)


def main():
    config = json.loads(sys.stdin.readline())
    skip = set(config["skip"])
    # Closed even when the test gives up on the script, or C-core's threads keep it alive.
    with grpc.insecure_channel(config["target"], options=channel_options(config)) as channel:
        states = StateLog(channel)
        service = Service(channel, config)
        for name, run in CASES:
            if name in skip:
                continue
            try:
                emit({"case": name, **run(service)})
            except Exception as error:  # reported to the test, which fails the case with it
                emit({"case": name, "error": f"{error!r}\n{traceback.format_exc()}"})
        emit({"case": "connection", "states": states.states()})
        await_test("close")  # the test reads the proxy's log while the connection is open
    emit({"case": "done"})


if __name__ == "__main__":
    main()
