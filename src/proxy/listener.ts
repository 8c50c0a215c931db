/**
 * The downstream listener: h2c, or TLS with ALPN `h2`, one HTTP/2 connection per client
 * carrying many calls, on the engine in `src/h2/`. With mTLS each call carries the identity
 * of its connection's client certificate to the relay. Draining stops accepting, sends GOAWAY
 * on every connection (twice, around a PING; RFC 9113 §6.8), and lets in-flight calls
 * finish up to a deadline.
 * @module
 */
import { parseHostPort } from "../config/address.ts";
import type { Http2Config } from "../config/schema.ts";
import type { ListenerTlsMaterial } from "../config/tls.ts";
import type { H2Connection } from "../h2/connection.ts";
import { connectionOptions } from "../h2/options.ts";
import { H2Server, type StreamAcceptor } from "../h2/server.ts";
import type { H2Stream } from "../h2/stream.ts";
import { componentLogger } from "../log/logger.ts";

import { type HeaderList, removeHeader, setHeader } from "../transport/stream.ts";
import { GrpcStatus, statusTrailers } from "./grpc_status.ts";
import { type CallContext, ProxiedCall } from "./proxied_call.ts";

const log = componentLogger("proxy");

/** The `grpc-message` of calls still open when their connection's age grace ran out. */
export const MAX_CONNECTION_AGE_MESSAGE =
  "client connection reached http2.maxConnectionAge and its grace (http2.maxConnectionAgeGrace) ran out: retry on a new connection";

/** Listener settings. */
export interface ListenerOptions {
  /** `host:port` to bind. */
  readonly listen: string;
  /** TLS, and client certificates with `clientCa`; h2c without. */
  readonly tls?: ListenerTlsMaterial;
  /** The engine's limits. */
  readonly http2: Http2Config;
  /** Share the address with other listeners (data-plane workers); see {@link H2Server}. */
  readonly reusePort: boolean;
}

/** A running downstream listener. */
export class ProxyListener implements StreamAcceptor {
  readonly #context: CallContext;
  /** `tls.clientIdentityHeader`: set to each call's verified client identity. */
  #identityHeader: string | undefined;
  #server: H2Server | undefined;

  private constructor(context: CallContext, identityHeader: string | undefined) {
    this.#context = context;
    this.#identityHeader = identityHeader;
  }

  /** Binds the listener and starts relaying calls through `context`. */
  static start(options: ListenerOptions, context: CallContext): ProxyListener {
    const listener = new ProxyListener(context, options.tls?.clientIdentityHeader);
    const { host, port } = parseHostPort(options.listen)!;
    listener.#server = H2Server.listen({
      hostname: host,
      port,
      reusePort: options.reusePort,
      tls: options.tls,
      maxConnections: options.http2.maxConnections,
      connection: connectionOptions(options.http2, "server"),
    }, listener);
    return listener;
  }

  /**
   * Takes rotated TLS material for new connections, on the same listening socket; see
   * {@link H2Server.updateTls}.
   */
  updateTls(tls: ListenerTlsMaterial): void {
    this.#server!.updateTls(tls);
    this.#identityHeader = tls.clientIdentityHeader;
  }

  /** Client connections open now. */
  get connections(): number {
    return this.#server!.connectionCount;
  }

  /** See {@link StreamAcceptor.onStream}: every new stream is a call. */
  onStream(connection: H2Connection, stream: H2Stream, headers: HeaderList, end: boolean): void {
    const { remoteAddress, peerIdentity } = connection;
    const identityHeader = this.#identityHeader;
    // Before routing, so a route can match on it; a client's own is never forwarded.
    if (identityHeader !== undefined) {
      if (peerIdentity === undefined) removeHeader(headers, identityHeader);
      else setHeader(headers, identityHeader, peerIdentity);
    }
    new ProxiedCall(this.#context, stream, headers, end, remoteAddress, peerIdentity).start();
  }

  /**
   * See {@link StreamAcceptor.onOversizedRequest}: a trailers-only RESOURCE_EXHAUSTED names
   * the limit, and the connection's other calls go on (RFC 9113 §8.2 allows a stream error).
   */
  onOversizedRequest(_connection: H2Connection, stream: H2Stream, message: string): void {
    stream.sendHeaders(
      [
        ":status",
        "200",
        "content-type",
        "application/grpc",
        ...statusTrailers(GrpcStatus.RESOURCE_EXHAUSTED, message),
      ],
      true,
    );
  }

  /**
   * See {@link StreamAcceptor.onMaxAgeGraceExpired}: every call still open ends UNAVAILABLE
   * (retryable) as the proxy's own status, and its backend stream is cancelled.
   */
  onMaxAgeGraceExpired(_connection: H2Connection, streams: readonly H2Stream[]): void {
    for (const stream of streams) {
      const call = stream.handler;
      if (call instanceof ProxiedCall) {
        call.endFromListener(GrpcStatus.UNAVAILABLE, MAX_CONNECTION_AGE_MESSAGE);
      }
    }
  }

  /**
   * Stops accepting, sends GOAWAY on every connection, and resolves when all connections
   * have closed or `timeoutMs` passes (then the rest are closed).
   */
  async drain(timeoutMs: number): Promise<void> {
    const left = await this.#server!.shutdown(timeoutMs);
    if (left > 0) {
      log.warn("drain timeout: closed {count} connections with calls in flight", { count: left });
    }
  }
}
