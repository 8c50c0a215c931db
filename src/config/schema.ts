/**
 * The `config.json` contract, as a zod schema. The published JSON Schema
 * (`config.schema.json`) is generated from this file by `deno task schema`.
 * @module
 */
import { z } from "zod";
import { HOST_PORT_PATTERN, parseHost, parseHostPort } from "./address.ts";
import { DURATION_PATTERN, parseDuration } from "./duration.ts";
import { GRPC_STATUS_NAMES } from "../proxy/grpc_status.ts";
import { HASH_KEY_PATTERN } from "../balancer/hash_policy.ts";
import { REBALANCING_PICKERS } from "../balancer/types.ts";
import { MAX_WEIGHT } from "../cluster/snapshot.ts";
import { ACCESS_LOG_FIELDS } from "../access_log/format.ts";
import { clusterHashTag, hasHashTag } from "../affinity/keys.ts";

const notHostPort = (issue: { input: unknown }) =>
  `${JSON.stringify(issue.input)} is not host:port`;

/**
 * A `host:port` string. The pattern (emitted in the JSON Schema) checks the shape, the refinement
 * the parts; `abort` keeps a bad shape to one message.
 */
const addressSchema = z
  .string()
  .regex(HOST_PORT_PATTERN, { error: notHostPort, abort: true })
  .refine((text) => parseHostPort(text) !== undefined, { error: notHostPort });

/** A host as a `Host` header names it: RFC 1123 name, dotted quad or `[IPv6]`; lowercased. */
const hostSchema = z
  .string()
  .refine((text) => parseHost(text) !== undefined, {
    error: (issue) => `${JSON.stringify(issue.input)} is not a host name or IP address`,
  })
  .transform((text) => parseHost(text)!.toLowerCase());

/** Timers cannot wait longer: Node-style timers fire at once past 2^31-1 ms (about 24 days). */
const MAX_DURATION_MS = 2 ** 31 - 1;

/**
 * A duration string such as `"250ms"` or `"5s"`, parsed to milliseconds. A pattern rather than a
 * refinement, so the JSON Schema carries it.
 */
const durationSchema = z
  .string()
  .regex(DURATION_PATTERN, {
    error: (issue) => `${JSON.stringify(issue.input)} is not a duration like "250ms" or "5s"`,
  })
  .transform((text) => parseDuration(text)!)
  .refine((ms) => ms <= MAX_DURATION_MS, { error: "must be at most 24 days" });

const SERVICE_NAME = /^[A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*)*$/;
const FULL_METHOD = /^\/[A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*)*\/[A-Za-z_][\w]*$/;

/** A duration that must be above zero: a zero interval, timeout or backoff would spin. */
const positiveDurationSchema = durationSchema.refine((ms) => ms > 0, {
  error: "must be greater than 0",
});

/** Active `grpc.health.v1.Health/Check` probing, with Envoy's semantics and defaults. */
const healthCheckSchema = z.strictObject({
  interval: positiveDurationSchema.prefault("5s"),
  timeout: positiveDurationSchema.prefault("1s"),
  jitter: durationSchema.prefault("0ms"),
  unhealthyThreshold: z.int().min(1).default(3),
  healthyThreshold: z.int().min(1).default(2),
  service: z.string().default(""),
  authority: z.string().optional(),
  whenUnimplemented: z.enum(["healthy", "unhealthy"]).default("healthy"),
});

/** Passive ejection of backends whose calls fail (Envoy's outlier detection). */
const outlierDetectionSchema = z.strictObject({
  consecutiveFailures: z.int().min(1).default(5),
  baseEjectionTime: positiveDurationSchema.prefault("30s"),
  maxEjectionTime: positiveDurationSchema.prefault("300s"),
  maxEjectionPercent: z.number().min(0).max(100).default(10),
});

/** Live membership from a Redis set. */
const discoverySchema = z.strictObject({
  redisSet: z.string().min(1),
  requireHeartbeat: z.boolean().default(false),
  /** A set listing more members than this is not applied; the last-known members stay. */
  maxMembers: z.int().min(1).default(10_000),
});

/** Reconnect backoff for upstream connections (gRPC connection-backoff shape). */
const backoffSchema = z.strictObject({
  initial: positiveDurationSchema.prefault("100ms"),
  max: positiveDurationSchema.prefault("3s"),
  multiplier: z.number().min(1).default(1.6),
  jitter: z.number().min(0).max(1).default(0.2),
});

/** `pick_first` settings, as gRPC's pick_first LB config (gRFC A62) plus its Happy Eyeballs delay. */
const pickFirstSchema = z.strictObject({
  shuffleAddressList: z.boolean().default(false),
  connectionDelay: positiveDurationSchema.prefault("250ms"),
});

/** The largest ring gRFC A42 (and Envoy's `maximum_ring_size`) allows: 8M entries. */
const RING_SIZE_LIMIT = 8 * 1024 * 1024;

/**
 * `ring_hash` settings: the ring's bounds, as gRFC A42 and Envoy's `RingHashLbConfig`. The
 * key comes from the cluster's `hashKey`.
 */
