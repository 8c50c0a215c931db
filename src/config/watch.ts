/**
 * `watch: true`: a reload when the config file changes. The file's directory is watched, not
 * the file, because editors and config-management tools replace a file by renaming another
 * over it, which ends a watch on the file itself, and Kubernetes swaps a symlink instead. Bursts of events (a write, then a rename)
 * become one reload.
 * @module
 */
import { basename, dirname, resolve } from "node:path";
import { componentLogger } from "../log/logger.ts";

const log = componentLogger("config");

/**
 * Whether a change to the directory entry `entry` can change the config file `name`: the file
 * itself, or Kubernetes' `..data` symlink, which a ConfigMap or Secret update swaps (the file is
 * a symlink through it).
 */
function isConfigChange(entry: string, name: string): boolean {
  return entry === name || entry.startsWith("..data");
}

/** Events this close together are one change. */
const SETTLE_MS = 250;

/** Watches one config file while the process runs. */
export class ConfigWatcher {
  readonly #watcher: Deno.FsWatcher | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;

  /** Watches `path`; calls `onChange` after each change. */
  constructor(path: string, onChange: () => void) {
    const file = resolve(path);
    const name = basename(file);
    try {
      this.#watcher = Deno.watchFs(dirname(file), { recursive: false });
    } catch (error) {
      log.warn("cannot watch {path}: {error}; reload with SIGHUP or POST /reload", {
        path,
        error: String(error),
      });
      return;
    }
    (async () => {
      for await (const event of this.#watcher!) {
        if (!event.paths.some((changed) => isConfigChange(basename(changed), name))) continue;
        clearTimeout(this.#timer);
        this.#timer = setTimeout(() => {
          log.info("{path} changed: reloading", { path });
          onChange();
        }, SETTLE_MS);
      }
    })().catch(() => {});
  }

  /** Stops watching. */
  close(): void {
    clearTimeout(this.#timer);
    try {
      this.#watcher?.close();
    } catch {
      // Already closed.
    }
  }
}
