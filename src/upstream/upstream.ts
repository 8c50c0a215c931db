/**
 * One backend's pool of HTTP/2 connections.
 *
 * Normally a single connection carries every stream; another is opened only when the
 * backend's SETTINGS_MAX_CONCURRENT_STREAMS is reached. A connection that receives GOAWAY
 * keeps its in-flight streams but takes no new ones, and a replacement is dialled at once.
 * Failed dials are retried with jittered exponential backoff while the balancer wants the
 * backend; meanwhile the state stays TRANSIENT_FAILURE ("sticky", as in gRPC) so pickers can
 * fail fast instead of queueing on every retry.
 * @module
 */
import http2 from "node:http2";
import type { ConnectivityState } from "../balancer/types.ts";
import type { BackoffConfig } from "../config/schema.ts";
import { componentLogger } from "../log/logger.ts";
import { deferCloseDuringGoaway } from "../transport/goaway.ts";
import { CONNECTION_WINDOW_BYTES, LOCAL_SETTINGS } from "../transport/settings.ts";
import {
  enableWriteBatching,
  holdWrites,
  noteStreamClosed,
  noteStreamOpened,
} from "../transport/write_batching.ts";
import { Backoff } from "./backoff.ts";

const log = componentLogger("upstream");

/** How an {@link Upstream} is set up. */
export interface UpstreamOptions {
  /** Cluster name, for logs. */
  readonly cluster: string;
  /** Backend `host:port`. */
  readonly address: string;
  /** How long one dial may take before it counts as failed. */
  readonly connectTimeoutMs: number;
  /** Reconnect backoff settings. */
  readonly backoff: BackoffConfig;
  /** Called on every connectivity change. */
  readonly onStateChange: (state: ConnectivityState) => void;
}

interface PooledConnection {
  readonly session: http2.ClientHttp2Session;
  /** The peer's SETTINGS arrived: it speaks HTTP/2 and the connection can carry streams. */
  connected: boolean;
  connectedAt: number;
  goingAway: boolean;
  activeStreams: number;
  /** Streams that ran to their end on this connection. */
  finishedStreams: number;
  maxStreams: number;
  lastError?: Error;
}

/** A connection up this long has proven itself even if it carried no calls. */
const STABLE_CONNECTION_MS = 5_000;

/** Which pooled connection a stream from {@link Upstream.openStream} occupies. */
const CONNECTION = Symbol("pooledConnection");

type PooledStream = http2.ClientHttp2Stream & { [CONNECTION]?: PooledConnection };

/** Request headers as `node:http2` takes them. */
export type OutgoingHeaders = http2.OutgoingHttpHeaders;

/** A backend's connection pool and connectivity state. */
export class Upstream {
  readonly #options: UpstreamOptions;
  readonly #backoff: Backoff;
  readonly #connections: PooledConnection[] = [];
  #state: ConnectivityState = "IDLE";
  #wanted = false;
  #closed = false;
  #retryTimer: ReturnType<typeof setTimeout> | undefined;
  #lastError: string | undefined;
  #peerMaxStreams = Infinity;

  /** Creates an idle pool; nothing is dialled until {@link connect}. */
  constructor(options: UpstreamOptions) {
    this.#options = options;
    this.#backoff = new Backoff(options.backoff);
  }

  /** Current connectivity. */
  get state(): ConnectivityState {
    return this.#state;
  }

  /** The last dial or connection error, if any. */
  get lastError(): string | undefined {
    return this.#lastError;
  }

