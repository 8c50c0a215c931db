/**
 * The server side of the engine: accepts TCP (h2c, prior knowledge) or TLS (ALPN `h2`)
 * connections on Deno's native listener and runs an {@link H2Connection} on each.
 *
 * With TLS the listener accepts TCP and `node:tls` runs the handshake ({@link TlsAcceptor},
 * which says why not `Deno.listenTls`), with client certificates (mTLS) when `tls.clientCa` is
 * set. Those connections reach the engine through {@link NodeSocket}, each with the identity its
 * verified certificate names.
 *
 * Accept errors (file descriptors exhausted, say) are logged once per burst and retried
 * after a pause, as NGINX does, instead of ending the accept loop; `maxConnections` caps
 * client connections globally, as Envoy's connection limit does. With `http2.maxConnectionAge`
 * each connection drains at its jittered age, and its acceptor ends the calls still open once
 * the grace runs out.
 * @module
 */
import {
  type ConnectionListener,
  type ConnectionOptions,
  H2Connection,
  type Socket,
} from "./connection.ts";
import type { H2Stream } from "./stream.ts";
import type { HeaderList } from "../transport/stream.ts";
import { componentLogger } from "../log/logger.ts";
import type { TlsAcceptor } from "./tls_acceptor.ts";
import { NodeSocket } from "./node_socket.ts";

const log = componentLogger("h2");

/** The TLS handshakes' class, once {@link loadTls} loaded it. */
let tlsAcceptor: typeof TlsAcceptor | undefined;

/** Loads the TLS handshakes (`node:tls`): only a data plane with a TLS listener needs them. */
export async function loadTls(): Promise<void> {
  tlsAcceptor ??= (await import("./tls_acceptor.ts")).TlsAcceptor;
}

/** How long the accept loop pauses after an accept error (NGINX's `accept` retry delay). */
const ACCEPT_RETRY_MS = 500;

/** Where to listen and how. */
export interface ServerOptions {
  /** Address to bind. */
  readonly hostname: string;
  /** Port to bind; 0 picks a free one. */
  readonly port: number;
  /**
   * Bind with SO_REUSEPORT, so that several listeners (one per data-plane worker) share the
   * address and the kernel spreads connections over them.
   */
  readonly reusePort?: boolean;
  /** TLS with ALPN `h2`; h2c without. */
  readonly tls?: ServerTls;
  /** Client connections open at once. */
  readonly maxConnections: number;
  /** Each connection's settings and limits. */
  readonly connection: ConnectionOptions;
}

/** The listener's TLS: its certificate, and how it authenticates clients. */
export interface ServerTls {
  /** PEM certificate chain. */
  readonly cert: string;
  /** PEM private key. */
  readonly key: string;
  /**
   * PEM CAs that sign client certificates: the server asks every client for a certificate
   * and refuses one these CAs did not sign. Without it no client certificate is asked for.
   */
  readonly clientCa?: string;
  /** Refuse clients that send no certificate (needs `clientCa`). */
  readonly requireClientCert?: boolean;
}

/** Whoever handles the server's streams (the proxy's listener). */
export interface StreamAcceptor {
  /** See {@link ConnectionListener.onStream}. */
  onStream(connection: H2Connection, stream: H2Stream, headers: HeaderList, end: boolean): void;
  /** See {@link ConnectionListener.onOversizedRequest}. */
  onOversizedRequest(connection: H2Connection, stream: H2Stream, message: string): void;
  /** See {@link ConnectionListener.onMaxAgeGraceExpired}: end these streams now. */
  onMaxAgeGraceExpired(connection: H2Connection, streams: readonly H2Stream[]): void;
}

/**
 * Client connections of every listener of this thread: accepted so far, open now (draining
 * listeners a reload replaced included), and sent GOAWAY for reaching `http2.maxConnectionAge`.
 * Read by the metrics at scrape time.
 */
export const clientConnections: { opened: number; open: number; aged: number } = {
  opened: 0,
  open: 0,
  aged: 0,
};

/** A listening HTTP/2 server. */
export class H2Server implements ConnectionListener {
  readonly #listener: Deno.Listener;
  readonly #options: ServerOptions;
  readonly #acceptor: StreamAcceptor;
  /** The TLS handshakes, when the listener speaks TLS; replaced by {@link updateTls}. */
  #tls: TlsAcceptor | undefined;
  readonly #connections = new Set<H2Connection>();
  #closing = false;
  #shutdown: Promise<number> | undefined;
  #allClosed: (() => void) | undefined;
  #acceptFailing = false;
  #refusedLogged = false;
  #handshakes = 0;

  private constructor(listener: Deno.Listener, options: ServerOptions, acceptor: StreamAcceptor) {
    this.#listener = listener;
    this.#options = options;
    this.#acceptor = acceptor;
    this.#tls = options.tls === undefined ? undefined : this.#acceptorFor(options.tls);
  }

  /**
   * Takes new TLS material (a reload rotated the certificate or the client CAs): handshakes
   * from now on use it, connections already up keep theirs. The listening socket stays, so no
   * connection waiting in its accept queue is reset, as closing it for a new one would.
   */
  updateTls(tls: ServerTls): void {
    this.#tls = this.#acceptorFor(tls);
  }

