/**
 * The built-in load generator: client connections (raw `node:http2` sessions for gRPC,
 * HTTP/1.1 `fetch` clients for gRPC-Web), a fixed number of calls in flight, every call
 * checked (see `grpc_call.ts` and `grpc_web_call.ts`).
 * @module
 */
import type { CallShape } from "../scenarios.ts";
import { type CallChannel, openGrpcChannel } from "./grpc_call.ts";
import { openGrpcWebChannel } from "./grpc_web_call.ts";
import { type LoadResult, quantile } from "./load_result.ts";

/** How hard and how long to drive one target. */
export interface LoadPlan {
  /** `host:port` to call. */
  readonly address: string;
  /** The call. */
  readonly shape: CallShape;
  /** Client connections. */
  readonly connections: number;
  /** Calls in flight per connection. */
  readonly streamsPerConnection: number;
  /** Measured duration, seconds. */
  readonly durationS: number;
}

/** A client connection to `address` in `shape`'s protocol. */
function openChannel(address: string, shape: CallShape): CallChannel {
  return shape.protocol === "grpc-web"
    ? openGrpcWebChannel(address, shape)
    : openGrpcChannel(address, shape);
}

/** Drives `plan` with sequential callers and reports every call's verdict and latency. */
export async function runBuiltinLoad(plan: LoadPlan): Promise<LoadResult> {
  const channels = Array.from(
    { length: plan.connections },
    () => openChannel(plan.address, plan.shape),
  );
  const latencies: number[] = [];
  let failures = 0;
  let firstError: string | undefined;
  let responseBytes = 0;
  const started = performance.now();
  const deadline = started + plan.durationS * 1000;
  const caller = async (channel: CallChannel): Promise<void> => {
    while (performance.now() < deadline) {
      const outcome = await channel.call();
      latencies.push(outcome.latencyMs);
      responseBytes += outcome.responseBytes;
      if (outcome.error !== undefined) {
        failures++;
        firstError ??= outcome.error;
      }
    }
  };
  try {
    const callers = channels.flatMap((channel) =>
      Array.from({ length: plan.streamsPerConnection }, () => caller(channel))
    );
    await Promise.all(callers);
  } finally {
    for (const channel of channels) channel.close();
  }
  const elapsedS = (performance.now() - started) / 1000;
  const sorted = Float64Array.from(latencies).sort();
  return {
    generator: "builtin",
    calls: latencies.length,
    failures,
    firstError,
    elapsedS,
    responseBytes,
    p50Ms: quantile(sorted, 0.5),
    p99Ms: quantile(sorted, 0.99),
  };
}

/**
 * The correctness gate around every load run: `calls` sequential checked calls on a fresh
 * connection. Returns the first failure, or undefined when all were correct.
 */
export async function checkCalls(
  address: string,
  shape: CallShape,
  calls: number,
): Promise<string | undefined> {
  const channel = openChannel(address, shape);
  try {
    for (let index = 0; index < calls; index++) {
      const { error } = await channel.call();
      if (error !== undefined) return error;
    }
    return undefined;
  } finally {
    channel.close();
  }
}
