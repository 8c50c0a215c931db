/**
 * The downstream listener: h2c, or TLS with ALPN `h2`, one HTTP/2 connection per client
 * carrying many calls. Draining stops accepting, sends GOAWAY on every connection, and lets
 * in-flight calls finish up to a deadline.
 * @module
 */
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { parseHostPort } from "../config/address.ts";
import { componentLogger } from "../log/logger.ts";
import { deferCloseDuringGoaway } from "../transport/goaway.ts";
import { CONNECTION_WINDOW_BYTES, LOCAL_SETTINGS } from "../transport/settings.ts";
import { enableWriteBatching } from "../transport/write_batching.ts";
import { type CallContext, ProxiedCall } from "./proxied_call.ts";

const log = componentLogger("proxy");

/** Listener settings. */
export interface ListenerOptions {
  /** `host:port` to bind. */
  readonly listen: string;
  /** PEM certificate and key for TLS; h2c without them. */
  readonly tls?: { readonly cert: string; readonly key: string };
}

/** A running downstream listener. */
export class ProxyListener {
  readonly #server: http2.Http2Server | http2.Http2SecureServer;
  readonly #sessions = new Set<http2.ServerHttp2Session>();
  #draining = false;

  private constructor(server: http2.Http2Server | http2.Http2SecureServer) {
    this.#server = server;
  }

  /** Binds the listener and starts relaying calls through `context`. */
  static async start(options: ListenerOptions, context: CallContext): Promise<ProxyListener> {
    const server = options.tls
      ? http2.createSecureServer({
        cert: options.tls.cert,
        key: options.tls.key,
        ALPNProtocols: ["h2"],
        settings: LOCAL_SETTINGS,
      })
      : http2.createServer({ settings: LOCAL_SETTINGS });
    const listener = new ProxyListener(server);
    server.on("session", (session: http2.ServerHttp2Session) => listener.#adopt(session));
    server.on("stream", (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => {
      new ProxiedCall(context, stream, headers).start();
    });
    const { host, port } = parseHostPort(options.listen)!;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, () => {
        server.off("error", reject);
        resolve();
      });
    });
    server.on("error", (error) => log.error("listener error: {error}", { error: String(error) }));
    log.info("listening on {address} ({protocol})", {
      address: listener.address,
      protocol: options.tls ? "h2 over TLS" : "h2c",
    });
    return listener;
  }

  /** The bound `host:port` (with the real port when 0 was requested). */
  get address(): string {
    const info = this.#server.address() as AddressInfo;
    return info.family === "IPv6"
      ? `[${info.address}]:${info.port}`
      : `${info.address}:${info.port}`;
  }

  /** True once {@link drain} was called. */
  get draining(): boolean {
    return this.#draining;
  }

  /**
   * Stops accepting, sends GOAWAY on every connection, and resolves when all connections
   * have closed or `timeoutMs` passes (then the rest are destroyed).
   */
  async drain(timeoutMs: number): Promise<void> {
    if (!this.#draining) {
      this.#draining = true;
      this.#server.close();
      for (const session of this.#sessions) session.close();
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(true), timeoutMs);
    });
    const closed = Promise.all(
      [...this.#sessions].map((session) => new Promise((r) => session.once("close", r))),
    ).then(() => false);
    const expired = await Promise.race([closed, timedOut]);
    clearTimeout(timer);
    if (expired) {
      log.warn("drain timeout: closing {count} connections with calls in flight", {
        count: this.#sessions.size,
      });
      for (const session of this.#sessions) session.destroy();
    }
  }

  #adopt(session: http2.ServerHttp2Session): void {
    deferCloseDuringGoaway(session);
    enableWriteBatching(session);
    this.#sessions.add(session);
    session.on("error", (error) => log.debug("client connection error: {error}", { error }));
    session.once("close", () => this.#sessions.delete(session));
    session.once("localSettings", () => session.setLocalWindowSize(CONNECTION_WINDOW_BYTES));
    if (this.#draining) session.close();
  }
}
