/**
 * An example gRPC backend on `@grpc/grpc-js`: `helloworld.Greeter/SayHello` plus the
 * standard `grpc.health.v1.Health` service. Messages are JSON, since the proxy never looks
 * inside them; the health service speaks real protobuf (from `grpc-health-check`).
 *
 * Run one standalone: `deno run -A examples/greeter_backend.ts --name b1 --port 50051`.
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { HealthImplementation, type ServingStatus } from "grpc-health-check";
import { parseArgs } from "node:util";

/** A JSON message codec for generic grpc-js service definitions. */
export const jsonCodec: {
  serialize: (value: unknown) => Buffer;
  deserialize: (bytes: Buffer) => unknown;
} = {
  serialize: (value) => Buffer.from(JSON.stringify(value)),
  deserialize: (bytes) => JSON.parse(bytes.toString() || "null"),
};

/** `helloworld.Greeter` with JSON messages `{ name }` → `{ message, backend }`. */
export const greeterService: grpc.ServiceDefinition = {
  SayHello: {
    path: "/helloworld.Greeter/SayHello",
    requestStream: false,
    responseStream: false,
    requestSerialize: jsonCodec.serialize,
    requestDeserialize: jsonCodec.deserialize,
    responseSerialize: jsonCodec.serialize,
    responseDeserialize: jsonCodec.deserialize,
  },
};

/** A client constructor for {@link greeterService}. */
export const GreeterClient: grpc.ServiceClientConstructor = grpc.makeGenericClientConstructor(
  greeterService,
  "helloworld.Greeter",
);

/** A running example backend. */
export interface GreeterBackend {
  /** Name reported in every reply. */
  readonly name: string;
  /** `127.0.0.1:port`. */
  readonly address: string;
  /** Calls answered so far. */
  readonly calls: () => number;
  /** Sets the health status of the whole server (`""`) or one service. */
  setServing(status: ServingStatus, service?: string): void;
  /** Stops the server at once. */
  stop(): Promise<void>;
}

/** Starts a greeter backend on `host:port` (port 0 picks a free one). */
export async function startGreeterBackend(
  name: string,
  port = 0,
  host = "127.0.0.1",
): Promise<GreeterBackend> {
  const server = new grpc.Server();
  let calls = 0;
  server.addService(greeterService, {
    SayHello: (
      call: grpc.ServerUnaryCall<{ name?: string }, unknown>,
      callback: grpc.sendUnaryData<unknown>,
    ) => {
      calls++;
      callback(null, { message: `Hello, ${call.request?.name ?? "world"}!`, backend: name });
    },
  });
  const health = new HealthImplementation({ "": "SERVING", "helloworld.Greeter": "SERVING" });
  health.addToServer(server);
  const boundPort = await new Promise<number>((resolve, reject) => {
    server.bindAsync(
      `${host}:${port}`,
      grpc.ServerCredentials.createInsecure(),
      (error, bound) => error ? reject(error) : resolve(bound),
    );
  });
  return {
    name,
    address: `${host}:${boundPort}`,
    calls: () => calls,
    setServing: (status, service = "") => health.setStatus(service, status),
    stop: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
  };
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    strict: true,
    options: { name: { type: "string", default: "greeter" }, port: { type: "string" } },
  });
  const backend = await startGreeterBackend(values.name!, Number(values.port ?? 50051));
  console.log(`greeter ${backend.name} listening on ${backend.address}`);
}
