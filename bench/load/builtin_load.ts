/**
 * The built-in load generator: raw `node:http2` client connections, a fixed number of calls
 * in flight, every call checked (see {@link grpcCall}).
 * @module
 */
import type { CallShape } from "../scenarios.ts";
import { connectClient, grpcCall, requestHeaders } from "./grpc_call.ts";
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

/** Drives `plan` with sequential callers and reports every call's verdict and latency. */
export async function runBuiltinLoad(plan: LoadPlan): Promise<LoadResult> {
  const headers = requestHeaders(plan.shape);
  const sessions = Array.from({ length: plan.connections }, () => connectClient(plan.address));
  const latencies: number[] = [];
  let failures = 0;
  let firstError: string | undefined;
  let responseBytes = 0;
  const started = performance.now();
  const deadline = started + plan.durationS * 1000;
  const caller = async (sessionIndex: number): Promise<void> => {
    while (performance.now() < deadline) {
      const outcome = await grpcCall(sessions[sessionIndex], headers, plan.shape);
      latencies.push(outcome.latencyMs);
      responseBytes += outcome.responseBytes;
      if (outcome.error !== undefined) {
        failures++;
        firstError ??= outcome.error;
      }
    }
  };
  try {
    const callers = sessions.flatMap((_, index) =>
      Array.from({ length: plan.streamsPerConnection }, () => caller(index))
    );
    await Promise.all(callers);
  } finally {
    for (const session of sessions) session.close();
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
  const session = connectClient(address);
  const headers = requestHeaders(shape);
  try {
    for (let index = 0; index < calls; index++) {
      const { error } = await grpcCall(session, headers, shape);
      if (error !== undefined) return error;
    }
    return undefined;
  } finally {
    session.close();
  }
}
