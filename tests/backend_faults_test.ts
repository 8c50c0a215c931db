/**
 * What a client sees when a backend fails under a call: a crash mid-call, and response
 * headers too large to take. Each ends the call at once with UNAVAILABLE naming the backend
 * (as Envoy answers), counts as that backend's failure for outlier detection, and leaves no
 * stream behind.
 * @module
 */
import assert from "node:assert/strict";
import { adminRequest, startAdminProxy } from "./support/admin_client.ts";
import { clusterConfig, GRPC_JS, type ProxyProcess, waitFor } from "./support/harness.ts";
import {
  concatBytes,
  encodeFieldBlock,
  encodeFrame,
  fieldValue,
  Flag,
  FrameType,
  H2Wire,
  type HeaderField,
  type StreamResponse,
} from "./support/h2_wire.ts";
import { GRPC_RESPONSE_HEADERS, startH2RawBackend } from "./support/h2_raw_backend.ts";
import { TestMethod } from "./support/test_backend.ts";

const UNAVAILABLE = 14;

/** The one backend's entry in `/clusters/echo`. */
async function backendView(proxy: ProxyProcess): Promise<Record<string, unknown>> {
  const { body } = await adminRequest(proxy, "/clusters/echo");
  return (body as { backends: Record<string, unknown>[] }).backends[0];
}

/** The `grpc-message` of a response, trailers-only or not, percent-decoded. */
function grpcMessage(response: StreamResponse): string {
  return decodeURIComponent(
    fieldValue(response.trailers ?? response.headers, "grpc-message") ?? "",
  );
}

/** HEADERS plus CONTINUATION frames carrying `fields`, 16 KiB each (RFC 9113 §6.10). */
function splitHeaderBlock(streamId: number, fields: readonly HeaderField[]): Uint8Array {
  const block = encodeFieldBlock(fields);
  const frames: Uint8Array[] = [];
  for (let at = 0; at < block.length; at += 16_384) {
    const last = at + 16_384 >= block.length;
    frames.push(encodeFrame({
      type: at === 0 ? FrameType.HEADERS : FrameType.CONTINUATION,
      flags: last ? Flag.END_HEADERS : 0,
      streamId,
      payload: block.subarray(at, Math.min(block.length, at + 16_384)),
    }));
  }
  return concatBytes(...frames);
}

Deno.test({
  name: "a backend killed mid-call gives UNAVAILABLE naming it, counted as its failure",
  ...GRPC_JS,
  fn: async () => {
    const backend = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL("./support/backend_process.ts", import.meta.url).pathname, "b"],
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const output = backend.stdout.pipeThrough(new TextDecoderStream()).getReader();
    const address = /listening (\S+)/.exec((await output.read()).value ?? "")?.[1];
    assert.ok(address, "the backend process prints its address");
    const proxy = await startAdminProxy(clusterConfig([address]));
    const wire = await H2Wire.open(proxy.address);
    try {
      const id = wire.nextStreamId();
      // A server stream that has sent its headers and first message, then holds; no
      // deadline, so only the proxy can end it.
      await wire.startCall(id, TestMethod.stream, new Uint8Array(), [
        ["x-count", "3"],
        ["x-hold", "1"],
      ]);
      await wire.readUntil((frame) => frame.streamId === id && frame.type === FrameType.DATA);
      backend.kill("SIGKILL");
      await backend.status;
      const response = await wire.readResponse(id);
      assert.equal(response.grpcStatus, UNAVAILABLE, JSON.stringify(response));
      assert.match(grpcMessage(response), new RegExp(`backend ${address}`));
      const view = await backendView(proxy);
      assert.equal(view.failures, 1, "the backend's failure counter");
      assert.equal(view.activeStreams, 0);
    } finally {
      await wire.close();
      await proxy.stop();
      await output.cancel().catch(() => {});
    }
  },
});

for (
  const [size, reason] of [
    [1 << 20, /http2\.maxHeaderBlockSize/],
    [100 * 1024, /http2\.maxHeaderListSize/],
  ] as const
) {
  Deno.test({
    name: `a backend's ${size >> 10} KiB response header ends the call at once with UNAVAILABLE`,
    ...GRPC_JS,
    fn: async () => {
      const backend = startH2RawBackend({
        onStream: (connection, id) =>
          connection.write(
            splitHeaderBlock(id, [...GRPC_RESPONSE_HEADERS, ["x-big", "a".repeat(size)]]),
          ),
      });
      const proxy = await startAdminProxy(clusterConfig([backend.address]));
      const wire = await H2Wire.open(proxy.address);
      try {
        const id = wire.nextStreamId();
        await wire.startCall(id, TestMethod.echo, new Uint8Array(1)); // no deadline
        const response = await wire.readResponse(id);
        assert.equal(response.grpcStatus, UNAVAILABLE, JSON.stringify(response));
        assert.match(grpcMessage(response), new RegExp(`backend ${backend.address}`));
        assert.match(grpcMessage(response), reason);
        await waitFor(async () => (await backendView(proxy)).activeStreams === 0, {
          what: "no stream left behind",
        });
      } finally {
        await wire.close();
        await proxy.stop();
        await backend.close();
      }
    },
  });
}
