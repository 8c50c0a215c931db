/**
 * Cluster inspection and live changes: picker switch, membership, drain per backend.
 * Every change is validated completely before anything is touched, so a rejected request
 * leaves the cluster exactly as it was.
 * @module
 */
import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { registeredPolicies } from "../../balancer/registry.ts";
import type { Cluster } from "../../cluster/cluster.ts";
import { formatHostPort, parseHostPort } from "../../config/address.ts";
import { RedisUnavailableError } from "../../discovery/redis_discovery.ts";
import { componentLogger } from "../../log/logger.ts";
import type { AdminTarget } from "../target.ts";
import { backendView, clusterView } from "../cluster_view.ts";
import { AdminError } from "../errors.ts";
import { createAdminRouter, jsonContent } from "../router.ts";
import {
  backendBodySchema,
  backendParamsSchema,
  backendSchema,
  clusterParamsSchema,
  clusterSchema,
  errorSchema,
  pickerBodySchema,
  registeredBackendSchema,
} from "../schemas.ts";

const log = componentLogger("admin");

const rejected = {
  400: { description: "Malformed input", content: jsonContent(errorSchema) },
  404: { description: "Unknown cluster or backend", content: jsonContent(errorSchema) },
} as const;

const redisUnavailable = {
  503: {
    description: "The cluster's Redis set could not be written (nothing changed) or read back",
    content: jsonContent(errorSchema),
  },
} as const;

const listRoute = createRoute({
  method: "get",
  path: "/clusters",
  tags: ["clusters"],
  summary: "Every cluster with its picker, panic flag and backends",
  responses: { 200: { description: "All clusters", content: jsonContent(z.array(clusterSchema)) } },
});

const showRoute = createRoute({
  method: "get",
  path: "/clusters/{name}",
  tags: ["clusters"],
  summary: "One cluster",
  request: { params: clusterParamsSchema },
  responses: {
    200: { description: "The cluster", content: jsonContent(clusterSchema) },
    ...rejected,
  },
});

const pickerRoute = createRoute({
  method: "put",
  path: "/clusters/{name}/picker",
  tags: ["clusters"],
  summary: "Switch the load-balancing policy live; in-flight calls are untouched",
  request: {
    params: clusterParamsSchema,
    body: { content: jsonContent(pickerBodySchema), required: true },
  },
  responses: {
    200: { description: "The cluster after the switch", content: jsonContent(clusterSchema) },
    ...rejected,
  },
});

const registerRoute = createRoute({
  method: "post",
  path: "/clusters/{name}/backends",
  tags: ["backends"],
  summary: "Register a backend",
  description: "For a cluster with Redis discovery, adds the backend to its Redis set so " +
    "every proxy on that set takes it (source redis; with requireHeartbeat, also a heartbeat " +
    "key without TTL, live until DELETE); otherwise registers it in this proxy only " +
    "(source admin).",
  request: {
    params: clusterParamsSchema,
    body: { content: jsonContent(backendBodySchema), required: true },
  },
  responses: {
    201: { description: "Registered", content: jsonContent(registeredBackendSchema) },
    200: {
      description: "Already listed by the Redis set, or already registered by the admin API",
      content: jsonContent(registeredBackendSchema),
    },
    ...rejected,
    ...redisUnavailable,
  },
});

const unregisterRoute = createRoute({
  method: "delete",
  path: "/clusters/{name}/backends/{address}",
  tags: ["backends"],
  summary: "Unregister a backend; its in-flight calls finish",
  description: "For a cluster with Redis discovery, removes the backend (and its heartbeat " +
    "key) from the Redis set, so every proxy on that set stops sending it new calls; static " +
    "and admin registrations are dropped from this proxy's memory.",
  request: { params: backendParamsSchema },
  responses: {
    200: { description: "The cluster after the removal", content: jsonContent(clusterSchema) },
    ...rejected,
    ...redisUnavailable,
  },
});

const drainRoute = createRoute({
  method: "post",
  path: "/clusters/{name}/backends/{address}/drain",
  tags: ["backends"],
  summary: "Drain a backend: no new calls, in-flight calls finish",
  request: { params: backendParamsSchema },
  responses: {
    200: { description: "The backend", content: jsonContent(backendSchema) },
    ...rejected,
  },
});

const undrainRoute = createRoute({
  method: "post",
  path: "/clusters/{name}/backends/{address}/undrain",
  tags: ["backends"],
  summary: "Return a drained backend to service",
  request: { params: backendParamsSchema },
  responses: {
    200: { description: "The backend", content: jsonContent(backendSchema) },
    ...rejected,
  },
});

