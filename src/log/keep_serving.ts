/**
 * A proxy carries many independent calls: an unexpected exception in one call's callbacks
 * is logged, not allowed to end every other call by ending the process (or, in a data-plane
 * worker, the worker).
 * @module
 */
import { componentLogger } from "./logger.ts";

const log = componentLogger("lifecycle");

/** Logs uncaught errors and unhandled rejections instead of dying of them. */
export function keepServingOnUncaughtErrors(): void {
  globalThis.addEventListener("error", (event) => {
    event.preventDefault();
    log.error("uncaught error (still serving): {error}", { error: String(event.error?.stack) });
  });
  globalThis.addEventListener("unhandledrejection", (event) => {
    event.preventDefault();
    log.error("unhandled rejection (still serving): {error}", {
      error: String(event.reason?.stack ?? event.reason),
    });
  });
}
