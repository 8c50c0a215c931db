/**
 * Test-only hooks, loaded only when `SWITCHYARD_DEBUG_HOOKS=1`: without it this module is
 * never imported, and workers ignore the crash request.
 * @module
 */
import type { DataPlanes } from "./data_planes.ts";

/** SIGUSR2 makes worker 1 die silently, as a crash would, so tests can watch it restart. */
export function installDebugHooks(planes: DataPlanes): void {
  Deno.addSignalListener("SIGUSR2", () => planes.crash(1));
}
