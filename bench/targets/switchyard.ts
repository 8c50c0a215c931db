/**
 * Switchyard as a target: the real proxy process (`main.ts --config`), one cluster per
 * backend, with a set number of workers and a gRPC-Web listener beside the gRPC one,
 * optionally under V8's CPU profiler. The same code runs a second checkout (say,
 * `git archive HEAD`) as `switchyard-baseline`, so a change is measured against its baseline
 * in one run.
 * @module
 */
import { join, resolve } from "node:path";
import { freePort } from "../../tests/support/harness.ts";
import { GRPC_STATUS_NAMES, type GrpcStatusName } from "../../src/proxy/grpc_status.ts";
import type { CallLedger, StatusCounts } from "../ledger.ts";
import type { CallProtocol } from "../scenarios.ts";
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
  /** Environment variables added to the proxy's (`OTEL_*` for `switchyard-traced`). */
  readonly env?: Record<string, string>;
}

/**
 * Another checkout, run by {@link startSwitchyard} as `switchyard-baseline`. Its config has
 * no `workers` and no `grpcWeb`: a checkout older than those fields rejects them (its config
 * schema is strict), so it runs no gRPC-Web scenario.
 */
export interface BaselineSwitchyard {
  /** The checkout's directory (its `main.ts`, with its own `deno.json` and `node_modules`). */
  readonly baselineDir: string;
}

/** Which Switchyard {@link startSwitchyard} runs. */
export type SwitchyardOptions = CurrentSwitchyard | BaselineSwitchyard;

/** The proxy's addresses. */
interface Listeners {
  /** Native gRPC. */
  readonly listen: string;
  /** The admin API, for `/metrics`. */
  readonly admin: string;
  /** gRPC-Web; undefined for none. */
  readonly grpcWeb?: string;
}

/**
 * The proxy config: `bench.Echo` goes to the grpc-js backend, everything else to the fast one;
 * `workers` and `grpcWeb` only when given.
 */
function benchConfig(
  listeners: Listeners,
  backends: BackendAddresses,
  workers: number | undefined,
): object {
  const { listen, admin, grpcWeb } = listeners;
  return {
    ...(workers === undefined ? {} : { workers }),
    listen,
    ...(grpcWeb === undefined ? {} : { grpcWeb: { listen: grpcWeb } }),
    admin: { listen: admin },
    drainTimeout: "2s",
    clusters: {
      fast: { backends: [backends.fast] },
      grpcjs: { backends: [backends.grpcjs] },
    },
    routes: [{ service: "bench.Echo", cluster: "grpcjs" }, { cluster: "fast" }],
  };
}

const CALLS_SAMPLE = /^switchyard_calls_total\{(.*)\} (\S+)$/gm;
const LABEL = /(\w+)="((?:[^"\\]|\\.)*)"/g;

/**
 * `switchyard_calls_total` from a Prometheus exposition, summed by `grpc_status` (as a code,
 * whether the checkout labels it by code or by name): every
 * sample, or only those whose `protocol` label is `protocol` when given (a checkout older
 * than gRPC-Web has no such label).
 */
export function callsByStatus(exposition: string, protocol?: CallProtocol): StatusCounts {
  const counts = new Map<string, number>();
  for (const [, labelText, value] of exposition.matchAll(CALLS_SAMPLE)) {
    const labels = new Map([...labelText.matchAll(LABEL)].map(([, name, text]) => [name, text]));
    if (protocol !== undefined && labels.get("protocol") !== protocol) continue;
    const label = labels.get("grpc_status");
    if (label === undefined) continue;
    // The ledger counts by code; checkouts since the metrics issue label statuses by name.
    const code = GRPC_STATUS_NAMES.indexOf(label as GrpcStatusName);
    const status = code < 0 ? label : String(code);
    counts.set(status, (counts.get(status) ?? 0) + Number(value));
  }
  return counts;
}

/**
 * The proxy's own record of every finished call (of `protocol` only, when given):
 * `switchyard_calls_total` on the admin `/metrics`. Unlike its access log, it adds no disk
 * I/O to the measured CPU.
 */
function metricsLedger(admin: string, protocol?: CallProtocol): CallLedger {
  return {
    source: `switchyard /metrics${protocol === undefined ? "" : ` (protocol="${protocol}")`}`,
    async read(): Promise<StatusCounts> {
      const response = await fetch(`http://${admin}/metrics`);
      if (!response.ok) throw new Error(`GET /metrics: HTTP ${response.status}`);
      return callsByStatus(await response.text(), protocol);
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
  const grpcWeb = baseline ? undefined : `127.0.0.1:${await freePort()}`;
  const configFile = `${workDir}/${name}.json`;
  const workers = baseline ? undefined : options.workers;
  const config = benchConfig({ listen, admin, grpcWeb }, backends, workers);
  await Deno.writeTextFile(configFile, JSON.stringify(config));
  const profiling = !baseline && options.cpuProfDir
    ? ["--cpu-prof", `--cpu-prof-dir=${options.cpuProfDir}`]
    : [];
  const child = spawnChild(
    Deno.execPath(),
    ["run", "-A", ...profiling, join(root, "main.ts"), "--config", configFile],
    root,
    baseline ? undefined : options.env,
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
    grpcWeb: grpcWeb === undefined
      ? undefined
      : { address: grpcWeb, ledger: metricsLedger(admin, "grpc-web") },
    proxyPid: child.pid,
    async stop(): Promise<void> {
      const status = await child.stop();
      if (status.code !== 0) {
        throw new Error(`${name} exited with ${status.code}:\n${child.output().slice(-4000)}`);
      }
    },
  };
}
