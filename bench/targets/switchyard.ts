/**
 * Switchyard as a target: the real proxy process (`main.ts --config`), one cluster per
 * backend, optionally under V8's CPU profiler.
 * @module
 */
import { freePort } from "../../tests/support/harness.ts";
import { spawnChild, waitForOutput } from "./child.ts";
import type { BackendAddresses, Target } from "./target.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const REPO_ROOT = new URL("../../", import.meta.url).pathname;

/** Options for {@link startSwitchyard}. */
export interface SwitchyardOptions {
  /** Directory for a `.cpuprofile`, written when the proxy exits; no profiling without it. */
  readonly cpuProfDir?: string;
}

/** The proxy config: `bench.Echo` goes to the grpc-js backend, everything else to the fast one. */
function benchConfig(listen: string, admin: string, backends: BackendAddresses): object {
  return {
    listen,
    admin: { listen: admin },
    drainTimeout: "2s",
    clusters: {
      fast: { backends: [backends.fast] },
      grpcjs: { backends: [backends.grpcjs] },
    },
    routes: [{ service: "bench.Echo", cluster: "grpcjs" }, { cluster: "fast" }],
  };
}

/** Starts the proxy and resolves once it listens. */
export async function startSwitchyard(
  backends: BackendAddresses,
  workDir: string,
  options: SwitchyardOptions = {},
): Promise<Target> {
  const listen = `127.0.0.1:${await freePort()}`;
  const admin = `127.0.0.1:${await freePort()}`;
  const configFile = `${workDir}/switchyard.json`;
  await Deno.writeTextFile(configFile, JSON.stringify(benchConfig(listen, admin, backends)));
  const profiling = options.cpuProfDir
    ? ["--cpu-prof", `--cpu-prof-dir=${options.cpuProfDir}`]
    : [];
  const child = spawnChild(
    Deno.execPath(),
    ["run", "-A", ...profiling, MAIN, "--config", configFile],
    REPO_ROOT,
  );
  try {
    await waitForOutput(child, /"listening on/);
  } catch (error) {
    await child.stop();
    throw error;
  }
  return {
    name: "switchyard",
    address: () => listen,
    proxyPid: child.pid,
    async stop(): Promise<void> {
      const status = await child.stop();
      if (status.code !== 0) {
        throw new Error(`switchyard exited with ${status.code}:\n${child.output().slice(-4000)}`);
      }
    },
  };
}