  /** Streams in flight across all connections. */
  get activeStreams(): number {
    let total = 0;
    for (const connection of this.#connections) total += connection.activeStreams;
    return total;
  }

  /** Starts connecting (and keeps reconnecting) unless already doing so. */
  connect(): void {
    if (this.#closed) return;
    this.#wanted = true;
    if (!this.#hasOpenConnection() && this.#retryTimer === undefined) this.#dial();
  }

  /**
   * Opens a stream on a connection with spare capacity, dialling an extra connection when
   * every connection is at the backend's stream limit. Returns `undefined` when no connection
   * is ready. The caller must pass the stream to {@link streamClosed} on its `close` event
   * (the data plane already listens for it, so this saves a listener and a closure per call).
   */
  openStream(headers: OutgoingHeaders): http2.ClientHttp2Stream | undefined {
    let chosen: PooledConnection | undefined;
    let dialling: PooledConnection | undefined;
    let anyReady = false;
    for (const connection of this.#connections) {
      // Deno emits a destroyed session's 'close' a turn later; until then it looks usable.
      if (connection.session.destroyed || connection.session.closed) continue;
      if (connection.goingAway || connection.activeStreams >= connection.maxStreams) {
        anyReady ||= connection.connected && !connection.goingAway;
        continue;
      }
      if (connection.connected) {
        chosen = connection;
        break;
      }
      dialling ??= connection;
    }
    if (!chosen) {
      if (!anyReady) return undefined;
      // Every ready connection is at the backend's stream limit: overflow onto a connection
      // that is still dialling (nghttp2 queues the request), or dial one.
      chosen = dialling ?? this.#dial();
    }
    let stream: PooledStream;
    try {
      holdWrites(chosen.session);
      stream = chosen.session.request(headers, { endStream: false });
    } catch (error) {
      // The session failed between the check above and the request; the caller answers
      // UNAVAILABLE as for any backend without a ready connection.
      chosen.lastError = error as Error;
      return undefined;
    }
    noteStreamOpened(chosen.session);
    chosen.activeStreams++;
    stream[CONNECTION] = chosen;
    return stream;
  }

  /** Frees the pool slot of a stream from {@link openStream}; call it once, on `close`. */
  streamClosed(stream: http2.ClientHttp2Stream): void {
    const connection = (stream as PooledStream)[CONNECTION];
    if (connection === undefined) return;
    connection.activeStreams--;
    connection.finishedStreams++;
    noteStreamClosed(connection.session);
    (stream as PooledStream)[CONNECTION] = undefined;
  }

  /** Stops reconnecting and closes every connection once its in-flight streams finish. */
  close(): void {
    this.#closed = true;
    this.#wanted = false;
    clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    for (const connection of this.#connections) connection.session.close();
  }

  #dial(): PooledConnection {
    const { address, connectTimeoutMs } = this.#options;
    const session = http2.connect(`http://${address}`, {
      settings: LOCAL_SETTINGS,
      peerMaxConcurrentStreams: 1000,
    });
    deferCloseDuringGoaway(session);
    enableWriteBatching(session);
    const connection: PooledConnection = {
      session,
      connected: false,
      connectedAt: 0,
      goingAway: false,
      activeStreams: 0,
      finishedStreams: 0,
      // Until its own SETTINGS arrive, assume the limit the backend announced before, so a
      // burst does not pile onto a dialling connection past what the backend will accept.
      maxStreams: this.#peerMaxStreams,
    };
    this.#connections.push(connection);
    if (this.#state === "IDLE") this.#setState("CONNECTING");

    const connectTimer = setTimeout(() => {
      session.destroy(new Error(`connect timeout after ${connectTimeoutMs}ms`));
    }, connectTimeoutMs);
    // READY on the peer's SETTINGS, not on the TCP connect (as gRPC does): a peer that is not
    // an HTTP/2 server never gets there, and its connection fails as a dial.
    session.on("remoteSettings", (settings) => {
      connection.maxStreams = settings.maxConcurrentStreams ?? Infinity;
      this.#peerMaxStreams = connection.maxStreams;
      if (connection.connected || session.destroyed) return;
      clearTimeout(connectTimer);
      connection.connected = true;
      connection.connectedAt = Date.now();
      session.setLocalWindowSize(CONNECTION_WINDOW_BYTES);
      this.#lastError = undefined;
      if (this.#state !== "READY") {
        log.info("backend connected {cluster} {address}", this.#logContext());
        this.#setState("READY");
      }
    });
    session.on("error", (error) => {
      connection.lastError = error;
    });
    session.on("goaway", () => {
      if (connection.goingAway) return;
      connection.goingAway = true;
      this.#onConnectionLost(connection, "goaway");
    });
    session.once("close", () => {
      clearTimeout(connectTimer);
      this.#connections.splice(this.#connections.indexOf(connection), 1);
      if (!connection.connected) this.#onDialFailed(connection.lastError);
      else if (!connection.goingAway) this.#onConnectionLost(connection, "closed");
    });
    return connection;
  }

  /** A connection that is up or still dialling; ones going away do not count. */
  #hasOpenConnection(): boolean {
    return this.#connections.some((c) => !c.goingAway);
  }

  #hasUsableConnection(): boolean {
    return this.#connections.some((c) => c.connected && !c.goingAway);
  }

  #onConnectionLost(connection: PooledConnection, reason: string): void {
    if (this.#closed || this.#hasUsableConnection()) return;
    this.#lastError = connection.lastError?.message ?? `connection ${reason}`;
    log.warn("backend connection lost {cluster} {address}: {reason}", {
      ...this.#logContext(),
      reason: this.#lastError,
    });
    const proven = connection.finishedStreams > 0 ||
      Date.now() - connection.connectedAt >= STABLE_CONNECTION_MS;
    if (!proven) {
      // Accepting and then dropping connections is a failure too: back off rather than spin.
      this.#setState("TRANSIENT_FAILURE");
      this.#scheduleRedial();
      return;
    }
    this.#backoff.reset();
    this.#setState("IDLE");
    if (this.#wanted) this.#dial();
  }

  #onDialFailed(error: Error | undefined): void {
    if (this.#closed || this.#hasUsableConnection()) return;
    this.#lastError = error?.message ?? "connection closed before it was established";
    if (this.#state !== "TRANSIENT_FAILURE") {
      log.warn("backend unreachable {cluster} {address}: {reason}", {
        ...this.#logContext(),
        reason: this.#lastError,
      });
      this.#setState("TRANSIENT_FAILURE");
    }
    this.#scheduleRedial();
  }

  #scheduleRedial(): void {
    if (!this.#wanted || this.#hasOpenConnection() || this.#retryTimer !== undefined) return;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      if (this.#wanted && !this.#hasOpenConnection()) this.#dial();
    }, this.#backoff.nextDelayMs());
  }

  #setState(state: ConnectivityState): void {
    if (state === this.#state) return;
    this.#state = state;
    this.#options.onStateChange(state);
  }

  #logContext(): { cluster: string; address: string } {
    return { cluster: this.#options.cluster, address: this.#options.address };
  }
}
