/**
 * One backend's pool of HTTP/2 connections, on the engine's client side.
 *
 * Normally a single connection carries every call. Another is dialled only when every
 * connection is at the backend's SETTINGS_MAX_CONCURRENT_STREAMS, up to
 * `maxConnectionsPerBackend`; past that, calls wait on the least busy connection for a slot.
 * A backend that allows no streams at all (0) gets its calls queued, not a dial storm. A
 * connection that receives GOAWAY, or runs out of stream ids, keeps its in-flight streams
 * but takes no new ones, and a replacement is dialled at once. Failed dials are retried with
 * jittered exponential backoff while the balancer wants the backend; meanwhile the state
 * stays TRANSIENT_FAILURE ("sticky", as in gRPC) so pickers fail fast.
 * @module
 */
import type { ConnectivityState } from "../balancer/types.ts";
import { parseHostPort } from "../config/address.ts";
import type { BackoffConfig } from "../config/schema.ts";
import type { BackendTls } from "../config/tls.ts";
import {
  type ConnectionListener,
  type ConnectionOptions,
  H2Connection,
  type Socket,
} from "../h2/connection.ts";
import { componentLogger } from "../log/logger.ts";
import type { HeaderList, StreamHandler, TransportStream } from "../transport/stream.ts";
import { Backoff } from "./backoff.ts";
import type { DialGate } from "./dial_gate.ts";
import { DialError } from "./dial_error.ts";

const log = componentLogger("upstream");

/**
 * Why a dial failed, as `switchyard_upstream_connect_failures_total{reason}` names it:
 * `refused` (nothing listens), `timeout` (no SETTINGS within `connectTimeout`), `tls` (the
 * TLS handshake or the certificate checks failed), `closed` (the backend closed or broke the
 * connection before its SETTINGS) or `error` (anything else: unreachable, name lookup, …).
 */
export type ConnectFailure = "refused" | "timeout" | "tls" | "closed" | "error";

/** Told how each dial ended (the metrics); dials are rare, so this is off the call path. */
export interface DialObserver {
  /** A dial reached the backend's SETTINGS after `seconds` (TCP, TLS and SETTINGS). */
  connected(cluster: string, backend: string, seconds: number): void;
  /** A dial the pool still wanted failed. */
  failed(cluster: string, backend: string, reason: ConnectFailure): void;
}

/** How a failed dial's error reads as a {@link ConnectFailure}. */
function connectFailure(error: Error & { code?: string }): ConnectFailure {
  if (error instanceof DialError) return "tls";
  if (error.name === "ConnectionRefused" || error.code === "ECONNREFUSED") return "refused";
  if (error.name === "TimedOut" || error.code === "ETIMEDOUT") return "timeout";
  return "error";
}

/** How an {@link Upstream} is set up. */
export interface UpstreamOptions {
  /** Cluster name, for logs. */
  readonly cluster: string;
  /** Backend `host:port`. */
  readonly address: string;
  /** How long one dial (TCP connect, TLS handshake and the backend's SETTINGS) may take. */
  readonly connectTimeoutMs: number;
  /** TLS to the backend, or `undefined` for h2c. */
  readonly tls: BackendTls | undefined;
  /** Reconnect backoff settings. */
  readonly backoff: BackoffConfig;
  /** The engine's settings for backend connections. */
  readonly connection: ConnectionOptions;
  /** Connections to this backend at most. */
  readonly maxConnections: number;
  /** The data plane's cap on dials in flight, shared by every backend. */
  readonly dialGate: DialGate;
  /** Called on every connectivity change. */
  readonly onStateChange: (state: ConnectivityState) => void;
  /**
   * Called when a call has to wait for a stream slot because the pool is at `maxConnections`
   * (Envoy's `upstream_cx_overflow`).
   */
  readonly onOverflow: () => void;
  /** Told how each dial ended, when anything listens. */
  readonly dialObserver: DialObserver | undefined;
}

/** A connection up this long has proven itself even if it carried no calls. */
const STABLE_CONNECTION_MS = 5_000;

interface PooledConnection {
  readonly connection: H2Connection;
  readonly abort: AbortController;
  /** Fails the dial when the backend's SETTINGS do not arrive in time. */
  connectTimer: ReturnType<typeof setTimeout> | undefined;
  /** The backend's SETTINGS arrived. */
  connected: boolean;
  /** The socket (past its TLS handshake, with TLS) was handed to the engine. */
  attached: boolean;
  /** The dial started and holds a {@link DialGate} slot until it settles. */
  holdsDialSlot: boolean;
  connectedAt: number;
  /** `performance.now()` when the socket was opened, for the connect time. */
  dialStartedAt: number;
  /** Why the dial failed, once it has. */
  failure: ConnectFailure | undefined;
  /** Streams that ran to their end on this connection. */
  finishedStreams: number;
  lastError: string | undefined;
}

