/**
 * The health probes run on `@grpc/grpc-js`, which opens its own `node:http2` client sessions
 * where the proxy cannot reach them. On Deno 2.9.4–2.9.6 a GOAWAY received on such a session
 * (a backend shutting down) can abort the whole proxy, so the GOAWAY deferral must be on
 * them too (see `shared/deno-http2.md`). grpc-js offers no hook on its sessions, so
 * `http2.connect` itself is wrapped, once per process.
 * @module
 */
import http2 from "node:http2";
import { deferCloseDuringGoaway } from "./goaway.ts";

let installed = false;

/**
 * Makes every `node:http2` client session created from now on defer its teardown during a
 * GOAWAY dispatch. Idempotent; sessions that already defer (the proxy's own) are unaffected,
 * because the deferral skips a dispatch that is already deferred.
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
