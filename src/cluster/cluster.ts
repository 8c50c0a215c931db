/**
 * A cluster: membership from every source, one balancer, and the picker that the data plane
 * asks for backends.
 *
 * The cluster folds each member's connectivity, health and ejection into one effective
 * state, which is all a balancer sees. With a panic threshold set (Envoy's semantics), a
 * cluster whose healthy share falls below it ignores health and routes over every connected
 * member rather than fail everything.
 * @module
 */
import { balancerFactory } from "../balancer/registry.ts";
import {
  type Balancer,
  type BalancerHost,
  type BalancerState,
  type ConnectivityState,
  failingPicker,
  type PickResult,
  QUEUE_PICKER,
} from "../balancer/types.ts";
import type { ClusterConfig } from "../config/schema.ts";
import { componentLogger } from "../log/logger.ts";
import type { ConnectionOptions } from "../h2/connection.ts";
import type { DialGate } from "../upstream/dial_gate.ts";
import { Upstream } from "../upstream/upstream.ts";
import { Backend, type BackendSource, type HealthStatus } from "./backend.ts";

const log = componentLogger("cluster");

/** Keeps UNAVAILABLE messages short for large clusters. */
const MAX_REASONS_IN_MESSAGE = 3;

/** Callbacks for components that follow a cluster (health checks, metrics). */
export interface ClusterListener {
  /** A member joined. */
  onBackendAdded?(backend: Backend): void;
  /** A member left; its in-flight calls still finish. */
  onBackendRemoved?(backend: Backend): void;
}

/** How a cluster's members connect to their backends. */
export interface UpstreamSettings {
  /** The engine's settings for backend connections. */
  readonly connection: ConnectionOptions;
  /** Connections per backend at most. */
  readonly maxConnectionsPerBackend: number;
  /** The process-wide cap on dials in flight. */
  readonly dialGate: DialGate;
}

interface PickWaiter {
  readonly resolve: (result: PickResult) => void;
  readonly timer: ReturnType<typeof setTimeout>;
}

/** One named cluster. */
export class Cluster implements BalancerHost {
  /** The cluster's name in `config.json`. */
  readonly name: string;
  /** Its validated settings. */
  readonly config: ClusterConfig;
  /**
   * Every call routed here, including those that failed before a backend was picked (which
   * per-backend counters cannot see), and how many of them ended with a non-OK status.
   */
  readonly counters: { calls: number; errors: number } = { calls: 0, errors: 0 };
  readonly #backends = new Map<string, Backend>();
  readonly #membership = new Map<BackendSource, Set<string>>();
  readonly #waiters = new Set<PickWaiter>();
  readonly #listeners: ClusterListener[] = [];
  #balancer: Balancer;
  #policy: string;
  #published: BalancerState = { state: "IDLE", picker: QUEUE_PICKER };
  #panic = false;
  #closed = false;
  readonly #upstream: UpstreamSettings;

  /** Creates the cluster with its static members. */
  constructor(name: string, config: ClusterConfig, upstream: UpstreamSettings) {
    this.name = name;
    this.config = config;
    this.#upstream = upstream;
    this.#policy = config.picker;
    this.#balancer = this.#createBalancer(config.picker);
    this.setMembers("static", config.backends);
  }

  /** The active policy name. */
  get policy(): string {
    return this.#policy;
  }

  /** The balancer's aggregate state. */
  get state(): ConnectivityState {
    return this.#published.state;
  }

  /** True while the panic threshold overrides health. */
  get panic(): boolean {
    return this.#panic;
  }

