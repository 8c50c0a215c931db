/**
 * What the admin API reads and changes in the running proxy. A running `Switchyard`
 * satisfies it; the admin modules depend on this interface rather than on `Switchyard`,
 * so the admin app can be built around a fake in tests and `switchyard.ts` → `admin/` stays
 * the only direction of import.
 * @module
 */
import type { AffinityService } from "../affinity/service.ts";
import type { Cluster } from "../cluster/cluster.ts";
import type { ReloadResult, ReloadStatus } from "../config/reload.ts";
import type { Config } from "../config/schema.ts";
import type { WorkerState } from "../dataplane/data_planes.ts";
import type { DataPlaneStats } from "../dataplane/stats.ts";
import type { RedisDiscovery } from "../discovery/redis_discovery.ts";

/** The proxy as the admin API sees it. */
export interface AdminTarget {
  /** The effective config, shown by `/config`; `admin` settings also shape the API itself. */
  readonly config: Config;
  /** The control plane's clusters by name. */
  readonly clusters: ReadonlyMap<string, Cluster>;
  /** Redis membership writes, when some cluster uses Redis discovery. */
  readonly discovery: Pick<RedisDiscovery, "addMember" | "removeMember"> | undefined;
  /** True once draining has begun. */
  readonly draining: boolean;
  /** The data planes: each one's liveness, and the clusters all of them can serve now. */
  readonly dataPlanes: {
    workers(): WorkerState[];
    usableClusters(): Promise<Set<string> | undefined>;
  };
  /** Starts a graceful drain; settles when it has finished. */
  drain(): Promise<void>;
  /** Every data plane's connectivity and counters, in worker order. */
  dataPlaneStats(): Promise<DataPlaneStats[]>;
  /** Settles once every data plane has applied every change made so far. */
  settled(): Promise<void>;
  /** Reads the config again and applies it; see `Switchyard.reload`. */
  reload(): Promise<ReloadResult>;
  /** Every reload so far. */
  readonly reloadStatus: ReloadStatus;
  /** The clusters' affinity tables; absent (as in tests' fakes) means none. */
  readonly affinity?: Pick<AffinityService, "status" | "lookup">;
}
