/**
 * The admin API's request and response shapes. One zod schema per shape serves three
 * purposes: request validation, the TypeScript types, and the OpenAPI document.
 * @module
 */
import { z } from "@hono/zod-openapi";

/** Every 4xx/5xx body: what went wrong, plus the accepted values when that helps. */
export const errorSchema = z
  .object({
    error: z.string().openapi({ example: 'unknown cluster "nope"' }),
    known: z.array(z.string()).optional().openapi({ example: ["pick_first", "round_robin"] }),
  })
  .openapi("Error");

/** The body of an error response. */
export type ErrorBody = z.infer<typeof errorSchema>;

/** A plain acknowledgement. */
export const statusSchema = z
  .object({ status: z.string().openapi({ example: "ok" }) })
  .openapi("Status");

const connectivitySchema = z.enum(["IDLE", "CONNECTING", "READY", "TRANSIENT_FAILURE"]);

/** One backend in one data-plane worker. */
export const backendInWorkerSchema = z
  .object({
    worker: z.int().openapi({ description: "The data-plane worker, from 1." }),
    connectivity: connectivitySchema,
    state: connectivitySchema,
    lastConnectionError: z.string().nullable(),
    activeStreams: z.int(),
    calls: z.int(),
    failures: z.int(),
    bytesReceived: z.int(),
    bytesSent: z.int(),
    streamsOpened: z.int(),
    streamsEnded: z.int(),
    streamAgeP50Ms: z.int().nullable(),
    streamAgeMaxMs: z.int().nullable(),
  })
  .openapi("BackendInWorker");

/** One backend as operators see it. */
export const backendSchema = z
  .object({
    address: z.string().openapi({ example: "127.0.0.1:50051" }),
    sources: z.array(z.enum(["static", "redis", "admin"])),
    connectivity: connectivitySchema.openapi({
      description: "The connection pools' state: the most usable over workers.",
    }),
    state: connectivitySchema.openapi({
      description: "Effective state (connectivity folded with health and ejection): the most " +
        "usable over workers.",
    }),
    health: z.enum(["unknown", "healthy", "unhealthy"]),
    lastCheckAt: z.string().nullable().openapi({
      description: "ISO time the last active health check finished.",
    }),
    lastHealthError: z.string().nullable().openapi({
      description: "Why the last active health check failed; null after a pass.",
    }),
    lastConnectionError: z.string().nullable().openapi({
      description: "A connection pool's last dial or connection error (the first worker's " +
        "that has one).",
    }),
    lastTransitionReason: z.string().nullable().openapi({
      description: "Why the latest health or ejection change happened.",
    }),
    healthChecksPassed: z.int(),
    healthChecksFailed: z.int(),
    ejections: z.int(),
    ejected: z.boolean(),
    ejectedUntil: z.string().nullable().openapi({ description: "ISO time, while ejected." }),
    drained: z.boolean(),
    activeStreams: z.int().openapi({ description: "Summed over workers, as the counters." }),
    calls: z.int(),
    failures: z.int(),
    bytesReceived: z.int().openapi({
      description: "Request bytes received from clients for calls to this backend.",
    }),
    bytesSent: z.int().openapi({
      description: "Response bytes sent to clients from this backend.",
    }),
    streamsOpened: z.int().openapi({
      description: "Backend streams opened (every attempt of every call, unary included).",
    }),
    streamsEnded: z.int().openapi({
      description: "Of those, streams that ended; open now = streamsOpened − streamsEnded.",
    }),
    streamAgeP50Ms: z.int().nullable().openapi({
      description: "Median age of the open streams, over every worker's (nearest rank: exact " +
        "up to 256 streams per worker, sampled past that); null while none is open.",
    }),
    streamAgeMaxMs: z.int().nullable().openapi({
      description: "Age of the oldest open stream (the oldest over workers); null while none is " +
        "open.",
    }),
    workers: z.array(backendInWorkerSchema).openapi({
      description: "The same, as each data-plane worker sees it.",
    }),
  })
  .openapi("Backend");

/** A backend view. */
export type BackendView = z.infer<typeof backendSchema>;

