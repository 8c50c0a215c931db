/**
 * The server side of TLS, through `node:tls`, for every TLS listener of the engine.
 * `Deno.listenTls` can neither ask a client for a certificate nor verify one
 * (denoland/deno#26825), its connections cannot turn off Nagle's algorithm (`Deno.TlsConn` has
 * no `setNoDelay`: measured at 32 calls in flight, about 650 calls/s against 3,300 here, at
 * more CPU per call), and a client that connects and sends nothing keeps its socket open after
 * it is closed.
 *
 * Connections are still accepted by Deno's listener, as every other: on Deno 2.9.6 the accept
 * loop of a listening `node:net` server stops for good, and silently, once an accept fails
 * with EMFILE, where the engine's own loop pauses and retries. Each accepted connection is
 * handed to one `tls.Server` that never listens (`emit("connection", stream)` takes any
 * stream), so node runs the handshake, ALPN and, with `clientCa`, the verification of the
 * client certificate (mTLS).
 * @module
 */
import { EventEmitter } from "node:events";
import { Duplex } from "node:stream";
import type { ReadableStream, WritableStream } from "node:stream/web";
import { createServer, type PeerCertificate, type Server, type TLSSocket } from "node:tls";

/** The server's certificate and how it authenticates clients. */
export interface TlsAcceptorOptions {
  /** PEM certificate chain. */
  readonly cert: string;
  /** PEM private key. */
  readonly key: string;
  /** PEM CAs that sign client certificates; without them none is asked for. */
  readonly clientCa: string | undefined;
  /** Refuse a client that sends no certificate. */
  readonly requireClientCert: boolean;
  /** How long a handshake may take. */
  readonly handshakeTimeoutMs: number;
}

/** A finished handshake. */
export interface TlsConnection {
  /** The secure socket, ALPN `h2` negotiated. */
  readonly socket: TLSSocket;
  /** What the verified certificate names; `undefined` for a client that sent none. */
  readonly identity: string | undefined;
}

/** Runs the server side of TLS handshakes, asking for client certificates with `clientCa`. */
export class TlsAcceptor {
  readonly #server: Server;
  readonly #requireClientCert: boolean;
  readonly #mutual: boolean;

  /** Prepares the handshakes: one `tls.Server` for them all. */
  constructor(options: TlsAcceptorOptions) {
    this.#requireClientCert = options.requireClientCert;
    this.#mutual = options.clientCa !== undefined;
    this.#server = createServer({
      cert: options.cert,
      key: options.key,
      ca: options.clientCa,
      requestCert: this.#mutual,
      // Every handshake finishes and the certificate is judged after it, with a reason for the
      // log: over a stream node sends no alert either way (no certificate_required, RFC 8446
      // §4.4.2.4), and it would report an untrusted certificate as "socket hang up".
      rejectUnauthorized: false,
      ALPNProtocols: ["h2"],
      handshakeTimeout: options.handshakeTimeoutMs,
    });
  }

  /**
   * Runs the handshake on `conn`. Resolves once it is done, with ALPN `h2` and a certificate
   * the CAs signed, or none where none is required; otherwise rejects with why, the
   * connection closed.
   */
  handshake(conn: Deno.Conn): Promise<TlsConnection> {
    const { promise, resolve, reject } = Promise.withResolvers<TlsConnection>();
    // The server's connection listener reports the handshake to the server it ran on (its
    // `this`): run it on a view of the server whose `emit` takes this connection's reports.
    const view: Server = Object.create(this.#server, {
      emit: {
        value: (event: string, value: unknown, socket?: Duplex): boolean => {
          if (event === "secureConnection") {
            this.#secured(value as TLSSocket, resolve, reject);
          } else if (event === "tlsClientError") {
            // Deno's node:tls leaves the connection open after a handshake timeout.
            socket?.destroy();
            reject(value);
          }
          return true;
        },
      },
    });
    // Deno's web streams are node's at run time; only their type declarations differ.
    const stream = Duplex.fromWeb({
      readable: conn.readable as unknown as ReadableStream,
      writable: conn.writable as unknown as WritableStream,
    });
    EventEmitter.prototype.emit.call(view, "connection", stream);
    return promise;
  }

  /** Takes a finished handshake, or closes it and rejects with why. */
  #secured(
    socket: TLSSocket,
    resolve: (connection: TlsConnection) => void,
    reject: (error: Error) => void,
  ): void {
    const refusal = this.#refusal(socket);
    if (refusal === undefined) {
      const identity = socket.authorized
        ? certificateIdentity(socket.getPeerCertificate())
        : undefined;
      resolve({ socket, identity });
      return;
    }
    socket.destroy();
    reject(new Error(refusal));
  }

  /** Why a finished handshake is refused: ALPN, or the certificate; `undefined` if it is not. */
  #refusal(socket: TLSSocket): string | undefined {
    // RFC 9113 §3.2: h2 over TLS is negotiated with ALPN; a client without `h2` is refused.
    if (socket.alpnProtocol !== "h2") return "the client did not negotiate h2";
    if (!this.#mutual || socket.authorized) return undefined;
    if (socket.getPeerCertificate().raw !== undefined) {
      return `tls.clientCa does not trust its certificate: ${socket.authorizationError}`;
    }
    return this.#requireClientCert ? "it sent no certificate (tls.requireClientCert)" : undefined;
  }
}

/** The identity of a verified client certificate, when it is a clean header value. */
function certificateIdentity(certificate: PeerCertificate): string | undefined {
  const identity = namedIdentity(certificate);
  // It goes into a header and the access log: a name a CA let through with control
  // characters or surrounding space would be a malformed field value (RFC 9113 §8.2.1).
  return identity !== undefined && FIELD_VALUE.test(identity) ? identity : undefined;
}

/** Visible ASCII, with single inner spaces: a field value with nothing to escape. */
const FIELD_VALUE = /^[\x21-\x7e]+(?: [\x21-\x7e]+)*$/;

/**
 * Who a verified client certificate says the client is: its first SAN URI (a SPIFFE ID,
 * say), else its first SAN DNS name, else its subject CN.
 */
function namedIdentity(certificate: PeerCertificate): string | undefined {
  const names = certificate.subjectaltname;
  if (names) {
    let dns: string | undefined;
    // Deno joins the entries with ", " and quotes no value (node quotes some, CVE-2021-44532);
    // neither a URI (RFC 3986) nor a DNS name can contain a space.
    for (const entry of names.split(", ")) {
      if (entry.startsWith("URI:")) return entry.slice(4);
      if (dns === undefined && entry.startsWith("DNS:")) dns = entry.slice(4);
    }
    if (dns !== undefined) return dns;
  }
  const cn: string | string[] | undefined = certificate.subject?.CN;
  return Array.isArray(cn) ? cn[0] : cn;
}
