/**
 * A cluster as the control plane keeps it: membership from every source, the verdicts on
 * each member, the policy and the panic flag. Every change is published to the data planes
 * as one immutable {@link ClusterSnapshot}; changes made before the next microtask
 * checkpoint go out together.
 *
 * With a panic threshold set (Envoy's semantics), a cluster whose healthy share falls below
 * it ignores health and routes over every connected member rather than fail everything.
 * @module
 */
import { balancerFactory } from "../balancer/registry.ts";
import type { ClusterConfig } from "../config/schema.ts";
import { componentLogger } from "../log/logger.ts";
import { Backend, type BackendSource, type HealthStatus } from "./backend.ts";
import type { ClusterSnapshot } from "./snapshot.ts";

const log = componentLogger("cluster");

/** Callbacks for components that follow a cluster's membership (health checks, ejection). */
export interface ClusterListener {
  /** A member joined. */
  onBackendAdded?(backend: Backend): void;
  /** A member left; its in-flight calls still finish. */
  onBackendRemoved?(backend: Backend): void;
}

/** Where a cluster's snapshots go: the data planes. */
export interface SnapshotSink {
  /** Takes the cluster's latest snapshot; it replaces every earlier one. */
  publish(snapshot: ClusterSnapshot): void;
}

/** One named cluster. */
export class Cluster {
  /** The cluster's name in `config.json`. */
  readonly name: string;
  /** Its validated settings; replaced by a reload. */
  config: ClusterConfig;
  readonly #backends = new Map<string, Backend>();
  readonly #membership = new Map<BackendSource, Set<string>>();
  /** Weights by source: `static` from the config's `weights`, `redis` from weight keys. */
  readonly #weights = new Map<BackendSource, ReadonlyMap<string, number>>();
  readonly #listeners: ClusterListener[] = [];
  readonly #sink: SnapshotSink;
  #policy: string;
  #panic = false;
  #closed = false;
  #dirty = false;

  /** Creates the cluster with its static members; its first snapshot is due at once. */
  constructor(name: string, config: ClusterConfig, sink: SnapshotSink) {
    this.name = name;
    this.config = config;
    this.#sink = sink;
    this.#policy = config.picker;
    this.#weights.set("static", staticWeights(config));
    this.setMembers("static", config.backends);
  }

  /** The active policy name. */
  get policy(): string {
    return this.#policy;
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
      this.#changed();
    }
    return true;
  }

  /** Records an active-health verdict for a member. */
  setHealth(address: string, health: HealthStatus): void {
    const backend = this.#backends.get(address);
    if (!backend || backend.health === health) return;
    backend.health = health;
    this.#changed();
  }

  /** Ejects a member until `untilMs` (epoch ms), or readmits it with 0. */
  setEjectedUntil(address: string, untilMs: number): void {
    const backend = this.#backends.get(address);
    if (!backend) return;
    backend.ejectedUntil = untilMs;
    this.#changed();
  }

  /**
   * Takes a reloaded config: the static members become the new list (Redis members stay),
   * the picker switches when the config's changed (a switch made through the admin API
   * otherwise stands), and panic is recomputed with the new threshold.
   */
  reconfigure(config: ClusterConfig): void {
    const before = this.config;
    this.config = config;
    if (config.picker !== before.picker) this.switchPolicy(config.picker);
    if (before.healthCheck && !config.healthCheck) {
      // No checker will speak for them any more (as for members of a cluster without one).
      for (const backend of this.#backends.values()) backend.health = "healthy";
    }
    this.#weights.set("static", staticWeights(config));
    this.setMembers("static", config.backends);
  }

  /**
   * Replaces the weights that one source gives its members (Redis weight keys); a member's
   * weight is the config's, else Redis's, else 1. A change goes out in the next snapshot.
   */
  setWeights(source: BackendSource, weights: ReadonlyMap<string, number>): void {
    this.#weights.set(source, weights);
    if (this.#applyWeights()) this.#changed();
  }

  /** Switches the policy live; in-flight calls are untouched. Throws for unknown names. */
  switchPolicy(name: string): void {
    if (!balancerFactory(name)) throw new Error(`unknown picker ${JSON.stringify(name)}`);
    if (name === this.#policy) return;
    this.#policy = name;
    log.info("cluster {cluster} picker switched to {policy}", { cluster: this.name, policy: name });
    this.#changed();
  }

  /** The cluster as the data planes apply it. */
  snapshot(): ClusterSnapshot {
    return {
      cluster: this.name,
      policy: this.#policy,
      panic: this.#panic,
      backends: this.backends().map((backend) => backend.snapshot()),
    };
  }

  /** Publishes a pending change now rather than at the end of the task. */
  flush(): void {
    if (!this.#dirty || this.#closed) return;
    this.#dirty = false;
    this.#sink.publish(this.snapshot());
  }

  /** Stops publishing; the data planes close their connections themselves. */
  close(): void {
    this.#closed = true;
  }

  #reconcileMembership(): void {
    if (this.#closed) return;
    const wanted = new Set<string>();
    for (const addresses of this.#membership.values()) for (const a of addresses) wanted.add(a);
    for (const [address, backend] of this.#backends) {
      if (wanted.has(address)) continue;
      this.#backends.delete(address);
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
    this.#applyWeights();
    this.#changed();
  }

  /** Sets every member's weight from the sources; true when any changed. */
  #applyWeights(): boolean {
    const configured = this.#weights.get("static");
    const redis = this.#weights.get("redis");
    let changed = false;
    for (const [address, backend] of this.#backends) {
      const weight = configured?.get(address) ?? redis?.get(address) ?? 1;
      if (weight === backend.weight) continue;
      backend.weight = weight;
      changed = true;
    }
    return changed;
  }

  #addBackend(address: string): void {
    const backend = new Backend(address);
    if (!this.config.healthCheck) backend.health = "healthy";
    this.#backends.set(address, backend);
    log.info("backend {address} joined {cluster}", { cluster: this.name, address });
    for (const listener of this.#listeners) listener.onBackendAdded?.(backend);
  }

  /** Recomputes panic and schedules one snapshot for everything changed before it goes. */
  #changed(): void {
    this.#updatePanic();
    if (this.#dirty) return;
    this.#dirty = true;
    queueMicrotask(() => this.flush());
  }

  #updatePanic(): void {
    const threshold = this.config.panicThreshold;
    const eligible = this.backends().filter((backend) => !backend.drained);
    let panic = false;
    if (threshold > 0 && eligible.length > 0) {
      const healthy = eligible.filter((b) => !b.ejected && b.health !== "unhealthy").length;
      panic = (healthy / eligible.length) * 100 < threshold;
    }
    if (panic === this.#panic) return;
    this.#panic = panic;
    log.warn("cluster {cluster} {change} panic mode: routing {scope}", {
      cluster: this.name,
      change: panic ? "entered" : "left",
      scope: panic ? "over all members regardless of health" : "over healthy members only",
    });
  }
}

/** The config's `weights` of static members, by address. */
function staticWeights(config: ClusterConfig): ReadonlyMap<string, number> {
  return new Map(Object.entries(config.weights ?? {}));
}