/** `POST /clusters/{name}/backends` answers: the backend, and where the registration went. */
export const registeredBackendSchema = backendSchema
  .extend({
    source: z.enum(["redis", "admin"]).openapi({
      description: "redis: added to the cluster's Redis set, so every proxy on that set " +
        "takes it; admin: kept in this proxy's memory only.",
    }),
  })
  .openapi("RegisteredBackend");

/** A cluster's affinity table in `/clusters`. */
export const clusterAffinitySchema = z
  .object({
    store: z.enum(["local", "redis"]),
    key: z.string().openapi({ example: "header:x-client-id" }),
    ttlMs: z.int().openapi({ description: "How long an id no call uses keeps its owner." }),
    entries: z.int().openapi({
      description: "Ids the control plane holds (with Redis: this proxy's cache of the table).",
    }),
    hits: z.int().openapi({
      description: "Calls that went to their cached, usable owner, summed over workers.",
    }),
    misses: z.int().openapi({
      description: "Calls that did not (an unknown id, or an owner not usable in the worker).",
    }),
    claims: z.int().openapi({
      description: "Ids this proxy moved from an unusable owner to another backend.",
    }),
  })
  .openapi("ClusterAffinity");

/** A cluster's affinity view. */
export type ClusterAffinityView = z.infer<typeof clusterAffinitySchema>;

/** `GET /clusters/{name}/affinity?id=`: the owner of one id. */
export const affinityLookupSchema = z
  .object({
    cluster: z.string().openapi({ example: "sessions" }),
    id: z.string().openapi({ example: "client-42" }),
    owner: z.string().nullable().openapi({
      description: "The backend that owns the id, host:port; null when it has none.",
      example: "127.0.0.1:50051",
    }),
    store: z.enum(["local", "redis"]),
    ttlMs: z.int().nullable().openapi({
      description: "Milliseconds until the owner expires unless a call keeps it.",
    }),
    source: z.enum(["redis", "memory"]).openapi({
      description: "Where the answer was read: Redis, or this proxy's memory (store local, or " +
        "Redis unreachable).",
    }),
  })
  .openapi("AffinityLookup");

/** `?id=` of `GET /clusters/{name}/affinity`. */
export const affinityQuerySchema = z.object({
  id: z.string({ error: "is required" }).min(1, { error: "must not be empty" }).openapi({
    param: { name: "id", in: "query" },
    example: "client-42",
  }),
});

/** One cluster with all of its members. */
export const clusterSchema = z
  .object({
    name: z.string().openapi({ example: "echo" }),
    picker: z.string().openapi({ example: "round_robin" }),
    state: connectivitySchema.openapi({
      description: "The balancer's aggregate state: the most usable over workers.",
    }),
    panic: z.boolean(),
    redisSet: z.string().nullable(),
    calls: z.int().openapi({ description: "Calls routed to the cluster, picked or not." }),
    errors: z.int().openapi({ description: "Of those, calls that ended with a non-OK status." }),
    retries: z.object({ transparent: z.int(), configured: z.int() }).openapi({
      description: "Retries started: of attempts no backend processed, and configured ones.",
    }),
    overflow: z.object({
      maxConcurrentCalls: z.int(),
      maxPendingCalls: z.int(),
      maxConnectionsPerBackend: z.int(),
      retryBudget: z.int(),
    }).openapi({ description: "Times each limit refused a call or a retry." }),
    rebalanceShed: z.int().openapi({
      description: "Streams the rebalancer shed (clusters.NAME.rebalance), summed over workers.",
    }),
    affinity: clusterAffinitySchema.nullable().openapi({
      description: "The cluster's affinity table (clusters.NAME.affinity); null without one.",
    }),
    workers: z.array(
      z.object({
        worker: z.int(),
        state: connectivitySchema,
        calls: z.int(),
        errors: z.int(),
      }).openapi("ClusterInWorker"),
    ).openapi({ description: "State and counters in each data-plane worker." }),
    backends: z.array(backendSchema),
  })
  .openapi("Cluster");

/** A cluster view. */
export type ClusterView = z.infer<typeof clusterSchema>;

/** `PUT /clusters/{name}/picker`. */
export const pickerBodySchema = z
  .object({ name: z.string().min(1).openapi({ example: "pick_first" }) })
  .openapi("PickerChange");