  /** All members, in membership order. */
  backends(): Backend[] {
    return [...this.#backends.values()];
  }

  /** One member by address. */
  backend(address: string): Backend | undefined {
    return this.#backends.get(address);
  }

  /** Follows membership changes; existing members are reported at once. */
  addListener(listener: ClusterListener): void {
    this.#listeners.push(listener);
    for (const backend of this.#backends.values()) listener.onBackendAdded?.(backend);
  }

  /** Picks a backend for a new call. */
  pick(): PickResult {
    return this.#published.picker.pick();
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
   * went away; the result is then a failure nobody reads).
   */
  waitForPick(timeoutMs: number, signal?: AbortSignal): Promise<PickResult> {
    return new Promise((resolve) => {
      const settle = (result: PickResult) => {
        clearTimeout(waiter.timer);
        this.#waiters.delete(waiter);
        signal?.removeEventListener("abort", onAbort);
        resolve(result);
      };
      const onAbort = () => settle({ kind: "fail", message: "the call was cancelled" });
      const waiter: PickWaiter = {
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
    if (state.state !== this.#published.state) {
      log.info("cluster {cluster} is {state}", { cluster: this.name, state: state.state });
    }
    this.#published = state;
    for (const waiter of this.#waiters) {
      const result = state.picker.pick();
      if (result.kind !== "queue") waiter.resolve(result);
    }
  }

  /** Replaces the members that one source lists; other sources are untouched. */
  setMembers(source: BackendSource, addresses: Iterable<string>): void {
    this.#membership.set(source, new Set(addresses));
    this.#reconcileMembership();
  }

  /** Adds one member from `source`; returns false when that source already listed it. */
  addMember(source: BackendSource, address: string): boolean {
    const listed = this.#membership.get(source) ?? new Set();
    if (listed.has(address)) return false;
    this.setMembers(source, [...listed, address]);
    return true;
  }

  /** Removes one member from `source`; returns false when that source did not list it. */
  removeMember(source: BackendSource, address: string): boolean {
    const listed = this.#membership.get(source);
    if (!listed?.has(address)) return false;
    listed.delete(address);
    this.#reconcileMembership();
    return true;
  }

  /** Addresses that `source` lists. */
  membersFrom(source: BackendSource): string[] {
    return [...(this.#membership.get(source) ?? [])];
  }

  /** Drains or undrains a member; returns false for an unknown address. */
  setDrained(address: string, drained: boolean): boolean {
    const backend = this.#backends.get(address);
    if (!backend) return false;
    if (backend.drained !== drained) {
      backend.drained = drained;
      log.info("backend {address} of {cluster} {action}", {
        cluster: this.name,
        address,
        action: drained ? "drained" : "undrained",
      });
      this.#pushMembershipToBalancer();
      this.#refreshAll();
    }
    return true;
  }

  /** Records an active-health verdict for a member. */
  setHealth(address: string, health: HealthStatus): void {
    const backend = this.#backends.get(address);
    if (!backend || backend.health === health) return;
    backend.health = health;
    this.#refreshAll();
  }

  /** Ejects a member until `untilMs` (epoch ms), or readmits it with 0. */
  setEjectedUntil(address: string, untilMs: number): void {
    const backend = this.#backends.get(address);
    if (!backend) return;
    backend.ejectedUntil = untilMs;
    this.#refreshAll();
  }

  /** Switches the policy live; in-flight calls are untouched. Throws for unknown names. */
  switchPolicy(name: string): void {
    const next = this.#createBalancer(name);
    this.#balancer.close();
    this.#balancer = next;
    this.#policy = name;
    log.info("cluster {cluster} picker switched to {policy}", { cluster: this.name, policy: name });
    this.#pushMembershipToBalancer();
  }

  /** Closes every member's connections once their calls finish, and fails queued calls. */
  close(): void {
    this.#closed = true;
    this.#balancer.close();
    for (const backend of this.#backends.values()) backend.upstream.close();
    this.updateState({
      state: "TRANSIENT_FAILURE",
      picker: failingPicker(`cluster ${this.name} is shut down`),
    });
  }

  #createBalancer(name: string): Balancer {
    const factory = balancerFactory(name);
    if (!factory) throw new Error(`unknown picker ${JSON.stringify(name)}`);
    const { shuffleAddressList, connectionDelay } = this.config.pickFirst;
    return factory(this, { pickFirst: { shuffleAddressList, connectionDelayMs: connectionDelay } });
  }

  #reconcileMembership(): void {
    if (this.#closed) return;
    const wanted = new Set<string>();
    for (const addresses of this.#membership.values()) for (const a of addresses) wanted.add(a);
    for (const [address, backend] of this.#backends) {
      if (wanted.has(address)) continue;
      this.#backends.delete(address);
      backend.upstream.close();
      log.info("backend {address} left {cluster}", { cluster: this.name, address });
      for (const listener of this.#listeners) listener.onBackendRemoved?.(backend);
    }
    for (const address of wanted) {
      if (!this.#backends.has(address)) this.#addBackend(address);
    }
    for (const [address, backend] of this.#backends) {
      backend.sources.clear();
      for (const [source, addresses] of this.#membership) {
        if (addresses.has(address)) backend.sources.add(source);
      }
    }
    this.#pushMembershipToBalancer();
    this.#refreshAll();
  }

  #addBackend(address: string): void {
    const backend: Backend = new Backend(
      address,
      new Upstream({
        cluster: this.name,
        address,
        connectTimeoutMs: this.config.connectTimeout,
        backoff: this.config.reconnectBackoff,
        connection: this.#upstream.connection,
        maxConnections: this.#upstream.maxConnectionsPerBackend,
        dialGate: this.#upstream.dialGate,
        onStateChange: () => this.#refresh(backend),
      }),
    );
    if (!this.config.healthCheck) backend.health = "healthy";
    this.#backends.set(address, backend);
    log.info("backend {address} joined {cluster}", { cluster: this.name, address });
    for (const listener of this.#listeners) listener.onBackendAdded?.(backend);
  }

  #pushMembershipToBalancer(): void {
    this.#balancer.updateSubConns(this.backends().filter((backend) => !backend.drained));
  }

  #effectiveState(backend: Backend): ConnectivityState {
    const connectivity = backend.upstream.state;
    if (connectivity !== "READY" || this.#panic) return connectivity;
    if (backend.ejected || backend.health === "unhealthy") return "TRANSIENT_FAILURE";
    return backend.health === "unknown" ? "CONNECTING" : "READY";
  }

  #computePanic(): boolean {
    const threshold = this.config.panicThreshold;
    const eligible = this.backends().filter((backend) => !backend.drained);
    if (threshold === 0 || eligible.length === 0) return false;
    const healthy = eligible.filter((b) => !b.ejected && b.health !== "unhealthy").length;
    return (healthy / eligible.length) * 100 < threshold;
  }

  #refreshAll(): void {
    const panic = this.#computePanic();
    if (panic !== this.#panic) {
      this.#panic = panic;
      log.warn("cluster {cluster} {change} panic mode: routing {scope}", {
        cluster: this.name,
        change: panic ? "entered" : "left",
        scope: panic ? "over all members regardless of health" : "over healthy members only",
      });
    }
    for (const backend of this.#backends.values()) this.#refresh(backend);
  }

  #refresh(backend: Backend): void {
    const state = this.#effectiveState(backend);
    if (state === backend.effectiveState) return;
    backend.effectiveState = state;
    if (this.#backends.get(backend.address) === backend && !backend.drained) {
      this.#balancer.updateSubConnState(backend, state);
    }
  }
}