const ringHashSchema = z
  .strictObject({
    minRingSize: z.int().min(1).max(RING_SIZE_LIMIT).default(1024),
    maxRingSize: z.int().min(1).max(RING_SIZE_LIMIT).default(4096),
  })
  .refine((ring) => ring.minRingSize <= ring.maxRingSize, {
    error: "must be at least minRingSize",
    path: ["maxRingSize"],
  });

/** `least_request` settings, as gRFC A48 (Envoy's `choice_count`, which A48 caps at 10). */
const leastRequestSchema = z.strictObject({
  choiceCount: z.int().min(2).max(10).default(2),
});

/**
 * Scale-out rebalancing of long-lived streams: every `interval`, each data plane sheds streams
 * from its busiest backends (oldest first, only those older than `minStreamAge`, at most
 * `maxShare` of the cluster's streams) while another backend is below its fair share. A shed
 * stream ends with UNAVAILABLE, which clients retry. Absent: off.
 */
const rebalanceSchema = z.strictObject({
  /** How often each data plane looks; a shorter one would make shedding a storm. */
  interval: durationSchema
    .refine((ms) => ms >= 100, { error: "must be at least 100ms" })
    .prefault("10s"),
  /** The share of the cluster's streams (in one data plane) shed per interval at most. */
  maxShare: z.number()
    .gt(0, { error: "must be greater than 0 and at most 0.5" })
    .max(0.5, { error: "must be greater than 0 and at most 0.5" })
    .default(0.05),
  /** Younger streams are never shed, so a reconnected stream is not moved again at once. */
  minStreamAge: durationSchema.prefault("1m"),
  /**
   * How unbalanced before acting: some backend below (1 − tolerance) × its fair share, or
   * above (1 + tolerance) × it.
   */
  tolerance: z.number()
    .min(0, { error: "must be from 0 to 1" })
    .max(1, { error: "must be from 0 to 1" })
    .default(0.1),
});

/**
 * Where a cluster's request hash comes from: `header:<name>` (the header's first value) or
 * `client_address` (the client's IP), as Envoy's hash policies.
 */
const hashKeySchema = z.string().regex(HASH_KEY_PATTERN, {
  error: (issue) =>
    `${JSON.stringify(issue.input)} is not "header:<lower-case name>" or "client_address"`,
});

/**
 * A cluster's affinity table: calls with the same id (from `key`, spelled as `hashKey`) go to
 * the same backend, recorded on the first call and kept while calls use it; an owner that
 * becomes unusable is claimed by the next call. `store: "redis"` shares the table between
 * proxies (it needs the top-level `redis` section); `"local"` keeps it in this process.
 */
const affinitySchema = z.strictObject({
  key: hashKeySchema,
  store: z.enum(["local", "redis"], {
    error: (issue) => `${JSON.stringify(issue.input)} is not "local" or "redis"`,
  }).default("local"),
  /** How long an id no call uses keeps its owner; calls keep it (every ttl / 4). */
  ttl: durationSchema
    .refine((ms) => ms >= 1000, { error: "must be at least 1s" })
    .prefault("10m"),
  /** How long a call for an unknown id waits for the table before the picker decides alone. */
  lookupTimeout: positiveDurationSchema
    .refine((ms) => ms <= 10_000, { error: "must be at most 10s" })
    .prefault("250ms"),
  /** Ids each data plane caches, and the control plane holds, at most. */
  maxEntries: z.int().min(1).max(10_000_000).default(100_000),
});

/** A backend's load-balancing weight (Envoy's `load_balancing_weight`): a positive integer. */
const weightSchema = z.int({ error: `must be a whole number from 1 to ${MAX_WEIGHT}` })
  .min(1, { error: `must be a whole number from 1 to ${MAX_WEIGHT}` })
  .max(MAX_WEIGHT, { error: `must be a whole number from 1 to ${MAX_WEIGHT}` });

/**
 * Configured retries of calls that reached a backend, as gRPC's retry policy (gRFC A6) with
 * Envoy's per-try timeout. Only uncommitted calls are retried: before the backend's response
 * headers, and while the request so far fits `retryBufferBytes`.
 */
const retryPolicySchema = z.strictObject({
  /** The statuses that retry a call, by name (`"UNAVAILABLE"`). */
  retryOn: z.array(z.enum(GRPC_STATUS_NAMES.filter((name) => name !== "OK"))).min(1),
  /** Attempts per call, the first included; A6 caps it at 5. */
  maxAttempts: z.int().min(2).max(5).default(3),
  /** How long one attempt may wait for the backend's response headers; then it is retried. */
  perTryTimeout: positiveDurationSchema.optional(),
  /** Backoff before retry n is random in [0, min(initialBackoff × multiplier^(n-1), maxBackoff)]. */
  initialBackoff: positiveDurationSchema.prefault("25ms"),
  maxBackoff: positiveDurationSchema.prefault("250ms"),
  backoffMultiplier: z.number().min(1).default(2),
});

