/**
 * A cluster as one data plane runs it: a connection pool per member, one balancer, and the
 * picker that calls ask for backends. Membership, verdicts and the policy come only from the
 * control plane's {@link ClusterSnapshot}s; connectivity is this data plane's own, so the
 * effective state a balancer sees folds the two.
 * @module
 */
import { type HashKeySource, parseHashKey, requestHash } from "../balancer/hash_policy.ts";
import { balancerFactory } from "../balancer/registry.ts";
import {
  type Balancer,
  type BalancerHost,
  type BalancerState,
  type ConnectivityState,
  failingPicker,
  NO_PICK_INFO,
  type PickInfo,
  type PickResult,
  QUEUE_PICKER,
} from "../balancer/types.ts";
import { type BackendSnapshot, type ClusterSnapshot, effectiveState } from "../cluster/snapshot.ts";
import type { ClusterConfig } from "../config/schema.ts";
import type { BackendTls } from "../config/tls.ts";
import type { ConnectionOptions } from "../h2/connection.ts";
import { componentLogger } from "../log/logger.ts";
import { type CallLimits, limitSettings } from "./call_limits.ts";
import { type ClusterCounters, clusterCounters } from "../dataplane/stats.ts";
import type { DialGate } from "./dial_gate.ts";
import { type DialObserver, Upstream } from "./upstream.ts";
import { UpstreamBackend } from "./upstream_backend.ts";
import type { ClusterAffinity } from "../affinity/cluster_affinity.ts";
import { Rebalancer } from "./rebalancer.ts";

const log = componentLogger("cluster");

/** Keeps UNAVAILABLE messages short for large clusters. */
const MAX_REASONS_IN_MESSAGE = 3;

/** How a cluster's members connect to their backends. */
export interface UpstreamSettings {
  /** The engine's settings for backend connections. */
  readonly connection: ConnectionOptions;
  /** Connections per backend at most, unless the cluster's `limits` set it. */
  readonly maxConnectionsPerBackend: number;
  /** The data plane's cap on dials in flight. */
  readonly dialGate: DialGate;
  /** TLS to the cluster's backends, or `undefined` for h2c. */
  readonly tls: BackendTls | undefined;
  /** Told how each dial ended (the metrics), when anything listens. */
  readonly dialObserver: DialObserver | undefined;
}

interface PickWaiter {
  /** The queued call, which picks again for itself on every new picker. */
  readonly info: PickInfo;
  readonly resolve: (result: PickResult) => void;
  readonly timer: ReturnType<typeof setTimeout>;
}

/** One named cluster in one data plane. */
export class UpstreamCluster implements BalancerHost {
  /** The cluster's name in `config.json`. */
  readonly name: string;
  /** Its validated settings; replaced by a reload. */
  config: ClusterConfig;
  /** This data plane's counts. */
  readonly counters: ClusterCounters = clusterCounters();
  /** The cluster's circuit breakers, shared with the other workers. */
  readonly limits: CallLimits;
  /** The cluster's affinity cache in this data plane, when its config has `affinity`. */
  affinity: ClusterAffinity | undefined = undefined;
  readonly #backends = new Map<string, UpstreamBackend>();
  readonly #waiters = new Set<PickWaiter>();
  readonly #removed: ((backend: UpstreamBackend) => void)[] = [];
  #upstream: UpstreamSettings;
  #balancer: Balancer | undefined;
  /** The latest snapshot applied, so that a reload can rebuild members from it. */
  #snapshot: ClusterSnapshot | undefined;
  #policy = "";
  /** The members the balancer was last given: the undrained ones, in membership order. */
  #eligible: readonly UpstreamBackend[] = [];
  /** Their weights then: a change is a new member list to the balancer, as in gRPC. */
  #eligibleWeights: readonly number[] = [];
  /** Where request hashes come from (`hashKey`), or `undefined` for none. */
  #hashKey: HashKeySource | undefined;
  #balancerState: BalancerState = { state: "IDLE", picker: QUEUE_PICKER };
  #panic = false;
  #closed = false;
  /** Sheds long streams from the busiest members while `rebalance` is set. */
  #rebalancer: Rebalancer | undefined;

  /** Creates the cluster without members: they come with the first snapshot. */
  constructor(
    name: string,
    config: ClusterConfig,
    upstream: UpstreamSettings,
    limits: CallLimits,
  ) {
    this.name = name;
    this.config = config;
    this.#upstream = upstream;
    this.limits = limits;
    this.#hashKey = config.hashKey === undefined ? undefined : parseHashKey(config.hashKey);
    this.#syncRebalancer();
  }

  /** The current picker's name (`""` before the first snapshot). */
  get policy(): string {
    return this.#policy;
  }

  /** Starts, updates or stops the rebalancer to match `config.rebalance`. */
  #syncRebalancer(): void {
    const settings = this.#closed ? undefined : this.config.rebalance;
    if (settings === undefined) {
      this.#rebalancer?.stop();
      this.#rebalancer = undefined;
    } else if (this.#rebalancer === undefined) this.#rebalancer = new Rebalancer(this, settings);
    else this.#rebalancer.update(settings);
  }