/** `POST /clusters/{name}/backends`. */
export const backendBodySchema = z
  .object({ address: z.string().min(1).openapi({ example: "127.0.0.1:50053" }) })
  .openapi("BackendRegistration");

/** `{name}` in cluster paths. */
export const clusterParamsSchema = z.object({
  name: z.string().openapi({ param: { name: "name", in: "path" }, example: "echo" }),
});

/** `{name}` and `{address}` in backend paths. */
export const backendParamsSchema = clusterParamsSchema.extend({
  address: z.string().openapi({
    param: { name: "address", in: "path" },
    example: "127.0.0.1:50051",
  }),
});

/** `GET /ready`. */
export const readinessSchema = z
  .object({
    ready: z.boolean(),
    reason: z.string().openapi({ example: "cluster echo has a usable backend" }),
  })
  .openapi("Readiness");

/** One data-plane worker in `GET /workers`. */
export const workerSchema = z
  .object({
    worker: z.int().openapi({ description: "The worker's number, from 1." }),
    listening: z.boolean().openapi({ description: "Its listener is bound and it answers." }),
    restarts: z.int().openapi({ description: "Times it died and was restarted." }),
    connections: z.int().nullable().openapi({
      description: "Client connections open on it now; null when it did not answer.",
    }),
    calls: z.int().nullable().openapi({
      description: "Calls it has routed since it started, over every cluster.",
    }),
  })
  .openapi("Worker");

/**
 * A backend's state at one sample of `/clusters/{name}/series`: the operator's drain, then
 * passive ejection, then a failed active health check, else its connectivity as in
 * `/clusters` (the most usable over workers).
 */
export const seriesBackendStateSchema = z.enum([
  "READY",
  "CONNECTING",
  "IDLE",
  "TRANSIENT_FAILURE",
  "UNHEALTHY",
  "EJECTED",
  "DRAINED",
]);

/** One backend's state at one sample. */
export type SeriesBackendState = z.infer<typeof seriesBackendStateSchema>;

/** `GET /clusters/{name}/series`: the cluster's recent history, oldest point first. */
export const clusterSeriesSchema = z
  .object({
    cluster: z.string().openapi({ example: "echo" }),
    intervalMs: z.int().openapi({
      description: "Time between samples (admin.seriesInterval); each point covers one.",
      example: 5000,
    }),
    capacity: z.int().openapi({
      description: "Points kept: older ones are dropped (180 × 5 s = 15 minutes).",
      example: 180,
    }),
    latencyBucketsSeconds: z.array(z.number()).openapi({
      description: "Upper bounds of the duration buckets the percentiles are estimated from " +
        "(linear interpolation inside a bucket, as Prometheus' histogram_quantile); the last " +
        "bucket, past the last bound, answers that bound.",
    }),
    points: z.array(
      z.object({
        at: z.string().openapi({ description: "ISO time of the sample." }),
        calls: z.int().openapi({ description: "Calls that finished during the interval." }),
        errors: z.int().openapi({ description: "Of those, calls with a non-OK status." }),
        callsPerSecond: z.number(),
        errorRate: z.number().nullable().openapi({
          description: "errors / calls, from 0 to 1; null without calls.",
        }),
        p50Seconds: z.number().nullable().openapi({ description: "Null without calls." }),
        p99Seconds: z.number().nullable().openapi({ description: "Null without calls." }),
      }).openapi("SeriesPoint"),
    ),
    backends: z.array(
      z.object({
        address: z.string().openapi({ example: "127.0.0.1:50051" }),
        calls: z.array(z.int().nullable()).openapi({
          description: "Calls sent to it during each point's interval (retries included); " +
            "one entry per point, null before it joined.",
        }),
        share: z.array(z.number().nullable()).openapi({
          description: "Its share (0 to 1) of the calls sent to backends in each interval; " +
            "null when none were.",
        }),
        state: z.array(seriesBackendStateSchema.nullable()),
      }).openapi("SeriesBackend"),
    ).openapi({ description: "Current members, their arrays aligned with points." }),
  })
  .openapi("ClusterSeries");

/** A cluster's series. */
export type ClusterSeriesView = z.infer<typeof clusterSeriesSchema>;
