/**
 * Why a dial failed, in words fit for the backend's `lastError`. Its own module, so that
 * `upstream.ts` loads `node:tls` (through `tls_dial.ts`) only when a cluster uses TLS.
 * @module
 */

/** A failed dial whose message names the backend and the problem, ready for `lastError`. */
export class DialError extends Error {}
