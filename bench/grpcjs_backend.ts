/**
 * The bench's real gRPC backend, on `@grpc/grpc-js`: `bench.Echo/Unary` returns the request
 * payload, and `bench.Echo/ServerStream` sends it back `bench-messages` times (a metadata
 * entry, default 1). Messages are raw bytes, since nothing here looks inside them.
 *
 * It exists for the streaming sanity scenario: a real gRPC stack behind every target.
 * Usage: `deno run -A bench/grpcjs_backend.ts --port 0`. Prints `listening <port>` when ready.
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { parseArgs } from "node:util";
import { deferGoawayCloseOnAllServerSessions } from "../src/health/node_http2_goaway.ts";

// Every target's proxy closes its connections here with GOAWAY when it stops; without the
// deferral (docs/deno-http2.md) that aborts this process, and later scenarios find it gone.
deferGoawayCloseOnAllServerSessions();

const identity = (bytes: Buffer): Buffer => bytes;

function method(path: string, responseStream: boolean): grpc.MethodDefinition<Buffer, Buffer> {
  return {
    path,
    requestStream: false,
    responseStream,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  };
}

/** `bench.Echo`: unary and server-streaming echo of raw bytes. */
export const echoService: grpc.ServiceDefinition = {
  Unary: method("/bench.Echo/Unary", false),
  ServerStream: method("/bench.Echo/ServerStream", true),
};

/** How many copies a `ServerStream` call asked for. */
function requestedCount(metadata: grpc.Metadata): number {
  const count = Number(metadata.get("bench-messages")[0] ?? 1);
  return Number.isInteger(count) && count >= 0 ? count : 1;
}

/** Writes the copies with backpressure, then ends the call with status OK. */
function streamCopies(call: grpc.ServerWritableStream<Buffer, Buffer>): void {
  let left = requestedCount(call.metadata);
  const pump = (): void => {
    while (left > 0) {
      if (call.cancelled) return;
      left--;
      if (!call.write(call.request)) {
        call.once("drain", pump);
        return;
      }
    }
    call.end();
  };
  pump();
}

/** Starts the echo server on `127.0.0.1:port` (0 picks one) and resolves with the port. */
export function startGrpcJsBackend(port: number): Promise<number> {
  const server = new grpc.Server();
  server.addService(echoService, {
    Unary: (call: grpc.ServerUnaryCall<Buffer, Buffer>, done: grpc.sendUnaryData<Buffer>) =>
      done(null, call.request),
    ServerStream: streamCopies,
  });
  return new Promise((resolve, reject) => {
    server.bindAsync(
      `127.0.0.1:${port}`,
      grpc.ServerCredentials.createInsecure(),
      (error, bound) => error ? reject(error) : resolve(bound),
    );
  });
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { port: { type: "string", default: "0" } },
  });
  console.log(`listening ${await startGrpcJsBackend(Number(values.port))}`);
}
