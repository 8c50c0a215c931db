/**
 * Active health checking of one cluster: a {@link BackendProber} per member, started when
 * the member joins and stopped when it leaves.
 * @module
 */
import type { Backend } from "../cluster/backend.ts";
import type { Cluster } from "../cluster/cluster.ts";
import type { HealthCheckConfig } from "../config/schema.ts";
import type { BackendTls } from "../config/tls.ts";
import { BackendProber } from "./prober.ts";

/** Probes every member of one cluster for as long as it is a member. */
export class ActiveHealthChecker {
  readonly #probers = new Map<Backend, BackendProber>();
  #stopped = false;

  /** Starts probing the cluster's current and future members, over `tls` when set. */
  constructor(cluster: Cluster, config: HealthCheckConfig, tls: BackendTls | undefined) {
    cluster.addListener({
      onBackendAdded: (backend) => {
        if (this.#stopped) return;
        const prober = new BackendProber(cluster, backend, config, tls);
        this.#probers.set(backend, prober);
        prober.start();
      },
      onBackendRemoved: (backend) => {
        this.#probers.get(backend)?.stop();
        this.#probers.delete(backend);
      },
    });
  }

  /** Stops every prober; later membership changes are ignored. */
  stop(): void {
    this.#stopped = true;
    for (const prober of this.#probers.values()) prober.stop();
    this.#probers.clear();
  }
}
