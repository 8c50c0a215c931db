/**
 * The balancer/picker split, modelled on grpc-go's `balancer` package.
 *
 * A {@link Balancer} is stateful: it receives membership and per-backend state updates and
 * publishes an immutable {@link Picker} through its {@link BalancerHost}. The data plane only
 * ever calls {@link Picker.pick}, which is synchronous and cheap.
 * @module
 */

/** gRPC connectivity states, as a balancer sees a backend or reports itself. */
export type ConnectivityState = "IDLE" | "CONNECTING" | "READY" | "TRANSIENT_FAILURE";

/**
 * One backend as a balancer sees it (grpc-go's SubConn). Its `state` already folds in
 * health and ejection: an unhealthy backend reports `TRANSIENT_FAILURE`.
 */
export interface SubConn {
  /** The backend's `host:port`. */
  readonly address: string;
  /** The backend's current effective state. */
  readonly state: ConnectivityState;
  /**
   * Streams in flight on the backend in this data plane (what `least_request` compares); a
   * cheap read, taken at pick time.
   */
  readonly activeStreams: number;
  /**
   * The backend's load-balancing weight, a positive integer (Envoy's
   * `load_balancing_weight`): from the cluster's config or the member's Redis weight key,
   * 1 when neither sets one. `ring_hash` and `weighted_round_robin` use it.
   */
  readonly weight: number;
  /** Asks for a connection; a no-op while connecting or connected. */
  connect(): void;
  /**
   * Stops wanting a connection: in-flight calls finish, nothing is redialled, and the
   * backend reports IDLE until the next {@link connect}. pick_first calls it for the members
   * it left (grpc-go's `SubConn.Shutdown` in `shutdownRemainingLocked`).
   */
  disconnect(): void;
}

/** The outcome of one pick. */
export type PickResult =
  | { readonly kind: "complete"; readonly subConn: SubConn }
  | { readonly kind: "queue" }
  | { readonly kind: "fail"; readonly message: string };

/**
 * What a picker may know about the call it picks for (grpc-go's `balancer.PickInfo`). The
 * relay's call object implements it itself, so a pick allocates nothing; pickers must only
 * read it, and only during {@link Picker.pick}.
 */
export interface PickInfo {
  /** The full method, `/package.Service/Method` (the request's `:path`). */
  readonly method: string;
  /** The request headers as a flat list `[name, value, name, value, …]`; read-only. */
  readonly headers: readonly string[];
  /**
   * The call's hash from the cluster's hash policy (`hashKey`): `undefined` when the cluster
   * has none or the call lacks the key. An unsigned 32-bit integer.
   */
  readonly hash: number | undefined;
}

/** A {@link PickInfo} for picks made outside a call (tests, probes): no method, no hash. */
export const NO_PICK_INFO: PickInfo = Object.freeze({
  method: "",
  headers: Object.freeze([]) as readonly string[],
  hash: undefined,
});

/**
 * Chooses a backend for one call. Implementations must not block, and should allocate
 * nothing per pick (precompute when the balancer publishes the picker). `pick_first` and
 * `round_robin` ignore the {@link PickInfo}.
 */
export interface Picker {
  /** Picks for one new call described by `info`. */
  pick(info: PickInfo): PickResult;
}

/** What a balancer publishes: its aggregate state and the picker for new calls. */
export interface BalancerState {
  /** The cluster's aggregate connectivity. */
  readonly state: ConnectivityState;
  /** The picker that new calls use until the next update. */
  readonly picker: Picker;
}

/** The balancer's view of its owner (grpc-go's ClientConn). */
export interface BalancerHost {
  /** Publishes a new state and picker; queued calls are re-picked. */
  updateState(state: BalancerState): void;
}

/** A load-balancing policy instance for one cluster. */
export interface Balancer {
  /** Replaces the membership; `subConns` are in configured order. */
  updateSubConns(subConns: readonly SubConn[]): void;
  /** Reports that one member's effective state changed. */
  updateSubConnState(subConn: SubConn, state: ConnectivityState): void;
  /** Releases timers or other resources; no updates follow. */
  close(): void;
}

/** `pick_first`'s per-cluster settings (`clusters.NAME.pickFirst`). */
export interface PickFirstConfig {
  /** Shuffle the members before connecting (gRPC A62); default false. */
  readonly shuffleAddressList?: boolean;
  /** How long one attempt runs alone before the next member is tried too; default 250. */
  readonly connectionDelayMs?: number;
}

/** `ring_hash`'s per-cluster settings (`clusters.NAME.ringHash`), as gRFC A42 / Envoy. */
export interface RingHashConfig {
  /** The smallest ring; default 1024. */
  readonly minRingSize?: number;
  /** The largest ring; default 4096 (A42 caps it at 8M). */
  readonly maxRingSize?: number;
}

/** `least_request`'s per-cluster settings (`clusters.NAME.leastRequest`), as gRFC A48. */
export interface LeastRequestConfig {
  /** Members sampled per pick, of which the least loaded wins; default 2. */
  readonly choiceCount?: number;
}

/** Per-cluster policy settings; each policy reads its own section. */
export interface PolicyConfig {
  /** Settings for `pick_first`. */
  readonly pickFirst?: PickFirstConfig;
  /** Settings for `ring_hash`. */
  readonly ringHash?: RingHashConfig;
  /** Settings for `least_request`. */
  readonly leastRequest?: LeastRequestConfig;
}

/** Builds a balancer that publishes through `host`. */
export type BalancerFactory = (host: BalancerHost, config: PolicyConfig) => Balancer;

/**
 * The pickers under which `rebalance` may shed streams: their picks reach every READY member
 * (`least_request` favours the emptier ones), so a shed stream can land elsewhere. Under
 * `pick_first` or `ring_hash` it would go straight back where it was.
 */
export const REBALANCING_PICKERS: readonly string[] = [
  "least_request",
  "round_robin",
  "weighted_round_robin",
];

/** A picker that queues every call, used while connecting. */
export const QUEUE_PICKER: Picker = { pick: () => ({ kind: "queue" }) };

/** A picker that fails every call fast with `message` (for `TRANSIENT_FAILURE`). */
export function failingPicker(message: string): Picker {
  const result: PickResult = { kind: "fail", message };
  return { pick: () => result };
}
