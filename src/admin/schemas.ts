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

/** One backend as operators see it. */
export const backendSchema = z
  .object({
    address: z.string().openapi({ example: "127.0.0.1:50051" }),
    sources: z.array(z.enum(["static", "redis", "admin"])),
    connectivity: z.string().openapi({ description: "The connection pool's state." }),
    state: z.string().openapi({
      description: "Effective state: connectivity folded with health and ejection.",
    }),
    health: z.enum(["unknown", "healthy", "unhealthy"]),
    lastCheckAt: z.string().nullable().openapi({
      description: "ISO time the last active health check finished.",
    }),
    lastHealthError: z.string().nullable().openapi({
      description: "Why the last active health check failed; null after a pass.",
    }),
    lastConnectionError: z.string().nullable().openapi({
      description: "The connection pool's last dial or connection error.",
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
    activeStreams: z.int(),
    calls: z.int(),
    failures: z.int(),
    bytesReceived: z.int().openapi({
      description: "Request bytes received from clients for calls to this backend.",
    }),
    bytesSent: z.int().openapi({
      description: "Response bytes sent to clients from this backend.",
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

/** One cluster with all of its members. */
export const clusterSchema = z
  .object({
    name: z.string().openapi({ example: "echo" }),
    picker: z.string().openapi({ example: "round_robin" }),
    state: z.string(),
    panic: z.boolean(),
    redisSet: z.string().nullable(),
    calls: z.int().openapi({ description: "Calls routed to the cluster, picked or not." }),
    errors: z.int().openapi({ description: "Of those, calls that ended with a non-OK status." }),
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
