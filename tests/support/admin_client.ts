/**
 * Test helpers for the admin API: a proxy whose admin listener is known to be up, and a
 * small JSON client for it.
 * @module
 */
import type * as grpc from "@grpc/grpc-js";
import { type ProxyProcess, startProxy, type StartProxyOptions, waitFor } from "./harness.ts";
import { servedBy } from "./test_backend.ts";

/** A parsed admin response. */
export interface AdminResponse {
  /** HTTP status. */
  readonly status: number;
  /** The `content-type` header. */
  readonly contentType: string;
  /** The body, parsed as JSON when it is JSON, else the text. */
  // deno-lint-ignore no-explicit-any -- tests assert on the shape field by field
  readonly body: any;
}

/** Options for {@link adminRequest}. */
export interface AdminRequestOptions {
  /** HTTP method; GET by default. */
  readonly method?: string;
  /** A body sent as JSON (a string is sent as is, to test malformed input). */
  readonly json?: unknown;
  /** Sends `Authorization: Bearer <token>`. */
  readonly token?: string;
  /** Extra request headers. */
  readonly headers?: Record<string, string>;
}

/** The admin base URL of `proxy`; a wildcard listen address is reached over loopback. */
export function adminUrl(proxy: ProxyProcess, path = "/"): string {
  const address = proxy.adminAddress.replace(/^0\.0\.0\.0:/, "127.0.0.1:");
  return `http://${address}${path}`;
}

/** Calls the admin API of `proxy`. */
export async function adminRequest(
  proxy: ProxyProcess,
  path: string,
  options: AdminRequestOptions = {},
): Promise<AdminResponse> {
  return await readAdminResponse(await fetch(adminUrl(proxy, path), adminRequestInit(options)));
}

/** The request {@link AdminRequestOptions} describe, for `fetch` or Hono's `app.request`. */
export function adminRequestInit(options: AdminRequestOptions): RequestInit {
  const headers: Record<string, string> = { ...options.headers };
  if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`;
  let body: string | undefined;
  if (options.json !== undefined) {
    headers["content-type"] ??= "application/json";
    body = typeof options.json === "string" ? options.json : JSON.stringify(options.json);
  }
  return { method: options.method ?? "GET", headers, body };
}

/** Reads an admin answer, parsing its body when it is JSON. */
export async function readAdminResponse(response: Response): Promise<AdminResponse> {
  const contentType = response.headers.get("content-type") ?? "";
  const text = await response.text();
  return {
    status: response.status,
    contentType,
    body: contentType.includes("application/json") ? JSON.parse(text) : text,
  };
}

const RAW_ANSWER_TIMEOUT_MS = 10_000;

/**
 * Sends one HTTP/1.1 request to the admin listener over a raw socket, with `headers` exactly
 * as given (`fetch` replaces `Host`); returns the status code and the body text. The answer
 * is read by its `Content-Length`, not to EOF: a server refusing a body it has not read may
 * keep the connection open. A server that never answers fails the call after 10 s.
 */
export async function rawAdminRequest(
  proxy: ProxyProcess,
  requestLine: string,
  headers: Record<string, string>,
  body = "",
): Promise<{ status: number; body: string }> {
  const { hostname, port } = new URL(adminUrl(proxy));
  const conn = await Deno.connect({ hostname, port: Number(port) });
  const deadline = setTimeout(() => conn.close(), RAW_ANSWER_TIMEOUT_MS);
  try {
    const head = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`).join("");
    await conn.write(new TextEncoder().encode(`${requestLine} HTTP/1.1\r\n${head}\r\n${body}`));
    const decoder = new TextDecoder();
    let text = "";
    for await (const chunk of conn.readable) {
      text += decoder.decode(chunk, { stream: true });
      const end = text.indexOf("\r\n\r\n");
      if (end < 0) continue;
      const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(text.slice(0, end))?.[1] ?? 0);
      const received = text.slice(end + 4);
      if (new TextEncoder().encode(received).length >= length) {
        return { status: Number(text.split(" ", 2)[1]), body: received };
      }
    }
    throw new Error(`connection closed before a full answer: ${JSON.stringify(text)}`);
  } finally {
    clearTimeout(deadline);
    try {
      conn.close();
    } catch {
      // Already closed by the readable's end.
    }
  }
}

/** Starts the proxy and waits until its admin listener answers (401 counts: it is up). */
export async function startAdminProxy(
  config: Record<string, unknown>,
  options: StartProxyOptions = {},
): Promise<ProxyProcess> {
  const proxy = await startProxy(config, options);
  try {
    await waitFor(async () => {
      const response = await fetch(adminUrl(proxy, "/live"));
      await response.body?.cancel();
      return true;
    }, { what: "the admin listener" });
  } catch (error) {
    await proxy.stop();
    throw error;
  }
  return proxy;
}

/** Makes `count` sequential echo calls and counts them by serving backend name. */
export async function callsByBackend(
  client: grpc.Client,
  count: number,
): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (let i = 0; i < count; i++) {
    const name = await servedBy(client);
    counts.set(name, (counts.get(name) ?? 0) + 1);
  }
  return counts;
}