/** The `/clusters` endpoints. */
export function clusterRoutes(switchyard: AdminTarget): OpenAPIHono {
  const findCluster = (name: string): Cluster => {
    const cluster = switchyard.clusters.get(name);
    if (!cluster) {
      throw new AdminError(404, `unknown cluster ${JSON.stringify(name)}`, [
        ...switchyard.clusters.keys(),
      ]);
    }
    return cluster;
  };
  const affinityOf = (cluster: Cluster) => switchyard.affinity?.status(cluster.name);
  // Changes reach every data plane before the answer, so it shows them in effect.
  const viewOf = async (cluster: Cluster) => {
    await switchyard.settled();
    return clusterView(cluster, await switchyard.dataPlaneStats(), affinityOf(cluster));
  };
  // The member is taken before waiting: meanwhile it may leave (a Redis re-read, say).
  const viewOfBackend = async (cluster: Cluster, address: string) => {
    const backend = cluster.backend(address);
    if (!backend) throw unknownBackend(cluster, address);
    await switchyard.settled();
    return backendView(cluster, backend, await switchyard.dataPlaneStats());
  };
  const setDrained = (name: string, address: string, drained: boolean) => {
    const cluster = findCluster(name);
    const canonical = canonicalAddress(address);
    if (!cluster.setDrained(canonical, drained)) throw unknownBackend(cluster, canonical);
    return viewOfBackend(cluster, canonical);
  };
  // Membership of a cluster fed by a Redis set is written there, so every proxy sees it.
  const redisOf = (cluster: Cluster): AdminTarget["discovery"] =>
    cluster.config.discovery ? switchyard.discovery : undefined;

  return createAdminRouter()
    .openapi(listRoute, async (c) => {
      const planes = await switchyard.dataPlaneStats();
      return c.json(
        [...switchyard.clusters.values()].map((k) => clusterView(k, planes, affinityOf(k))),
        200,
      );
    })
    .openapi(showRoute, async (c) => {
      const cluster = findCluster(c.req.valid("param").name);
      const planes = await switchyard.dataPlaneStats();
      return c.json(clusterView(cluster, planes, affinityOf(cluster)), 200);
    })
    .openapi(pickerRoute, async (c) => {
      const cluster = findCluster(c.req.valid("param").name);
      const { name } = c.req.valid("json");
      const known = registeredPolicies();
      if (!known.includes(name)) {
        throw new AdminError(400, `unknown picker ${JSON.stringify(name)}`, known);
      }
      cluster.switchPolicy(name);
      return c.json(await viewOf(cluster), 200);
    })
    .openapi(registerRoute, async (c) => {
      const cluster = findCluster(c.req.valid("param").name);
      const address = canonicalAddress(c.req.valid("json").address);
      const redis = redisOf(cluster);
      const source = redis ? "redis" : "admin";
      const added = redis
        ? await writeRedis(() => redis.addMember(cluster.name, address))
        : cluster.addMember("admin", address);
      if (added) {
        log.info("registered {address} in {cluster} ({source})", {
          cluster: cluster.name,
          address,
          source,
        });
      }
      return c.json({ ...await viewOfBackend(cluster, address), source }, added ? 201 : 200);
    })
    .openapi(unregisterRoute, async (c) => {
      const params = c.req.valid("param");
      const cluster = findCluster(params.name);
      const address = canonicalAddress(params.address);
      const redis = redisOf(cluster);
      // Redis first: when it is unreachable the request fails before this proxy changes.
      const unlisted = redis
        ? await writeRedis(() => redis.removeMember(cluster.name, address))
        : false;
      // The Redis source is gone by now (removeMember re-read the set); the rest are local.
      const local = [...(cluster.backend(address)?.sources ?? [])];
      if (!unlisted && local.length === 0) throw unknownBackend(cluster, address);
      for (const source of local) cluster.removeMember(source, address);
      log.info("unregistered {address} from {cluster}", { cluster: cluster.name, address });
      return c.json(await viewOf(cluster), 200);
    })
    .openapi(drainRoute, async (c) => {
      const { name, address } = c.req.valid("param");
      return c.json(await setDrained(name, address, true), 200);
    })
    .openapi(undrainRoute, async (c) => {
      const { name, address } = c.req.valid("param");
      return c.json(await setDrained(name, address, false), 200);
    });
}

/** Parses `host:port` into its canonical text, or rejects the request. */
function canonicalAddress(text: string): string {
  const parsed = parseHostPort(text);
  if (!parsed) throw new AdminError(400, `${JSON.stringify(text)} is not a host:port address`);
  return formatHostPort(parsed);
}

/** Runs a Redis membership write, answering 503 when Redis did not take it. */
async function writeRedis(write: () => Promise<boolean>): Promise<boolean> {
  try {
    return await write();
  } catch (error) {
    if (error instanceof RedisUnavailableError) throw new AdminError(503, error.message);
    throw error;
  }
}

function unknownBackend(cluster: Cluster, address: string): AdminError {
  return new AdminError(
    404,
    `cluster ${cluster.name} has no backend ${address}`,
    cluster.backends().map((backend) => backend.address),
  );
}
