/**
 * Every affinity table of the process, in the control plane: built from the config (and
 * rebuilt by reloads), asked by the data planes, and read by the admin API and metrics. The
 * Redis connections are opened only when some cluster keeps its table there.
 * @module
 */
import type { Config } from "../config/schema.ts";
import type { AffinityFromDataPlane, AffinityToDataPlane } from "./messages.ts";
import { AffinityRedis } from "./redis_connection.ts";
import { type AffinityLookup, type AffinityStatus, AffinityTable } from "./table.ts";

/** Where the service's messages go: the data planes. */
export interface AffinityPlanes {
  /** Sends to data plane `worker` (an answer to its request). */
  affinityTo(worker: number, message: AffinityToDataPlane): void;
  /** Sends to every data plane (owners that changed). */
  affinityToAll(message: AffinityToDataPlane): void;
}

/** The control plane's affinity tables. */
export class AffinityService {
  readonly #planes: AffinityPlanes;
  readonly #tables = new Map<string, AffinityTable>();
  #redis: AffinityRedis | undefined;
  /** The `redis` section `#redis` was opened with. */
  #redisSettings: string | undefined;
  /** Owner changes not yet sent to the data planes: one message per task, not one per id. */
  #updates: [cluster: string, id: string, owner: string][] = [];
  /** Claims per cluster name, over every table it had (a counter must not go down). */
  readonly #claims = new Map<string, { claims: number }>();

  /** Sends to `planes`; no table exists until {@link sync}. */
  constructor(planes: AffinityPlanes) {
    this.#planes = planes;
  }

  /**
   * Builds, keeps or drops each cluster's table to match `config` (at start and on every
   * reload). A table whose settings changed starts afresh (its Redis keys stay); Redis
   * connections open when the first cluster needs them and close with the last.
   */
  async sync(config: Config): Promise<void> {
    const wanted = new Map(
      Object.entries(config.clusters).flatMap(([name, cluster]) =>
        cluster.affinity ? [[name, cluster.affinity] as const] : []
      ),
    );
    const redisWanted = config.redis !== undefined &&
      [...wanted.values()].some((affinity) => affinity.store === "redis");
    const settings = JSON.stringify(config.redis);
    if (this.#redis !== undefined && (!redisWanted || settings !== this.#redisSettings)) {
      for (const [name, table] of this.#tables) {
        if (table.redis === undefined) continue;
        table.close();
        this.#tables.delete(name);
      }
      this.#redis.stop();
      this.#redis = undefined;
    }
    if (redisWanted && this.#redis === undefined) {
      this.#redis = await AffinityRedis.open(config.redis!);
      this.#redisSettings = settings;
    }
    for (const [name, table] of this.#tables) {
      const affinity = wanted.get(name);
      if (affinity !== undefined && JSON.stringify(affinity) === JSON.stringify(table.config)) {
        continue;
      }
      table.close();
      this.#tables.delete(name);
    }
    for (const name of this.#claims.keys()) {
      if (!(name in config.clusters)) this.#claims.delete(name);
    }
    for (const [name, affinity] of wanted) {
      if (this.#tables.has(name)) continue;
      let counts = this.#claims.get(name);
      if (counts === undefined) this.#claims.set(name, counts = { claims: 0 });
      const changed = (cluster: string, id: string, owner: string) =>
        this.#ownerChanged(cluster, id, owner);
      this.#tables.set(name, new AffinityTable(name, affinity, this.#redis, changed, counts));
    }
  }

  /** Takes a data plane's message: answers a resolve (always, even on failure), runs a keep. */
  receive(worker: number, message: AffinityFromDataPlane): void {
    const table = this.#tables.get(message.cluster);
    if (message.kind === "keep") {
      void table?.keep(message.ids).catch(() => {});
      return;
    }
    const { seq, cluster, id, proposed, expected } = message;
    const answer = (owner: string) =>
      this.#planes.affinityTo(worker, { kind: "answer", seq, cluster, id, owner });
    if (table === undefined) {
      // A reload took the cluster's table away while the request travelled.
      answer(proposed);
      return;
    }
    const owner = expected === undefined
      ? table.resolve(id, proposed)
      : table.claim(id, expected, proposed, message.reason ?? "unusable");
    owner.then(answer, () => answer(proposed));
  }

  /** One cluster's counts, or `undefined` when it keeps no table. */
  status(cluster: string): AffinityStatus | undefined {
    return this.#tables.get(cluster)?.status();
  }

  /** Every table's counts. */
  statuses(): AffinityStatus[] {
    return [...this.#tables.values()].map((table) => table.status());
  }

  /** The owner of `id` in `cluster`'s table, or `undefined` when it keeps none. */
  lookup(cluster: string, id: string): Promise<AffinityLookup> | undefined {
    return this.#tables.get(cluster)?.lookup(id);
  }

  /** True while the Redis command connection is up; `undefined` without Redis tables. */
  get redisConnected(): boolean | undefined {
    return this.#redis?.connected;
  }

  /** Drops every table and closes the Redis connections. */
  stop(): void {
    for (const table of this.#tables.values()) table.close();
    this.#tables.clear();
    this.#redis?.stop();
    this.#redis = undefined;
  }

  #ownerChanged(cluster: string, id: string, owner: string): void {
    if (this.#updates.length === 0) {
      queueMicrotask(() => {
        const updates = this.#updates;
        this.#updates = [];
        this.#planes.affinityToAll({ kind: "updates", updates });
      });
    }
    this.#updates.push([cluster, id, owner]);
  }
}