/**
 * How calls are timed and retried. A cluster sets the defaults of the routes to it, and a
 * route may override each field.
 */
const callPolicyFields = {
  /** The deadline of a call that sent no `grpc-timeout`. */
  timeout: positiveDurationSchema.optional(),
  /** Caps the deadline a client asks for (Envoy's `grpc_timeout_header_max`). */
  maxTimeout: positiveDurationSchema.optional(),
  /** A call with no frame either way for this long ends with UNAVAILABLE; 0 turns it off. */
  streamIdleTimeout: durationSchema.optional(),
  /** Configured retries; none unless set. On a route, `null` turns off its cluster's. */
  retry: retryPolicySchema.nullable().optional(),
  /** Request bytes kept for replaying a call (either kind of retry); a larger request is not retried. */
  retryBufferBytes: z.int().min(0).max(16 * 1024 * 1024).optional(),
};

/** Circuit breaking, as Envoy's cluster thresholds; shared by every data-plane worker. */
const limitsSchema = z.strictObject({
  /** Calls in flight in the cluster; past it a call fails at once. */
  maxConcurrentCalls: z.int().min(1).default(10_000),
  /** Calls waiting while no backend is ready; past it a call fails at once. */
  maxPendingCalls: z.int().min(0).default(1024),
  /** Connections to one backend; defaults to `http2.upstream.maxConnectionsPerBackend`. */
  maxConnectionsPerBackend: z.int().min(1).optional(),
});

/** Envoy's `retry_budget`: retries in flight at most a share of the calls in flight. */
const retryBudgetSchema = z.strictObject({
  percent: z.number().min(0).max(100).default(20),
  minRetryConcurrency: z.int().min(0).default(3),
});

/**
 * A cluster's picker: the loader checks the name against the balancer registry
 * (`ConfigContext.pickers`), and the JSON Schema lists the registered names as its `enum`, so
 * this module need not load the balancers.
 */
export const pickerSchema: z.ZodDefault<z.ZodString> = z.string().default("round_robin");

/**
 * A TLS server name: an RFC 1123 host name, not an IP address, which SNI cannot carry
 * (RFC 6066 §3).
 */
const serverNameSchema = z.string().refine(
  (text) => parseHost(text) === text && !/^[\d.]+$/.test(text),
  { error: (issue) => `${JSON.stringify(issue.input)} is not a host name` },
);

/**
 * TLS to a cluster's backends. The files are read by the control plane at start; verification
 * is on unless `insecureSkipVerify` says otherwise.
 */
const backendTlsSchema = z
  .strictObject({
    /** PEM CA certificates the backends' certificates must chain to; default: the system roots. */
    ca: z.string().min(1).optional(),
    /** A PEM client certificate chain (mTLS), with `key`. */
    cert: z.string().min(1).optional(),
    /** The PEM private key of `cert`. */
    key: z.string().min(1).optional(),
    /** The name sent in SNI and verified in the certificate; default: the backend's host. */
    serverName: serverNameSchema.optional(),
    /** ALPN protocols offered (RFC 7301); the backend must choose `h2` (RFC 9113 §3.2). */
    alpn: z.array(z.string().min(1).max(255)).min(1).default(["h2"]).refine(
      (protocols) => protocols.includes("h2"),
      { error: 'must include "h2": backends are spoken to in HTTP/2 (RFC 9113 §3.2)' },
    ),
    /** Accept any certificate from the backends. Logged as a warning at start. */
    insecureSkipVerify: z.boolean().default(false),
  })
  .superRefine((tls, ctx) => {
    if ((tls.cert === undefined) === (tls.key === undefined)) return;
    const [missing, given] = tls.cert === undefined ? ["cert", "key"] : ["key", "cert"];
    ctx.addIssue({ code: "custom", path: [missing], message: `is required with ${given}` });
  });

