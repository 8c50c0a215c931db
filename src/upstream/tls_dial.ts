/**
 * Dials a backend over TLS and checks that it chose `h2` (RFC 9113 §3.2: over TLS, HTTP/2 is
 * negotiated with ALPN only), handing the engine a {@link Socket} past its handshake.
 *
 * Backend TLS goes through `node:tls` and {@link NodeSocket}, not Deno's own TLS, which under
 * Deno 2.9 cannot:
 * - give up a dial: closing a `Deno.TlsConn` whose handshake has not finished leaves its socket
 *   open until the peer answers or closes (the handshake task holds it), and
 *   `Deno.connectTls` takes no abort signal for its TCP connect; so every timed-out redial of
 *   a frozen backend would keep one more socket;
 * - trust the configured CA alone: its `caCerts` are added to the root store, where
 *   `node:tls`'s `ca` replaces it, as Envoy's `trusted_ca` and gRPC's root certificates do;
 * - skip verification, or send a client certificate while verifying a name other than the
 *   host dialled (`Deno.startTls`, which takes another name, takes no certificate).
 * @module
 */
import nodeTls from "node:tls";
import { DialError } from "./dial_error.ts";
import type { BackendTls } from "../config/tls.ts";
import type { Socket } from "../h2/connection.ts";
import { NodeSocket } from "../h2/node_socket.ts";

/**
 * Connects to `host:port` (`address`, for messages) with `tls`. Rejects with a
 * {@link DialError} when the TCP connect or the handshake fails or the backend did not choose
 * `h2`, and with `signal`'s reason when it aborts; the socket is closed in every case.
 */
export function dialTls(
  host: string,
  port: number,
  address: string,
  tls: BackendTls,
  signal: AbortSignal,
): Promise<Socket> {
  signal.throwIfAborted();
  return new Promise((resolve, reject) => {
    const socket = nodeTls.connect({ host, port, ...nodeTlsOptions(host, tls) });
    let connected = false;
    const onConnect = () => connected = true;
    const settle = () => {
      socket.off("connect", onConnect);
      socket.off("secureConnect", onSecure);
      socket.off("error", onError);
      signal.removeEventListener("abort", onAbort);
    };
    const onSecure = () => {
      settle();
      try {
        checkAlpn(address, socket.alpnProtocol);
      } catch (error) {
        socket.destroy();
        reject(error);
        return;
      }
      socket.setNoDelay(true);
      resolve(new NodeSocket(socket));
    };
    const onError = (error: Error) => {
      settle();
      socket.destroy();
      // node:tls's connect errors name the address already ("connect ECONNREFUSED …").
      reject(connected ? handshakeError(address, tls, error) : new DialError(error.message));
    };
    const onAbort = () => {
      settle();
      socket.destroy();
      reject(signal.reason);
    };
    socket.once("connect", onConnect);
    socket.once("secureConnect", onSecure);
    socket.once("error", onError);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * The `node:tls` options of a connection to `host` with `tls`: a data-plane dial's, and a
 * health probe's, so that both verify a backend alike.
 */
export function nodeTlsOptions(host: string, tls: BackendTls): nodeTls.ConnectionOptions {
  return {
    // SNI carries no IP address (RFC 6066 §3), and Deno's node:tls throws on one; without a
    // name, the certificate is verified against the address.
    servername: tls.serverName ?? (/^[\d.]+$|:/.test(host) ? undefined : host),
    ca: tls.ca,
    cert: tls.cert,
    key: tls.key,
    ALPNProtocols: [...tls.alpn],
    rejectUnauthorized: !tls.insecureSkipVerify,
  };
}

/** Fails unless the backend chose `h2`: without ALPN it may not speak HTTP/2 over TLS. */
export function checkAlpn(address: string, chosen: string | false | null): void {
  if (chosen === "h2") return;
  throw new DialError(
    `backend ${address} did not negotiate h2 over TLS (ALPN: ${chosen || "none"})`,
  );
}

function handshakeError(address: string, tls: BackendTls, error: Error): DialError {
  const name = tls.serverName === undefined ? "" : ` as ${tls.serverName}`;
  const code = (error as Error & { code?: unknown }).code;
  const detail = typeof code === "string" && !error.message.includes(code)
    ? `${error.message} (${code})`
    : error.message;
  return new DialError(`TLS handshake with ${address}${name} failed: ${detail}`);
}
