/**
 * The health probes run on `@grpc/grpc-js`, hence on Deno's `node:http2`. On Deno
 * 2.9.4–2.9.6 a GOAWAY received on such a session (a backend shutting down) makes Deno call
 * `session.close()`/`destroy()` while nghttp2 is still processing the frame, which corrupts
 * nghttp2's heap and aborts the whole process. Postponing those calls to `setImmediate` for
 * the duration of the `goaway` dispatch avoids it (docs/deno-http2.md; the probes in
 * `tests/runtime_probes_test.ts` gate every Deno upgrade). grpc-js offers no hook on its
 * sessions, so `http2.connect` itself is wrapped, once per process. The data plane does not
 * use `node:http2` at all.
 * @module
 */
import http2 from "node:http2";

type Teardown = "close" | "destroy";

/** Installs the GOAWAY deferral on one session; call it on every client and server session. */
export function deferCloseDuringGoaway(session: http2.Http2Session): void {
  session.prependListener("goaway", () => {
    if (Object.hasOwn(session, "close")) return; // already deferred for this dispatch
    const original = { close: session.close, destroy: session.destroy };
    setImmediate(() => {
      delete (session as Partial<http2.Http2Session>).close;
      delete (session as Partial<http2.Http2Session>).destroy;
    });
    for (const method of ["close", "destroy"] as Teardown[]) {
      // deno-lint-ignore no-explicit-any
      (session as any)[method] = (...args: unknown[]) =>
        // deno-lint-ignore no-explicit-any
        setImmediate(() => (original[method] as any).apply(session, args));
    }
  });
}

let installed = false;

/**
 * Makes every `node:http2` client session created from now on defer its teardown during a
 * GOAWAY dispatch. Idempotent.
 */
export function deferGoawayCloseOnAllClientSessions(): void {
  if (installed) return;
  installed = true;
  const connect = http2.connect;
  http2.connect = ((...args: Parameters<typeof http2.connect>) => {
    const session = connect(...args);
    deferCloseDuringGoaway(session);
    return session;
  }) as typeof http2.connect;
}

let serversInstalled = false;

/**
 * Installs the deferral on the sessions of every `node:http2` server created from now on (the
 * ones inside `@grpc/grpc-js` servers included). The proxy has none; the example, test and
 * benchmark backends do, and the proxy's GOAWAY on a connection it closes reaches them.
 */
export function deferGoawayCloseOnAllServerSessions(): void {
  if (serversInstalled) return;
  serversInstalled = true;
  const module = http2 as unknown as Record<string, unknown>;
  for (const name of ["createServer", "createSecureServer"] as const) {
    const create = module[name] as (...args: unknown[]) => http2.Http2Server;
    module[name] = (...args: unknown[]) => {
      const server = create(...args);
      server.prependListener("session", deferCloseDuringGoaway);
      return server;
    };
  }
}
