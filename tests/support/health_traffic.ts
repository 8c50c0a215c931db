/**
 * Client-side helpers for the health tests: greeter calls through the proxy, a background
 * stream of sequential calls, and the proxy's health log lines.
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { GreeterClient, greeterService } from "../../examples/greeter_backend.ts";
import type { ProxyProcess } from "./harness.ts";

/** How one call ended. */
export interface CallResult {
  /** The grpc status code. */
  readonly code: number;
  /** The backend that answered, for successful calls. */
  readonly backend: string | undefined;
  /** Epoch ms when the call ended. */
  readonly at: number;
}

/** A greeter client for the proxy at `address`. */
export function greeterClient(address: string): grpc.Client {
  return new GreeterClient(address, grpc.credentials.createInsecure());
}

/** One `SayHello` call with a 5 s deadline; never rejects. */
export function sayHello(client: grpc.Client): Promise<CallResult> {
  const method = greeterService.SayHello;
  return new Promise((resolve) => {
    client.makeUnaryRequest<unknown, { backend?: string }>(
      method.path,
      method.requestSerialize,
      method.responseDeserialize,
      { name: "health" },
      new grpc.Metadata(),
      { deadline: Date.now() + 5_000 },
      (error, reply) =>
        resolve({ code: error?.code ?? grpc.status.OK, backend: reply?.backend, at: Date.now() }),
    );
  });
}

/** Sequential calls in the background until {@link Traffic.stop}. */
export class Traffic {
  /** Every call so far, in order. */
  readonly results: CallResult[] = [];
  readonly #done: Promise<void>;
  #running = true;

  /** Starts calling at once. */
  constructor(client: grpc.Client) {
    this.#done = (async () => {
      while (this.#running) this.results.push(await sayHello(client));
    })();
  }

  /** Results that ended after `epochMs`. */
  since(epochMs: number): CallResult[] {
    return this.results.filter((result) => result.at > epochMs);
  }

  /** Stops after the call in flight. */
  async stop(): Promise<void> {
    this.#running = false;
    await this.#done;
  }
}

/** Log lines of the `health` component about `address` whose message contains `text`. */
export function healthLogs(
  proxy: ProxyProcess,
  address: string,
  text: string,
): Record<string, unknown>[] {
  return proxy.logs().filter((line) => {
    const properties = line.properties as Record<string, unknown> | undefined;
    return line.logger === "switchyard.health" && properties?.address === address &&
      String(line.message).includes(text);
  });
}