  /** The balancer's aggregate state. */
  get state(): ConnectivityState {
    return this.#balancerState.state;
  }

  /** One member by `host:port`, or `undefined` when it is not one. */
  backend(address: string): UpstreamBackend | undefined {
    return this.#backends.get(address);
  }

  /** All members, in membership order. */
  backends(): UpstreamBackend[] {
    return [...this.#backends.values()];
  }

  /** Calls `callback` for every member that leaves (metrics forget its series). */
  onBackendRemoved(callback: (backend: UpstreamBackend) => void): void {
    this.#removed.push(callback);
  }

  /**
   * The request hash of a call under the cluster's hash policy (`hashKey`), or `undefined`
   * when the cluster has none or the call lacks the key. The relay computes it once per call
   * and passes it back in its {@link PickInfo}.
   */
  requestHash(headers: PickInfo["headers"], clientAddress: string): number | undefined {
    const source = this.#hashKey;
    return source === undefined ? undefined : requestHash(source, headers, clientAddress);
  }

  /** Picks a backend for a new call; `info` describes the call to the picker. */
  pick(info: PickInfo = NO_PICK_INFO): PickResult {
    return this.#balancerState.picker.pick(info);
  }

  /**
   * Picks a backend for a retry: another than `previous` when the policy offers one within
   * as many picks as there are members (a `pick_first` cluster keeps its one backend).
   */
  pickAnother(previous: UpstreamBackend, info: PickInfo = NO_PICK_INFO): PickResult {
    const picker = this.#balancerState.picker;
    let result = picker.pick(info);
    for (
      let i = 1;
      i < this.#backends.size && result.kind === "complete" && result.subConn === previous;
      i++
    ) result = picker.pick(info);
    return result;
  }

  /**
   * The `grpc-message` for a call that found no usable backend: the picker's reason plus,
   * like Envoy's "upstream connect error", why each of the first few members is unusable.
   */
  describeUnavailable(reason: string): string {
    const details = this.backends()
      .map((backend) => [backend.address, backend.unusableReason])
      .filter(([, why]) => why !== undefined)
      .slice(0, MAX_REASONS_IN_MESSAGE)
      .map(([address, why]) => `${address}: ${why}`);
    return `cluster ${this.name}: ${reason}${details.length ? ` (${details.join("; ")})` : ""}`;
  }

  /**
   * Waits until the picker stops queueing, `timeoutMs` passes, or `signal` aborts (the call
   * went away; the result is then a failure nobody reads). Every new picker picks again
   * for the call with its own `info`.
   */
  waitForPick(
    timeoutMs: number,
    signal?: AbortSignal,
    info: PickInfo = NO_PICK_INFO,
  ): Promise<PickResult> {
    return new Promise((resolve) => {
      const settle = (result: PickResult) => {
        clearTimeout(waiter.timer);
        this.#waiters.delete(waiter);
        signal?.removeEventListener("abort", onAbort);
        resolve(result);
      };
      const onAbort = () => settle({ kind: "fail", message: "the call was cancelled" });
      const waiter: PickWaiter = {
        info,
        resolve: settle,
        timer: setTimeout(() =>
          settle({
            kind: "fail",
            message: `no backend of cluster ${this.name} became ready within ${timeoutMs}ms`,
          }), timeoutMs),
      };
      this.#waiters.add(waiter);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** Publishes a balancer's new state and re-picks for queued calls. */
  updateState(state: BalancerState): void {
    if (state.state !== this.#balancerState.state) {
      log.info("cluster {cluster} is {state}", { cluster: this.name, state: state.state });
    }
    this.#balancerState = state;
    for (const waiter of this.#waiters) {
      const result = state.picker.pick(waiter.info);
      if (result.kind !== "queue") waiter.resolve(result);
    }
  }

  /**
   * Applies the control plane's latest snapshot: members join and leave (a member that
   * leaves finishes its in-flight calls), verdicts and panic change, the policy switches.
   * The balancer hears of a new member list only when the list changed (a pass of
   * `pick_first` restarts on it), and otherwise only of the members whose state changed.
   */
  apply(snapshot: ClusterSnapshot): void {
    if (this.#closed) return;
    this.#snapshot = snapshot;
    const wanted = new Map(snapshot.backends.map((verdict) => [verdict.address, verdict]));
    for (const [address, backend] of this.#backends) {
      if (wanted.has(address)) continue;
      this.#backends.delete(address);
      backend.upstream.close();
      for (const callback of this.#removed) callback(backend);
    }
    // Rebuilt in the snapshot's order, so that every data plane has the same order, however
    // it got there (a worker started later builds it from scratch).
    const kept = new Map(this.#backends);
    this.#backends.clear();
    for (const [address, verdict] of wanted) {
      const backend = kept.get(address);
      if (backend) backend.verdict = verdict;
      this.#backends.set(address, backend ?? this.#createBackend(verdict));
    }
    this.#panic = snapshot.panic;
    const switched = snapshot.policy !== this.#policy;
    if (switched) this.#switchPolicy(snapshot.policy);
    // States first, quietly, so that the balancer reads current ones either way.
    const changed = this.backends().filter((backend) => this.#fold(backend));
    const eligible = this.backends().filter((backend) => !backend.verdict.drained);
    const weights = eligible.map((backend) => backend.weight);
    if (
      switched || !sameMembers(eligible, this.#eligible) ||
      weights.some((weight, i) => weight !== this.#eligibleWeights[i])
    ) {
      this.#eligible = eligible;
      this.#eligibleWeights = weights;
      this.#balancer!.updateSubConns(eligible);
    } else {
      for (const backend of changed) this.#notify(backend);
    }
  }

  /**
   * Takes a reloaded config. Limits and call settings apply to new calls at once. When how
   * members connect changed (timeouts, backoff, pool size, TLS), every member gets a new
   * pool and the old pools close once their calls finish; when the policies' settings
   * changed, the balancer is rebuilt.
   */
  reconfigure(config: ClusterConfig, upstream: UpstreamSettings): void {
    const before = this.config;
    this.config = config;
    this.limits.update(limitSettings(config));
    this.#syncRebalancer();
    const pools = JSON.stringify(poolSettings(before, this.#upstream)) !==
      JSON.stringify(poolSettings(config, upstream));
    this.#upstream = upstream;
    if (pools) {
      for (const backend of this.#backends.values()) backend.upstream.close();
      this.#backends.clear();
    }
    this.#hashKey = config.hashKey === undefined ? undefined : parseHashKey(config.hashKey);
    if (JSON.stringify(policySettings(before)) !== JSON.stringify(policySettings(config))) {
      this.#policy = "";
    }
    if ((pools || this.#policy === "") && this.#snapshot) this.apply(this.#snapshot);
  }

  /** Closes every member's connections once their calls finish, and fails queued calls. */
  close(): void {
    this.#closed = true;
    this.#syncRebalancer();
    this.#balancer?.close();
    for (const backend of this.#backends.values()) backend.upstream.close();
    this.updateState({
      state: "TRANSIENT_FAILURE",
      picker: failingPicker(`cluster ${this.name} is shut down`),
    });
  }

  #switchPolicy(name: string): void {
    const factory = balancerFactory(name);
    // The control plane validates names; an unknown one would mean a version mismatch.
    if (!factory) throw new Error(`unknown picker ${JSON.stringify(name)}`);
    const { shuffleAddressList, connectionDelay } = this.config.pickFirst;
    this.#balancer?.close();
    this.#balancer = factory(this, {
      pickFirst: { shuffleAddressList, connectionDelayMs: connectionDelay },
      ringHash: this.config.ringHash,
      leastRequest: this.config.leastRequest,
    });
    this.#policy = name;
  }

  #createBackend(verdict: BackendSnapshot): UpstreamBackend {
    const backend: UpstreamBackend = new UpstreamBackend(
      verdict,
      new Upstream({
        cluster: this.name,
        address: verdict.address,
        connectTimeoutMs: this.config.connectTimeout,
        tls: this.#upstream.tls,
        backoff: this.config.reconnectBackoff,
        connection: this.#upstream.connection,
        maxConnections: this.config.limits.maxConnectionsPerBackend ??
          this.#upstream.maxConnectionsPerBackend,
        dialGate: this.#upstream.dialGate,
        onStateChange: () => this.#refresh(backend),
        onOverflow: () => this.counters.overflow.maxConnectionsPerBackend++,
        dialObserver: this.#upstream.dialObserver,
      }),
    );
    return backend;
  }

  /** A member's connectivity changed: fold it and tell the balancer. */
  #refresh(backend: UpstreamBackend): void {
    if (this.#fold(backend)) this.#notify(backend);
  }

  /** Recomputes a member's effective state; true when it changed. */
  #fold(backend: UpstreamBackend): boolean {
    const state = effectiveState(backend.upstream.state, backend.verdict, this.#panic);
    if (state === backend.effectiveState) return false;
    backend.effectiveState = state;
    return true;
  }

  #notify(backend: UpstreamBackend): void {
    if (this.#backends.get(backend.address) === backend && !backend.verdict.drained) {
      this.#balancer?.updateSubConnState(backend, backend.effectiveState);
    }
  }
}

/** What a member's connection pool is built from; a change needs new pools. */
function poolSettings(config: ClusterConfig, upstream: UpstreamSettings): unknown {
  return [
    config.connectTimeout,
    config.reconnectBackoff,
    config.limits.maxConnectionsPerBackend ?? upstream.maxConnectionsPerBackend,
    upstream.connection,
    upstream.tls,
  ];
}

/** What the balancers are built from; a change rebuilds the balancer. */
function policySettings(config: ClusterConfig): unknown {
  return [config.pickFirst, config.ringHash, config.leastRequest];
}

function sameMembers(a: readonly UpstreamBackend[], b: readonly UpstreamBackend[]): boolean {
  return a.length === b.length && a.every((backend, i) => backend === b[i]);
}