/** One cluster: a set of interchangeable backends behind one picker. */
const clusterSchema = z
  .strictObject({
    picker: pickerSchema,
    pickFirst: pickFirstSchema.prefault({}),
    ringHash: ringHashSchema.prefault({}),
    leastRequest: leastRequestSchema.prefault({}),
    /** The cluster's hash policy: `ring_hash` hashes it (and so may other key-based features). */
    hashKey: hashKeySchema.optional(),
    backends: z.array(addressSchema).default([]),
    /** Weights of static backends by `host:port`; an unlisted backend weighs 1. */
    weights: z.record(addressSchema, weightSchema).optional(),
    discovery: discoverySchema.optional(),
    connectTimeout: positiveDurationSchema.prefault("5s"),
    tls: backendTlsSchema.optional(),
    waitForReadyTimeout: durationSchema.prefault("5s"),
    reconnectBackoff: backoffSchema.prefault({}),
    healthCheck: healthCheckSchema.optional(),
    outlierDetection: outlierDetectionSchema.optional(),
    panicThreshold: z.number().min(0).max(100).default(50),
    ...callPolicyFields,
    streamIdleTimeout: durationSchema.prefault("5m"),
    retryBufferBytes: callPolicyFields.retryBufferBytes.unwrap().default(64 * 1024),
    /**
     * Attempts per call, the first included, for calls no backend processed (connect failure,
     * REFUSED_STREAM, above a GOAWAY's last stream id); 1 turns transparent retry off.
     */
    transparentRetry: z.strictObject({ maxAttempts: z.int().min(1).max(10).default(3) })
      .prefault({}),
    retryBudget: retryBudgetSchema.prefault({}),
    limits: limitsSchema.prefault({}),
    /** Sheds long-lived streams from the busiest backends when others join; off unless set. */
    rebalance: rebalanceSchema.optional(),
    /** Sticks each id to one backend (a table shared through Redis, or local); off unless set. */
    affinity: affinitySchema.optional(),
  })
  .refine((cluster) => cluster.backends.length > 0 || cluster.discovery !== undefined, {
    error: "needs static backends, a discovery source, or both",
    path: ["backends"],
  })
  .superRefine((cluster, ctx) => {
    const listed = new Set(cluster.backends);
    for (const address of Object.keys(cluster.weights ?? {})) {
      if (listed.has(address)) continue;
      ctx.addIssue({
        code: "custom",
        path: ["weights", address],
        message: "is not in backends (Redis members take their weight from Redis)",
      });
    }
    if (cluster.picker === "ring_hash" && cluster.hashKey === undefined) {
      ctx.addIssue({
        code: "custom",
        path: ["hashKey"],
        message: 'is required by ring_hash (e.g. "header:x-client-id" or "client_address")',
      });
    }
    if (cluster.rebalance !== undefined && !REBALANCING_PICKERS.includes(cluster.picker)) {
      // pick_first and ring_hash would send a shed stream straight back where it was.
      ctx.addIssue({
        code: "custom",
        path: ["rebalance"],
        message: `needs a picker that spreads streams (${REBALANCING_PICKERS.join(", ")}), ` +
          `not ${cluster.picker}`,
      });
    }
  });

/** An HTTP field name as HTTP/2 carries it: a token in lower case (RFC 9113 §8.2.1). */
const lowerFieldNameSchema = z.string().regex(/^[!#$%&'*+.^_`|~0-9a-z-]+$/, {
  error: "is not a lower-case HTTP header name",
});

/** A header value: no CR, LF or NUL, no leading or trailing whitespace (RFC 9113 §8.2.1). */
const fieldValueSchema = z.string().regex(/^(?:[^\0\r\n\t ](?:[^\0\r\n]*[^\0\r\n\t ])?)?$/, {
  error: "is not a valid header value (CR, LF, NUL or surrounding whitespace)",
});

/** A regular expression, matched against the whole value. */
const regexSchema = z.string().refine((text) => {
  try {
    new RegExp(text);
    return true;
  } catch {
    return false;
  }
}, { error: (issue) => `${JSON.stringify(issue.input)} is not a regular expression` });

/** How a value matches: exactly one of these. */
const valueMatchFields = {
  exact: z.string().optional(),
  prefix: z.string().min(1).optional(),
  suffix: z.string().min(1).optional(),
  regex: regexSchema.optional(),
};

const ONE_MATCH_ERROR = "set exactly one of exact, prefix, suffix, regex or present";

/** A header matcher: the header's first value matches, or the header is present or absent. */
const headerMatchSchema = z
  .strictObject({
    name: lowerFieldNameSchema,
    ...valueMatchFields,
    present: z.boolean().optional(),
  })
  .refine(
    (match) =>
      [match.exact, match.prefix, match.suffix, match.regex, match.present]
        .filter((value) => value !== undefined).length === 1,
    { error: ONE_MATCH_ERROR },
  );

/** An `:authority` matcher (port included as the client sent it). */
const authorityMatchSchema = z
  .strictObject(valueMatchFields)
  .refine(
    (match) =>
      [match.exact, match.prefix, match.suffix, match.regex]
        .filter((value) => value !== undefined).length === 1,
    { error: "set exactly one of exact, prefix, suffix or regex" },
  );

/**
 * Headers no route may set, append or remove: the pseudo-headers, the connection-specific
 * fields HTTP/2 forbids (RFC 9113 §8.2.2), and those gRPC framing depends on.
 */
const PROTECTED_HEADERS = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "upgrade",
  "te",
  "content-type",
  "grpc-timeout",
  "grpc-encoding",
  "grpc-accept-encoding",
  "grpc-previous-rpc-attempts",
  "host",
]);

const rewritableNameSchema = lowerFieldNameSchema.refine((name) => !PROTECTED_HEADERS.has(name), {
  error: (issue) => `${JSON.stringify(issue.input)} cannot be rewritten: gRPC or HTTP/2 owns it`,
});

/** Request headers a route changes on the way to the backend, in this order: remove, set, append. */
const requestHeadersSchema = z.strictObject({
  remove: z.array(rewritableNameSchema).default([]),
  set: z.record(rewritableNameSchema, fieldValueSchema).default({}),
  append: z.record(rewritableNameSchema, fieldValueSchema).default({}),
});

