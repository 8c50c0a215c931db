/**
 * Switchyard as a target: the real proxy process (`main.ts --config`), one cluster per
 * backend, with a set number of workers, optionally under V8's CPU profiler. The same code
 * runs a second checkout (say, `git archive HEAD`) as `switchyard-baseline`, so a change is
 * measured against its baseline in one run.
 * @module
 */
import { join, resolve } from "node:path";
import { freePort } from "../../tests/support/harness.ts";
import type { CallLedger, StatusCounts } from "../ledger.ts";
import { spawnChild, waitForOutput } from "./child.ts";
import type { BackendAddresses, Target, TargetName } from "./target.ts";

const REPO_ROOT = new URL("../../", import.meta.url).pathname;

/** This checkout, run by {@link startSwitchyard}. */
export interface CurrentSwitchyard {
  /** The target's name: `switchyard`, or `switchyard-w<N>` under `--workers`. */
  readonly name: TargetName;
  /** Its config's `workers`. */
  readonly workers: number;
  /** Directory for a `.cpuprofile`, written when the proxy exits; no profiling without it. */
  readonly cpuProfDir?: string;
}

/**
 * Another checkout, run by {@link startSwitchyard} as `switchyard-baseline`. Its config has
 * no `workers`: a checkout older than that field rejects it (its config schema is strict).
 */
export interface BaselineSwitchyard {
  /** The checkout's directory (its `main.ts`, with its own `deno.json` and `node_modules`). */
  readonly baselineDir: string;
}

/** Which Switchyard {@link startSwitchyard} runs. */
export type SwitchyardOptions = CurrentSwitchyard | BaselineSwitchyard;

/**
 * The proxy config: `bench.Echo` goes to the grpc-js backend, everything else to the fast one;
 * `workers` only when given.
 */
function benchConfig(
  listen: string,
  admin: string,
  backends: BackendAddresses,
  workers: number | undefined,
): object {
  return {
    ...(workers === undefined ? {} : { workers }),
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

const CALLS_SAMPLE = /^switchyard_calls_total\{.*grpc_status="([^"]*)".*\} (\S+)$/gm;

/** `switchyard_calls_total` from a Prometheus exposition, summed by `grpc_status`. */
export function callsByStatus(exposition: string): StatusCounts {
  const counts = new Map<string, number>();
  for (const [, status, value] of exposition.matchAll(CALLS_SAMPLE)) {
    counts.set(status, (counts.get(status) ?? 0) + Number(value));
  }
  return counts;
}

/**
 * The proxy's own record of every finished call: `switchyard_calls_total` on the admin
 * `/metrics`. Unlike its access log, it adds no disk I/O to the measured CPU.
 */
function metricsLedger(admin: string): CallLedger {
  return {
    source: "switchyard /metrics",
    async read(): Promise<StatusCounts> {
      const response = await fetch(`http://${admin}/metrics`);
      if (!response.ok) throw new Error(`GET /metrics: HTTP ${response.status}`);
      return callsByStatus(await response.text());
    },
  };
}

/** Starts the proxy and resolves once it listens. */
export async function startSwitchyard(
  backends: BackendAddresses,
  workDir: string,
  options: SwitchyardOptions,
): Promise<Target> {
  const baseline = "baselineDir" in options;
  const name = baseline ? "switchyard-baseline" : options.name;
  const root = baseline ? resolve(options.baselineDir) : REPO_ROOT;
  const listen = `127.0.0.1:${await freePort()}`;
  const admin = `127.0.0.1:${await freePort()}`;
  const configFile = `${workDir}/${name}.json`;
  const config = benchConfig(listen, admin, backends, baseline ? undefined : options.workers);
  await Deno.writeTextFile(configFile, JSON.stringify(config));
  const profiling = !baseline && options.cpuProfDir
    ? ["--cpu-prof", `--cpu-prof-dir=${options.cpuProfDir}`]
    : [];
  const child = spawnChild(
    Deno.execPath(),
    ["run", "-A", ...profiling, join(root, "main.ts"), "--config", configFile],
    root,
  );
  try {
    await waitForOutput(child, /"listening on/);
  } catch (error) {
    await child.stop();
    throw error;
  }
  const ledger = metricsLedger(admin);
  return {
    name,
    address: () => listen,
    ledger: () => ledger,
    proxyPid: child.pid,
    async stop(): Promise<void> {
      const status = await child.stop();
      if (status.code !== 0) {
        throw new Error(`${name} exited with ${status.code}:\n${child.output().slice(-4000)}`);
      }
    },
  };
}
