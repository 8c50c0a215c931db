/**
 * The call policy of a route: its deadlines, its idle timeout and its retries, with the
 * cluster's settings as defaults. Resolved once when the routes are built, so a call reads
 * plain numbers.
 * @module
 */
import type { ClusterConfig, RetryPolicyConfig, RouteConfig } from "../config/schema.ts";
import { GrpcStatus } from "../proxy/grpc_status.ts";

/** Configured retries (gRFC A6), with the statuses as a bit mask (bit n: status n). */
export interface RetryPolicy {
  /** Bit n set: status n retries the call. */
  readonly retryOn: number;
  /** Attempts per call, the first included. */
  readonly maxAttempts: number;
  /** How long an attempt may wait for response headers; 0 for no limit. */
  readonly perTryTimeoutMs: number;
  /** A6's `initialBackoff`, `maxBackoff` and `backoffMultiplier`. */
  readonly initialBackoffMs: number;
  readonly maxBackoffMs: number;
  readonly backoffMultiplier: number;
}

/** How the calls of one route are timed and retried. */
export interface CallPolicy {
  /** The deadline of a call without `grpc-timeout`; `undefined` for none. */
  readonly timeoutMs: number | undefined;
  /** The most a client's `grpc-timeout` may ask for; `undefined` for no cap. */
  readonly maxTimeoutMs: number | undefined;
  /** No frame either way for this long ends the call; 0 for never. */
  readonly streamIdleTimeoutMs: number;
  /** Configured retries, if any. */
  readonly retry: RetryPolicy | undefined;
  /** Request bytes kept for replaying a call. */
  readonly retryBufferBytes: number;
  /** Attempts for a call no backend processed, the first included (1: no transparent retry). */
  readonly transparentAttempts: number;
}

function retryPolicy(config: RetryPolicyConfig): RetryPolicy {
  let retryOn = 0;
  for (const name of config.retryOn) retryOn |= 1 << GrpcStatus[name];
  return {
    retryOn,
    maxAttempts: config.maxAttempts,
    perTryTimeoutMs: config.perTryTimeout ?? 0,
    initialBackoffMs: config.initialBackoff,
    maxBackoffMs: config.maxBackoff,
    backoffMultiplier: config.backoffMultiplier,
  };
}

/** The policy of `route`: each field the route sets, else its cluster's. */
export function callPolicy(route: RouteConfig, cluster: ClusterConfig): CallPolicy {
  // `null` on the route turns the cluster's retries off; absent, the cluster's apply.
  const retry = route.retry === undefined ? cluster.retry : route.retry;
  return {
    timeoutMs: route.timeout ?? cluster.timeout,
    maxTimeoutMs: route.maxTimeout ?? cluster.maxTimeout,
    streamIdleTimeoutMs: route.streamIdleTimeout ?? cluster.streamIdleTimeout,
    retry: retry ? retryPolicy(retry) : undefined,
    retryBufferBytes: route.retryBufferBytes ?? cluster.retryBufferBytes,
    transparentAttempts: cluster.transparentRetry.maxAttempts,
  };
}

/**
 * The wait before retry number `retry` (1 for the first): random in
 * [0, min(initialBackoff × multiplier^(retry-1), maxBackoff)], as gRFC A6 specifies.
 */
export function retryBackoffMs(policy: RetryPolicy, retry: number): number {
  const ceiling = Math.min(
    policy.initialBackoffMs * policy.backoffMultiplier ** (retry - 1),
    policy.maxBackoffMs,
  );
  return Math.random() * ceiling;
}
