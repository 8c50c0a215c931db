/**
 * A test backend in a process of its own, so that a test can kill it for real (SIGKILL)
 * mid-call. Prints `listening <address>` once it serves.
 *
 * Usage: `deno run -A tests/support/backend_process.ts NAME [PORT]`.
 * @module
 */
import { startTestBackend } from "./test_backend.ts";

const backend = await startTestBackend(Deno.args[0] ?? "process", Number(Deno.args[1] ?? 0));
console.log(`listening ${backend.address}`);
