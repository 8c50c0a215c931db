/**
 * Workaround for Deno 2.9.4–2.9.6 `node:http2`: a received GOAWAY makes Deno call
 * `session.close()`/`destroy()` while nghttp2 is still processing the frame, which corrupts
 * nghttp2's heap and aborts the process. Postponing those calls to `setImmediate` for the
 * duration of the `goaway` dispatch avoids it (see `shared/deno-http2.md`, and the probes in
 * `tests/runtime_probes_test.ts` that gate every Deno upgrade).
 * @module
 */
import type { Http2Session } from "node:http2";

type Teardown = "close" | "destroy";

/** Installs the GOAWAY deferral on one session; call it on every client and server session. */
export function deferCloseDuringGoaway(session: Http2Session): void {
  session.prependListener("goaway", () => {
    if (Object.hasOwn(session, "close")) return; // already deferred for this dispatch
    const original = { close: session.close, destroy: session.destroy };
    setImmediate(() => {
      delete (session as Partial<Http2Session>).close;
      delete (session as Partial<Http2Session>).destroy;
    });
    for (const method of ["close", "destroy"] as Teardown[]) {
      // deno-lint-ignore no-explicit-any
      (session as any)[method] = (...args: unknown[]) =>
        // deno-lint-ignore no-explicit-any
        setImmediate(() => (original[method] as any).apply(session, args));
    }
  });
}
