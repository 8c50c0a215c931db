/**
 * grpc-js backends for the health tests: the example greeter with a real health service
 * (grpc-health-check), without one, or with a hand-written `Check` that can be made to hang;
 * and a greeter whose calls can be made to fail with UNAVAILABLE.
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import {
  HealthImplementation,
  service as healthService,
  type ServingStatus,
} from "grpc-health-check";
import { greeterService } from "../../examples/greeter_backend.ts";

/** Which health service a test backend offers. */
export type HealthKind =
  /** grpc-health-check's `HealthImplementation`. */
  | "standard"
  /** None: `Check` answers UNIMPLEMENTED. */
  | "none"
  /** A hand-written `Check` that answers SERVING until {@link HealthBackend.hangChecks}. */
  | "hangable";

/** A running test backend. */
export interface HealthBackend {
  /** Name reported in every reply. */
  readonly name: string;
  /** `127.0.0.1:port`. */
  readonly address: string;
  /** `SayHello` calls received, failed ones included. */
  calls(): number;
  /** Epoch ms of the last `SayHello` call received; 0 before the first. */
  lastCallAt(): number;
  /** `Check` calls received (only counted for `"hangable"`). */
  checks(): number;
  /** Sets the whole server's status (`"standard"` only). */
  setServing(status: ServingStatus): void;
  /** From now on, `Check` never answers (`"hangable"` only). */
  hangChecks(): void;
  /** Makes `SayHello` fail with UNAVAILABLE (true) or answer normally (false). */
  failCalls(fail: boolean): void;
  /** Stops the server at once, cancelling calls in flight. */
  stop(): void;
}

/** Starts a test backend on a free loopback port. */
export async function startHealthBackend(
  name: string,
  health: HealthKind = "standard",
): Promise<HealthBackend> {
  const server = new grpc.Server();
  let calls = 0;
  let lastCallAt = 0;
  let checks = 0;
  let failing = false;
  let hanging = false;
  server.addService(greeterService, {
    SayHello: (
      _call: grpc.ServerUnaryCall<unknown, unknown>,
      reply: grpc.sendUnaryData<unknown>,
    ) => {
      calls++;
      lastCallAt = Date.now();
      if (failing) reply({ code: grpc.status.UNAVAILABLE, details: `${name} is failing` });
      else reply(null, { message: "Hello!", backend: name });
    },
  });
  const standard = new HealthImplementation({ "": "SERVING" });
  if (health === "standard") standard.addToServer(server);
  if (health === "hangable") {
    server.addService(healthService, {
      Check: (
        _call: grpc.ServerUnaryCall<unknown, unknown>,
        reply: grpc.sendUnaryData<unknown>,
      ) => {
        checks++;
        if (!hanging) reply(null, { status: "SERVING" });
      },
    });
  }
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(
      "127.0.0.1:0",
      grpc.ServerCredentials.createInsecure(),
      (error, bound) => error ? reject(error) : resolve(bound),
    );
  });
  return {
    name,
    address: `127.0.0.1:${port}`,
    calls: () => calls,
    lastCallAt: () => lastCallAt,
    checks: () => checks,
    setServing: (status) => standard.setStatus("", status),
    hangChecks: () => hanging = true,
    failCalls: (fail) => failing = fail,
    stop: () => server.forceShutdown(),
  };
}