/**
 * A connection proved itself once it carried a call or stayed up a while; only then is losing
 * it no reason to back off.
 */
function proven(pooled: PooledConnection): boolean {
  return pooled.finishedStreams > 0 || Date.now() - pooled.connectedAt >= STABLE_CONNECTION_MS;
}

/** A backend's connection pool and connectivity state. */
export class Upstream implements ConnectionListener {
  readonly #options: UpstreamOptions;
  readonly #backoff: Backoff;
  readonly #pool: PooledConnection[] = [];
  readonly #byConnection = new Map<H2Connection, PooledConnection>();
  #state: ConnectivityState = "IDLE";
  #wanted = false;
  #closed = false;
  #retryTimer: ReturnType<typeof setTimeout> | undefined;
  #lastError: string | undefined;
  #connectionsOpened = 0;
  /** The backend's SETTINGS_MAX_CONCURRENT_STREAMS as last seen. */
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

  /** Connections up now (the backend's SETTINGS arrived), going away or not. */
  get openConnections(): number {
    let open = 0;
    for (const pooled of this.#pool) if (pooled.connected) open++;
    return open;
  }

  /** Connections that came up since the pool was created. */
  get connectionsOpened(): number {
    return this.#connectionsOpened;
  }

  /** Streams in flight (or waiting for a slot) across all connections. */
  get activeStreams(): number {
    let total = 0;
    for (const pooled of this.#pool) total += pooled.connection.streamCount;
    return total;
  }

  /** Starts connecting (and keeps reconnecting) unless already doing so. */
  connect(): void {
    if (this.#closed) return;
    this.#wanted = true;
    if (!this.#hasOpenConnection() && this.#retryTimer === undefined) this.#dial();
  }

  /**
   * Opens a stream with `headers` whose events go to `handler`. It starts on a connection
   * with a free slot; when every connection is full it waits for one, on a new connection
   * while the pool may grow. Returns `undefined` when no connection is ready.
   */
  openStream(headers: HeaderList, handler: StreamHandler): TransportStream | undefined {
    let ready: PooledConnection | undefined;
    let dialling: PooledConnection | undefined;
    let anyDialling: PooledConnection | undefined;
    let open = 0;
    for (const pooled of this.#pool) {
      const connection = pooled.connection;
      if (connection.goingAway) continue;
      open++;
      if (connection.hasCapacity) return connection.openStream(headers, handler);
      if (!pooled.connected) {
        anyDialling ??= pooled;
        // A connection still dialling takes what the backend allowed last time, no more.
        if (connection.streamCount < this.#peerMaxStreams) dialling ??= pooled;
      } else if (ready === undefined || connection.streamCount < ready.connection.streamCount) {
        ready = pooled;
      }
    }
    if (ready === undefined) {
      // No connection can take the call now, but the backend was READY when it was picked:
      // its connection is being replaced (GOAWAY, retirement), so the call waits for the
      // replacement rather than fail; a failed dial refuses it retryably. The pool still
      // never grows past maxConnections.
      if (dialling === undefined && open >= this.#options.maxConnections) dialling = anyDialling;
      if (dialling === undefined) {
        if (this.#closed || this.#state !== "READY") return undefined;
        dialling = this.#dial();
      }
      return dialling.connection.openStream(headers, handler);
    }
    // Every ready connection is at the backend's limit. A backend that allows no streams
    // at all gets no more connections for it: its calls wait for a slot.
    if (dialling === undefined && open < this.#options.maxConnections && this.#peerMaxStreams > 0) {
      dialling = this.#dial();
    }
    if (dialling === undefined && open >= this.#options.maxConnections) this.#options.onOverflow();
    return (dialling ?? ready).connection.openStream(headers, handler);
  }

  /** Stops reconnecting and closes every connection once its in-flight streams finish. */
  close(): void {
    this.#closed = true;
    this.#release("closed");
  }

  /**
   * Stops wanting the backend (pick_first chose another one): connections close once their
   * in-flight streams finish, nothing is redialled, and the state is IDLE until the next
   * {@link connect}, which dials afresh. grpc-go shuts such a SubConn down.
   */
  disconnect(): void {
    if (this.#closed || !this.#wanted) return;
    this.#release("no longer wanted");
    this.#backoff.reset();
    this.#lastError = undefined;
    this.#setState("IDLE");
  }

  #release(reason: string): void {
    this.#wanted = false;
    clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    for (const pooled of this.#pool) {
      if (pooled.connected) {
        pooled.connection.drain();
      } else {
        // A dial whose TCP connect already completed is past its abort signal: a backend that
        // accepted but has not sent SETTINGS must not turn READY later.
        pooled.abort.abort();
        pooled.connection.destroy(reason);
      }
    }
  }

  #dial(): PooledConnection {
    const { address } = this.#options;
    const connection = new H2Connection(this.#options.connection, this, address);
    const pooled: PooledConnection = {
      connection,
      abort: new AbortController(),
      connectTimer: undefined,
      connected: false,
      attached: false,
      holdsDialSlot: false,
      connectedAt: 0,
      dialStartedAt: 0,
      failure: undefined,
      finishedStreams: 0,
      lastError: undefined,
    };
    this.#pool.push(pooled);
    this.#byConnection.set(connection, pooled);
    if (this.#state === "IDLE") this.#setState("CONNECTING");
    // The connection is in the pool while it waits for a dial slot, so the pool's bookkeeping
    // counts it as dialling and calls can wait on it as on any dial.
    this.#options.dialGate.enter(() => this.#startDial(pooled));
    return pooled;
  }

  /** Opens the socket once the gate allows; false when the dial was abandoned meanwhile. */
  #startDial(pooled: PooledConnection): boolean {
    const { address, connectTimeoutMs, tls } = this.#options;
    const connection = pooled.connection;
    if (connection.closed) return false;
    pooled.holdsDialSlot = true;
    pooled.dialStartedAt = performance.now();
    const { host, port } = parseHostPort(address)!;
    // READY comes with the backend's SETTINGS, not the TCP connect (as in gRPC): a peer that
    // is not an HTTP/2 server never gets there, and its dial fails on this timeout, which so
    // covers the TLS handshake too.
    pooled.connectTimer = setTimeout(() => {
      pooled.lastError = `connect timeout after ${connectTimeoutMs}ms`;
      if (pooled.connected) return;
      pooled.failure = "timeout";
      pooled.abort.abort();
      connection.destroy(pooled.lastError);
    }, connectTimeoutMs);
    const signal = pooled.abort.signal;
    // node:tls is loaded only by a data plane that dials TLS.
    const socket: Promise<Socket> = tls
      ? import("./tls_dial.ts").then((m) => m.dialTls(host, port, address, tls, signal))
      : Deno.connect({ hostname: host, port, signal }).then((conn) => {
        conn.setNoDelay(true);
        return conn;
      });
    socket.then(
      (conn) => {
        if (connection.closed) {
          conn.close();
          return;
        }
        pooled.attached = true;
        connection.attach(conn);
      },
      (error: Error & { code?: string }) => {
        clearTimeout(pooled.connectTimer);
        pooled.failure ??= connectFailure(error);
        const code = error.code ? `${error.code} ` : "";
        const reason = error instanceof DialError
          ? error.message
          : `connect ${code}${address}: ${error.message}`;
        connection.failToConnect(pooled.lastError ?? reason);
      },
    );
    return true;
  }

  /** Frees the dial slot once the dial settles, either way. */
  #releaseDialSlot(pooled: PooledConnection): void {
    if (!pooled.holdsDialSlot) return;
    pooled.holdsDialSlot = false;
    this.#options.dialGate.release();
  }

  /** See {@link ConnectionListener.onReady}. */
  onReady(connection: H2Connection): void {
    const pooled = this.#byConnection.get(connection);
    if (pooled === undefined) return;
    clearTimeout(pooled.connectTimer);
    this.#releaseDialSlot(pooled);
    pooled.connected = true;
    pooled.connectedAt = Date.now();
    this.#connectionsOpened++;
    this.#options.dialObserver?.connected(
      this.#options.cluster,
      this.#options.address,
      (performance.now() - pooled.dialStartedAt) / 1000,
    );
    this.#peerMaxStreams = connection.peerMaxStreams;
    this.#lastError = undefined;
    if (this.#state !== "READY") {
      log.info("backend connected {cluster} {address}", this.#logContext());
      this.#setState("READY");
    }
    // Calls that waited on a full connection start on the new one at once.
    this.#takeWaitingCalls(pooled);
  }

  /**
   * See {@link ConnectionListener.onStreamClosed}. A freed slot takes a call waiting on
   * another connection of this backend, so waiting calls are served by whichever
   * connection frees a slot first (one queue per backend, in effect).
   */
  onStreamClosed(connection: H2Connection): void {
    const pooled = this.#byConnection.get(connection);
    if (pooled === undefined) return;
    pooled.finishedStreams++;
    this.#peerMaxStreams = connection.peerMaxStreams;
    this.#takeWaitingCalls(pooled);
  }

  /** Starts calls waiting on other connections of this backend while `target` has room. */
  #takeWaitingCalls(target: PooledConnection): void {
    const connection = target.connection;
    for (const other of this.#pool) {
      if (other === target) continue;
      while (connection.hasCapacity) {
        const waiting = other.connection.takePending();
        if (waiting === undefined) break;
        connection.adoptPending(waiting);
      }
      if (!connection.hasCapacity) return;
    }
  }

  /** See {@link ConnectionListener.onGoingAway}. */
  onGoingAway(connection: H2Connection, reason: string): void {
    const pooled = this.#byConnection.get(connection);
    if (pooled === undefined) return;
    log.info("backend connection {cluster} {address} takes no new calls: {reason}", {
      ...this.#logContext(),
      reason,
    });
    pooled.lastError = reason;
    // A graceful GOAWAY covering streams we opened is a shutdown, not a failing backend.
    if (!proven(pooled) && !connection.shutDownGracefully) {
      // A backend that sends GOAWAY on every fresh connection is failing: back off.
      this.#onConnectionLost(pooled, "going away");
      return;
    }
    // The backend is not failing: the state stays as it is while a replacement is dialled,
    // and calls picked meanwhile wait for it (see openStream).
    if (!this.#closed && this.#wanted && !this.#hasOpenConnection()) this.#dial();
  }

  /** See {@link ConnectionListener.onClose}. */
  onClose(connection: H2Connection, error: string | undefined): void {
    const pooled = this.#byConnection.get(connection);
    if (pooled === undefined) return;
    clearTimeout(pooled.connectTimer);
    this.#releaseDialSlot(pooled);
    this.#byConnection.delete(connection);
    this.#pool.splice(this.#pool.indexOf(pooled), 1);
    pooled.lastError ??= pooled.attached && !pooled.connected && this.#options.tls
      // TLS 1.3 servers refuse a client certificate only after the client's handshake is
      // done (RFC 8446 §4.4.2.4), and their alert can be lost to the TCP reset that follows.
      ? `${error ?? "connection closed"} after the TLS handshake ` +
        "(as when the backend refuses the client certificate)"
      : error;
    if (!pooled.connected) {
      // A dial given up on (disconnect, close) is no failure; one that never started neither.
      if (this.#wanted && pooled.dialStartedAt !== 0) {
        this.#options.dialObserver?.failed(
          this.#options.cluster,
          this.#options.address,
          pooled.failure ?? (pooled.attached && this.#options.tls ? "tls" : "closed"),
        );
      }
      this.#onDialFailed(pooled.lastError);
    } else this.#onConnectionLost(pooled, "closed");
  }

  /** A connection that is up or still dialling; ones going away do not count. */
  #hasOpenConnection(): boolean {
    return this.#pool.some((pooled) => !pooled.connection.goingAway);
  }

  #hasUsableConnection(): boolean {
    return this.#pool.some((pooled) => pooled.connected && !pooled.connection.goingAway);
  }

  #onConnectionLost(pooled: PooledConnection, reason: string): void {
    // A connection released by disconnect() or close() going away is no failure.
    if (!this.#wanted || this.#hasUsableConnection()) return;
    this.#lastError = pooled.lastError ?? `connection ${reason}`;
    log.warn("backend connection lost {cluster} {address}: {reason}", {
      ...this.#logContext(),
      reason: this.#lastError,
    });
    if (!proven(pooled)) {
      // Accepting and then dropping connections is a failure too: back off rather than spin.
      this.#setState("TRANSIENT_FAILURE");
      this.#scheduleRedial();
      return;
    }
    this.#backoff.reset();
    this.#setState("IDLE");
    // One redial for one lost connection: none while another is already dialling.
    if (this.#wanted && !this.#hasOpenConnection()) this.#dial();
  }

  #onDialFailed(error: string | undefined): void {
    if (!this.#wanted || this.#hasUsableConnection()) return;
    this.#lastError = error ?? "connection closed before it was established";
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