  #acceptorFor(tls: ServerTls): TlsAcceptor {
    if (tlsAcceptor === undefined) throw new Error("a TLS listener needs loadTls() first");
    return new tlsAcceptor({
      cert: tls.cert,
      key: tls.key,
      clientCa: tls.clientCa,
      requireClientCert: tls.requireClientCert === true,
      // The SETTINGS timeout bounds a handshake that never finishes, as it bounds the preface.
      handshakeTimeoutMs: this.#options.connection.settingsTimeoutMs,
    });
  }

  /** Binds and starts accepting. Throws when the address cannot be bound. */
  static listen(options: ServerOptions, acceptor: StreamAcceptor): H2Server {
    // TLS or not, TCP: node:tls runs the handshake on the accepted connection.
    const listener = Deno.listen({
      hostname: options.hostname,
      port: options.port,
      reusePort: options.reusePort,
    });
    const server = new H2Server(listener, options, acceptor);
    server.#acceptLoop();
    return server;
  }

  /** Client connections open now. */
  get connectionCount(): number {
    return this.#connections.size;
  }

  async #acceptLoop(): Promise<void> {
    for (;;) {
      let conn: Deno.Conn;
      try {
        conn = await this.#listener.accept();
      } catch (error) {
        if (this.#closing || error instanceof Deno.errors.BadResource) return;
        if (!this.#acceptFailing) {
          this.#acceptFailing = true;
          log.error("accept failed, retrying every {retryMs}ms: {error}", {
            retryMs: ACCEPT_RETRY_MS,
            error: String(error),
          });
        }
        await new Promise((resolve) => setTimeout(resolve, ACCEPT_RETRY_MS));
        continue;
      }
      if (this.#acceptFailing) {
        this.#acceptFailing = false;
        log.info("accepting connections again");
      }
      if (this.#closing) {
        conn.close();
        return;
      }
      if (this.#connections.size + this.#handshakes >= this.#options.maxConnections) {
        if (!this.#refusedLogged) {
          this.#refusedLogged = true;
          log.warn(
            "connection limit {max} reached (http2.maxConnections): closing new connections",
            {
              max: this.#options.maxConnections,
            },
          );
        }
        conn.close();
        continue;
      }
      this.#refusedLogged = false;
      this.#start(conn);
    }
  }

  async #start(conn: Deno.Conn): Promise<void> {
    const remote = conn.remoteAddr as Deno.NetAddr;
    const address = remote.hostname.includes(":")
      ? `[${remote.hostname}]:${remote.port}`
      : `${remote.hostname}:${remote.port}`;
    let socket = conn as Socket;
    let identity: string | undefined;
    (conn as Deno.TcpConn).setNoDelay(true);
    if (this.#tls) {
      // The TLS handshake and ALPN come first; a client that offers no `h2` is refused
      // (RFC 9113 §3.2). Handshakes in progress count against maxConnections: they hold a
      // socket and memory.
      this.#handshakes++;
      try {
        const secure = await this.#tls.handshake(conn);
        socket = new NodeSocket(secure.socket);
        identity = secure.identity;
      } catch (error) {
        log.debug("TLS handshake with {address} failed: {error}", {
          address,
          error: String(error),
        });
        return;
      } finally {
        this.#handshakes--;
      }
    }
    const connection = new H2Connection(this.#options.connection, this, address);
    connection.peerIdentity = identity;
    this.#connections.add(connection);
    clientConnections.opened++;
    clientConnections.open++;
    connection.attach(socket);
    if (this.#closing) connection.drain();
  }

  /** See {@link ConnectionListener.onStream}. */
  onStream(connection: H2Connection, stream: H2Stream, headers: HeaderList, end: boolean): void {
    this.#acceptor.onStream(connection, stream, headers, end);
  }

  /** See {@link ConnectionListener.onOversizedRequest}. */
  onOversizedRequest(connection: H2Connection, stream: H2Stream, message: string): void {
    this.#acceptor.onOversizedRequest(connection, stream, message);
  }

  /** See {@link ConnectionListener.onMaxAge}. */
  onMaxAge(connection: H2Connection): void {
    clientConnections.aged++;
    log.debug("client connection {address} reached http2.maxConnectionAge: GOAWAY", {
      address: connection.remoteAddress,
    });
  }

  /** See {@link ConnectionListener.onMaxAgeGraceExpired}. */
  onMaxAgeGraceExpired(connection: H2Connection, streams: readonly H2Stream[]): void {
    log.debug(
      "client connection {address}: ending {count} streams still open after http2.maxConnectionAgeGrace",
      { address: connection.remoteAddress, count: streams.length },
    );
    this.#acceptor.onMaxAgeGraceExpired(connection, streams);
  }

  /** See {@link ConnectionListener.onClose}. */
  onClose(connection: H2Connection, error: string | undefined): void {
    if (this.#connections.delete(connection)) clientConnections.open--;
    if (error !== undefined) {
      log.debug("client connection {address} closed: {error}", {
        address: connection.remoteAddress,
        error,
      });
    }
    if (this.#closing && this.#connections.size === 0) this.#allClosed?.();
  }

  /**
   * Stops accepting, drains every connection (GOAWAY, PING, final GOAWAY; RFC 9113 §6.8),
   * and resolves once all have closed or `timeoutMs` passed; the rest are then closed.
   * Returns how many connections had to be closed with calls in flight. A second call
   * (SIGTERM after an admin drain) joins the first.
   */
  shutdown(timeoutMs: number): Promise<number> {
    this.#shutdown ??= this.#drainAll(timeoutMs);
    return this.#shutdown;
  }

  async #drainAll(timeoutMs: number): Promise<number> {
    this.#closing = true;
    try {
      this.#listener.close();
    } catch {
      // Already closed.
    }
    for (const connection of this.#connections) connection.drain();
    if (this.#connections.size === 0) return 0;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const expired = await new Promise<boolean>((resolve) => {
      this.#allClosed = () => resolve(false);
      timer = setTimeout(() => resolve(true), timeoutMs);
    });
    clearTimeout(timer);
    if (!expired) return 0;
    const left = this.#connections.size;
    for (const connection of [...this.#connections]) connection.destroy("drain timeout");
    return left;
  }
}
