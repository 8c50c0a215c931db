/**
 * A data plane's connection metrics: client connections, backend connections and dials, and
 * the HTTP/2 RST_STREAM and GOAWAY frames its engine sent and received. Gauges and totals
 * the engine keeps anyway are read at scrape time; dials are rare, so each is observed.
 * @module
 */
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import { frameCountsOf, goawayCounts, resetCounts } from "../h2/frame_counts.ts";
import { DURATION_BUCKETS_SECONDS } from "../dataplane/stats.ts";
import { clientConnections } from "../h2/server.ts";
import type { DialObserver } from "../upstream/upstream.ts";
import type { UpstreamBackend } from "../upstream/upstream_backend.ts";
import { backendCounter, backendGauge, type ClusterSource } from "./state_metrics.ts";

/**
 * Connect times run from a loopback TCP handshake (100 µs) to a slow TLS dial (10 s): the call
 * duration's bounds over that range, so the two histograms line up.
 */
const CONNECT_BUCKETS_SECONDS = DURATION_BUCKETS_SECONDS.filter((bound) =>
  bound >= 0.0001 && bound <= 10
);

/** The connection metrics' entry points. */
export interface ConnectionMetrics {
  /** Counts dials; the upstream pools' {@link DialObserver}. */
  readonly dials: DialObserver;
  /** Deletes the dial series of a backend that left its cluster, or of a whole cluster. */
  readonly forget: (cluster: string, backend?: string) => Promise<void>;
}

/** Registers the connection metrics for `clusters` on `registry`. */
export function registerConnectionMetrics(
  registry: Registry,
  clusters: ClusterSource<UpstreamBackend>,
): ConnectionMetrics {
  const registers = [registry];
  new Gauge({
    name: "switchyard_client_connections_active",
    help: "Client connections open now, on every gRPC listener (draining ones included).",
    registers,
    collect() {
      this.set(clientConnections.open);
    },
  });
  new Counter({
    name: "switchyard_client_connections_total",
    help: "Client connections accepted by the gRPC listeners.",
    registers,
    collect() {
      this.reset();
      this.inc(clientConnections.opened);
    },
  });
  new Counter({
    name: "switchyard_client_connections_aged_total",
    help: "Client connections sent GOAWAY for reaching http2.maxConnectionAge.",
    registers,
    collect() {
      this.reset();
      this.inc(clientConnections.aged);
    },
  });
  backendGauge(registry, clusters, {
    name: "switchyard_upstream_connections_active",
    help: "Connections to each backend that are up (its SETTINGS arrived), going away or not.",
    value: (backend) => backend.upstream.openConnections,
  });
  backendCounter(registry, clusters, {
    name: "switchyard_upstream_connections_total",
    help: "Connections to each backend that came up since it joined its cluster.",
    value: (backend) => backend.upstream.connectionsOpened,
  });
  const failures = new Counter({
    name: "switchyard_upstream_connect_failures_total",
    help: "Dials to a backend that failed, by reason: refused, timeout, tls, closed (before " +
      "the backend's SETTINGS) or error.",
    labelNames: ["cluster", "backend", "reason"] as const,
    registers,
  });
  const connectTime = new Histogram({
    name: "switchyard_upstream_connect_duration_seconds",
    help: "Time from opening a socket to a backend to its HTTP/2 SETTINGS: TCP connect, TLS " +
      "handshake and the backend's preface.",
    labelNames: ["cluster"] as const,
    buckets: CONNECT_BUCKETS_SECONDS,
    registers,
  });
  frameCounter(registry, "switchyard_http2_resets_total", resetCounts, "RST_STREAM frames");
  frameCounter(registry, "switchyard_http2_goaway_total", goawayCounts, "GOAWAY frames");

  const dials: DialObserver = {
    connected: (cluster, _backend, seconds) => connectTime.observe({ cluster }, seconds),
    failed: (cluster, backend, reason) => failures.inc({ cluster, backend, reason }),
  };
  const forget = async (cluster: string, backend?: string) => {
    for (const { labels } of (await failures.get()).values) {
      if (labels.cluster !== cluster) continue;
      if (backend === undefined || labels.backend === backend) failures.remove(labels);
    }
    if (backend === undefined) connectTime.remove({ cluster });
  };
  return { dials, forget };
}

/** A counter of engine frames by peer, direction and error code name, read at scrape time. */
function frameCounter(registry: Registry, name: string, counts: Float64Array, what: string) {
  new Counter({
    name,
    help: `HTTP/2 ${what} sent to or received from clients and backends (peer), by error ` +
      "code name (RFC 9113 §7; OTHER for codes it does not define).",
    labelNames: ["peer", "direction", "code"] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const { peer, direction, code, count } of frameCountsOf(counts)) {
        this.inc({ peer, direction, code }, count);
      }
    },
  });
}