/** The `:authority` the backend sees: a literal host, or the picked backend's `host:port`. */
const authorityRewriteSchema = z.union([
  z.strictObject({ literal: z.string().min(1).regex(/^[^\s/?#@]+$/, { error: "is not a host" }) }),
  z.strictObject({ backendAddress: z.literal(true) }),
], { error: 'set { "literal": "host" } or { "backendAddress": true }' });

/**
 * A routing rule: a gRPC service, a full method, or (without either) every path, optionally
 * narrowed by `:authority` and headers; with the call policy and header rewrites for its calls.
 */
const routeSchema = z
  .strictObject({
    service: z.string().regex(SERVICE_NAME, { error: "is not a service name like pkg.Service" })
      .optional(),
    method: z.string().regex(FULL_METHOD, { error: "is not a method like /pkg.Service/Method" })
      .optional(),
    authority: authorityMatchSchema.optional(),
    headers: z.array(headerMatchSchema).default([]),
    cluster: z.string().min(1),
    ...callPolicyFields,
    requestHeaders: requestHeadersSchema.optional(),
    /** Appends the client's address to `x-forwarded-for`. */
    xForwardedFor: z.boolean().default(false),
    /** Generates `x-request-id` when the client sent none, and returns it in the response headers. */
    requestId: z.boolean().default(false),
    authorityRewrite: authorityRewriteSchema.optional(),
  })
  .refine((route) => !(route.service && route.method), {
    error: "set service or method, not both",
  });

/** What a route's path is, for messages: its method or service, or neither. */
function describeRoutePath(route: z.output<typeof routeSchema>): string {
  if (route.method) return `the same method ${JSON.stringify(route.method)}`;
  if (route.service) return `the same service ${JSON.stringify(route.service)}`;
  return "no service or method";
}

/**
 * Routes with equal keys match the same calls, so the later one is never taken. Conditions are
 * compared as JSON with sorted keys, and header conditions in any order since all must hold.
 */
function routeMatchKey(route: z.output<typeof routeSchema>): string {
  const path = route.method ?? (route.service ? `${route.service}/` : "");
  return JSON.stringify([path, sortedJson(route.authority), route.headers.map(sortedJson).sort()]);
}

/** A flat object as JSON with its keys sorted, so `{ name, exact }` equals `{ exact, name }`. */
function sortedJson(value: object | undefined): string | undefined {
  return value === undefined ? undefined : JSON.stringify(value, Object.keys(value).sort());
}

/** Credentials for a Redis node (ACL user and password, or a password alone). */
const redisCredentials = {
  username: z.string().min(1).optional(),
  password: z.string().min(1).optional(),
};

/** Redis behind Sentinel: the master is whichever node the sentinels name for `masterName`. */
const redisSentinelSchema = z.strictObject({
  masterName: z.string().min(1),
  sentinels: z.array(addressSchema).min(1, { error: "list at least one sentinel host:port" }),
  ...redisCredentials,
  /** Credentials for the sentinels themselves, when they require their own. */
  sentinelUsername: z.string().min(1).optional(),
  sentinelPassword: z.string().min(1).optional(),
  database: z.int().min(0).default(0),
});

/** A Redis Cluster: any reachable nodes of it; the rest of the topology is discovered. */
const redisClusterSchema = z.strictObject({
  nodes: z.array(addressSchema).min(1, { error: "list at least one node host:port" }),
  ...redisCredentials,
});

/**
 * Redis connection settings shared by Redis discovery and Redis affinity tables: exactly one
 * of `url` (one node), `sentinel` or `cluster`.
 */
const redisSchema = z
  .strictObject({
    url: z.string().regex(/^rediss?:\/\//, { error: "must start with redis:// or rediss://" })
      .optional(),
    sentinel: redisSentinelSchema.optional(),
    cluster: redisClusterSchema.optional(),
    connectTimeout: positiveDurationSchema.prefault("2s"),
    commandTimeout: positiveDurationSchema.prefault("2s"),
    pollInterval: positiveDurationSchema.prefault("5s"),
  })
  .superRefine((redis, ctx) => {
    const modes = (["url", "sentinel", "cluster"] as const).filter((mode) => redis[mode]);
    if (modes.length === 0) {
      ctx.addIssue({
        code: "custom",
        path: [],
        message: 'needs one of "url", "sentinel" or "cluster"',
      });
    }
    for (const extra of modes.slice(1)) {
      ctx.addIssue({
        code: "custom",
        path: [extra],
        message: `cannot be combined with "${modes[0]}": set exactly one of "url", "sentinel" ` +
          'or "cluster"',
      });
    }
  });

/** Admin API listener, its optional bearer token, and the `Host` names it answers to. */
const adminSchema = z.strictObject({
  listen: addressSchema.prefault("127.0.0.1:9901"),
  token: z.string().min(16, { error: "must be at least 16 characters" }).optional(),
  tokenEnv: z.string().default("SWITCHYARD_ADMIN_TOKEN"),
  /** Extra `Host` names the admin API answers to, besides loopback and the listen host. */
  allowedHosts: z.array(hostSchema).optional(),
  /**
   * How often the status page's history is sampled (one stats round each); 180 samples are
   * kept, so 5 s shows 15 minutes. Below 100 ms the sampling itself would be the load.
   */
  seriesInterval: durationSchema
    .refine((ms) => ms >= 100 && ms <= 60_000, { error: "must be from 100ms to 1m" })
    .prefault("5s"),
});

/** TLS for the downstream listener (ALPN `h2`); with `clientCa`, clients authenticate (mTLS). */
const tlsSchema = z
  .strictObject({
    cert: z.string().min(1),
    key: z.string().min(1),
    /** PEM file of the CAs that sign client certificates: every client is asked for one. */
    clientCa: z.string().min(1).optional(),
    /** Refuse clients that send no certificate; otherwise they are served with no identity. */
    requireClientCert: z.boolean().default(false),
    /** Request header that carries the verified client identity to the backend. */
    clientIdentityHeader: rewritableNameSchema.optional(),
  })
  .superRefine((tls, ctx) => {
    if (tls.clientCa !== undefined) return;
    // Without clientCa no client is asked for a certificate, so none could be required or named.
    if (tls.requireClientCert) {
      ctx.addIssue({ code: "custom", path: ["requireClientCert"], message: "needs clientCa" });
    }
    if (tls.clientIdentityHeader !== undefined) {
      ctx.addIssue({ code: "custom", path: ["clientIdentityHeader"], message: "needs clientCa" });
    }
  });

/** A flow-control window in bytes: RFC 9113 §6.9.1 caps it at 2^31-1. */
const windowSchema = z.int().min(65_535).max(2 ** 31 - 1);

/**
 * The HTTP/2 engine's limits (RFC 9113). Defaults follow Envoy's edge recommendations and
 * NGINX; every limit is named in the error a peer gets when it crosses it.
 */
const http2Schema = z.strictObject({
  /** Client connections open at once; past it new connections are closed at accept. */
  maxConnections: z.int().min(1).default(10_000),
  /** SETTINGS_MAX_CONCURRENT_STREAMS advertised to clients. */
  maxConcurrentStreams: z.int().min(1).max(2 ** 31 - 1).default(100),
  /** SETTINGS_INITIAL_WINDOW_SIZE advertised to clients. */
  initialStreamWindowSize: windowSchema.default(256 * 1024),
  /** The connection receive window offered to each client. */
  initialConnectionWindowSize: windowSchema.default(1024 * 1024),
  /** SETTINGS_MAX_FRAME_SIZE advertised on both sides (RFC 9113 §6.5.2 range). */
  maxFrameSize: z.int().min(16_384).max(16_777_215).default(16_384),
  /** SETTINGS_MAX_HEADER_LIST_SIZE: decoded header bytes (names + values + 32 each). */
  maxHeaderListSize: z.int().min(1024).default(65_536),
  /** Encoded bytes of one header block, HEADERS plus CONTINUATION frames. */
  maxHeaderBlockSize: z.int().min(1024).default(131_072),
  /** CONTINUATION frames allowed after one HEADERS frame. */
  maxContinuationFrames: z.int().min(0).default(32),
  /** Client resets before a response (rapid reset, CVE-2023-44487) within `prematureResetWindow`. */
  maxPrematureResets: z.int().min(1).default(100),
  prematureResetWindow: positiveDurationSchema.prefault("10s"),
  /** Control frames (PING and SETTINGS ACKs, RST_STREAM) queued unsent on one connection. */
  maxOutboundControlFrames: z.int().min(1).default(1000),
  /** Consecutive frames with an empty payload and no END_STREAM. */
  maxConsecutiveEmptyFrames: z.int().min(0).default(1),
  /** Time for the client preface and SETTINGS, and for a SETTINGS ACK. */
  settingsTimeout: positiveDurationSchema.prefault("10s"),
  /** A client connection with no open stream for this long is closed with GOAWAY. */
  idleTimeout: positiveDurationSchema.prefault("180s"),
  /** A stream whose queued response makes no progress (zero window) for this long is reset. */
  sendTimeout: positiveDurationSchema.prefault("60s"),
  /** Bytes queued for sending on one connection before it stops reading its peers. */
  maxConnectionBufferSize: z.int().min(65_536).default(4 * 1024 * 1024),
  /**
   * gRPC's MAX_CONNECTION_AGE: a client connection this old (±10 % jitter) gets a graceful
   * GOAWAY, and its client reconnects for new calls. Unset: connections never age.
   */
  maxConnectionAge: positiveDurationSchema.optional(),
  /**
   * gRPC's MAX_CONNECTION_AGE_GRACE: after that GOAWAY, calls still open may run this long,
   * then end with UNAVAILABLE and the connection closes. Unset: they run to their end.
   */
  maxConnectionAgeGrace: positiveDurationSchema.optional(),
  /** Upstream (backend) connections. */
  upstream: z.strictObject({
    /** SETTINGS_INITIAL_WINDOW_SIZE advertised to backends. */
    initialStreamWindowSize: windowSchema.default(256 * 1024),
    /** The connection receive window offered to each backend connection. */
    initialConnectionWindowSize: windowSchema.default(16 * 1024 * 1024),
    /** Connections to one backend; more open only at its SETTINGS_MAX_CONCURRENT_STREAMS. */
    maxConnectionsPerBackend: z.int().min(1).default(8),
    /**
     * Dials in flight at once across every backend of the process; more wait in order, so a
     * huge membership change cannot exhaust file descriptors or starve the event loop.
     */
    maxConcurrentDials: z.int().min(1).default(64),
    /** Keepalive PING interval on an upstream connection; a lost PONG closes it. */
    keepaliveInterval: positiveDurationSchema.prefault("30s"),
    keepaliveTimeout: positiveDurationSchema.prefault("10s"),
  }).prefault({}),
}).superRefine((http2, ctx) => {
  // A grace without an age would never start: say so rather than ignore it.
  if (http2.maxConnectionAgeGrace !== undefined && http2.maxConnectionAge === undefined) {
    ctx.addIssue({
      code: "custom",
      path: ["maxConnectionAgeGrace"],
      message: "needs http2.maxConnectionAge",
    });
  }
});

/** One JSON line per finished call. */
const accessLogSchema = z.strictObject({
  enabled: z.boolean().default(false),
  path: z.string().default("stdout"),
  /** Bytes of lines held for a sink that does not keep up; past it lines are dropped. */
  maxBufferedBytes: z.int().min(65_536).default(4 * 1024 * 1024),
  /** The fields each line carries, in this order; unset, every field in the documented order. */
  fields: z
    .array(z.enum(ACCESS_LOG_FIELDS, {
      error: (issue) => `${JSON.stringify(issue.input)} is not an access-log field`,
    }))
    .min(1, { error: "name at least one field, or leave fields out for all" })
    .refine((fields) => new Set(fields).size === fields.length, {
      error: "names a field twice",
    })
    .optional(),
});

/** An HTTP field name (RFC 9110 §5.1: a token). */
const fieldNameSchema = z.string().regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, {
  error: "is not an HTTP header name",
});

/** CORS for gRPC-Web callers on other origins. */
const corsSchema = z
  .strictObject({
    /** Origins allowed to call (`https://app.example`), or `"*"` for any. */
    allowedOrigins: z.array(z.string().min(1)).default([]),
    /** Request headers pages may send beyond the gRPC-Web ones (custom metadata). */
    allowedHeaders: z.array(fieldNameSchema).default([]),
    /** How long browsers may cache a preflight answer. */
    maxAge: durationSchema.prefault("10m"),
    /** Let pages send cookies and HTTP authentication. */
    allowCredentials: z.boolean().default(false),
  })
  .refine((cors) => !(cors.allowCredentials && cors.allowedOrigins.includes("*")), {
    error: 'cannot be true with the "*" origin: name the origins',
    path: ["allowCredentials"],
  });

/** A gRPC-Web listener (HTTP/1.1 and HTTP/2) in front of the same routes. */
const grpcWebSchema = z.strictObject({
  listen: addressSchema,
  /** The largest request message, decoded. */
  maxRequestBytes: z.int().min(1024).default(4 * 1024 * 1024),
  /** Calls in flight at once (shared out over workers); more get RESOURCE_EXHAUSTED. */
  maxConcurrentCalls: z.int().min(1).default(10_000),
  /** How long a request body may take to arrive (a client that trickles it is cut off). */
  bodyTimeout: positiveDurationSchema.prefault("10s"),
  cors: corsSchema.prefault({}),
});

/**
 * Shutdown on SIGTERM: `delay` first (readiness fails while the listener still serves, so
 * load balancers deregister the proxy), then GOAWAY and up to `timeout` for in-flight calls.
 */
const drainSchema = z.strictObject({
  delay: durationSchema.prefault("0s"),
  timeout: durationSchema.prefault("30s"),
});

/** `/metrics` settings. */
const metricsSchema = z.strictObject({
  /** Label every data-plane series with its `worker`, rather than summing over workers. */
  workerLabel: z.boolean().default(false),
});

const WORKERS_ERROR = 'must be a whole number from 1 to 1024, or "auto"';

/** Data-plane workers: a count, or `"auto"` for one per core. */
const workersSchema = z.union([
  z.int({ error: WORKERS_ERROR }).min(1, { error: WORKERS_ERROR }).max(1024, {
    error: WORKERS_ERROR,
  }),
  z.literal("auto"),
], { error: WORKERS_ERROR });

const configObjectSchema = z
  .strictObject({
    $schema: z.string().optional(),
    listen: addressSchema.prefault("0.0.0.0:8080"),
    grpcWeb: grpcWebSchema.optional(),
    workers: workersSchema.default("auto"),
    tls: tlsSchema.optional(),
    admin: adminSchema.prefault({}),
    log: z.strictObject({ level: z.enum(["debug", "info", "warning", "error"]).default("info") })
      .prefault({}),
    accessLog: accessLogSchema.prefault({}),
    metrics: metricsSchema.prefault({}),
    drain: drainSchema.prefault({}),
    /** Reload when the config file changes (as well as on SIGHUP and `POST /reload`). */
    watch: z.boolean().default(false),
    http2: http2Schema.prefault({}),
    redis: redisSchema.optional(),
    clusters: z.record(z.string().regex(/^[\w.-]+$/), clusterSchema).refine(
      (clusters) => Object.keys(clusters).length > 0,
      { error: "at least one cluster is required" },
    ),
    routes: z.array(routeSchema).min(1, { error: "at least one route is required" }),
  })
  .superRefine((config, ctx) => {
    if (config.grpcWeb?.listen === config.listen) {
      ctx.addIssue({
        code: "custom",
        path: ["grpcWeb", "listen"],
        message: "must differ from listen",
      });
    }
    const firstRouteByMatch = new Map<string, number>();
    config.routes.forEach((route, index) => {
      if (!(route.cluster in config.clusters)) {
        ctx.addIssue({
          code: "custom",
          path: ["routes", index, "cluster"],
          message: `unknown cluster ${JSON.stringify(route.cluster)}`,
        });
      }
      const isCatchAll = !route.service && !route.method && !route.authority &&
        route.headers.length === 0;
      if (isCatchAll && index !== config.routes.length - 1) {
        ctx.addIssue({
          code: "custom",
          path: ["routes", index],
          message: "a catch-all route must be the last one",
        });
      }
      const key = routeMatchKey(route);
      const first = firstRouteByMatch.get(key);
      if (first === undefined) firstRouteByMatch.set(key, index);
      else {
        ctx.addIssue({
          code: "custom",
          path: ["routes", index],
          message: `duplicates routes[${first}] (${
            describeRoutePath(route)
          } and the same conditions), so it would never be used`,
        });
      }
    });
    for (const [name, cluster] of Object.entries(config.clusters)) {
      if (cluster.discovery && !config.redis) {
        ctx.addIssue({
          code: "custom",
          path: ["clusters", name, "discovery"],
          message: "needs a top-level redis section",
        });
      }
      // In a Redis Cluster a set's heartbeat and weight keys are read with the set (MGET,
      // MULTI), which Redis allows only within one slot: every key of the cluster carries its
      // hash tag, the same one as its affinity table.
      const tag = clusterHashTag(name);
      if (
        cluster.discovery && config.redis?.cluster && !hasHashTag(cluster.discovery.redisSet, tag)
      ) {
        ctx.addIssue({
          code: "custom",
          path: ["clusters", name, "discovery", "redisSet"],
          message: `with redis.cluster it must carry the hash tag ${tag} (for example ` +
            `"${tag}:members"), so that the set, its heartbeat and weight keys and the ` +
            "affinity table share one slot",
        });
      }
      if (cluster.affinity?.store === "redis" && !config.redis) {
        ctx.addIssue({
          code: "custom",
          path: ["clusters", name, "affinity", "store"],
          message: '"redis" needs a top-level redis section',
        });
      }
      if (cluster.affinity !== undefined && cluster.rebalance !== undefined) {
        // A shed stream's client reconnects with the same id, to the same owner.
        ctx.addIssue({
          code: "custom",
          path: ["clusters", name, "affinity"],
          message: "cannot be combined with rebalance: a shed stream would return to its owner",
        });
      }
    }
  });

/** The validated, defaulted configuration with durations in milliseconds. */
export type Config = z.output<typeof configObjectSchema>;

/** The whole `config.json`: parses what users write into a {@link Config}. */
export const configSchema: z.ZodType<Config, z.input<typeof configObjectSchema>> =
  configObjectSchema;
/** One validated cluster. */
export type ClusterConfig = Config["clusters"][string];
/** One validated route. */
export type RouteConfig = Config["routes"][number];
/** Validated health-check settings. */
export type HealthCheckConfig = z.output<typeof healthCheckSchema>;
/** Validated TLS settings of a cluster's backends. */
export type BackendTlsConfig = z.output<typeof backendTlsSchema>;
/** Validated outlier-detection settings. */
export type OutlierDetectionConfig = z.output<typeof outlierDetectionSchema>;
/** Validated reconnect-backoff settings. */
export type BackoffConfig = z.output<typeof backoffSchema>;
/** Validated HTTP/2 engine limits. */
export type Http2Config = z.output<typeof http2Schema>;
/** Validated `rebalance` settings of a cluster. */
export type RebalanceConfig = z.output<typeof rebalanceSchema>;
/** Validated retry policy. */
export type RetryPolicyConfig = z.output<typeof retryPolicySchema>;
/** Validated header matcher. */
export type HeaderMatchConfig = z.output<typeof headerMatchSchema>;
/** Validated `:authority` matcher. */
export type AuthorityMatchConfig = z.output<typeof authorityMatchSchema>;
/** Validated `affinity` settings of a cluster. */
export type AffinityConfig = z.output<typeof affinitySchema>;
/** Validated Redis settings. */
export type RedisConfig = z.output<typeof redisSchema>;
