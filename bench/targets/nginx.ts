/**
 * NGINX `grpc_pass` as the reference proxy: one process (`master_process off`), upstream
 * keepalive on, request limits per connection raised so neither side reconnects mid-run.
 * Its access log records the grpc-status trailer it sent on every call, as the bench's
 * ledger of NGINX's calls.
 * @module
 */
import { freePort, waitFor } from "../../tests/support/harness.ts";
import type { CallLedger, StatusCounts } from "../ledger.ts";
import { captureOutput, withFdLimitRaised } from "../tools.ts";
import { spawnChild } from "./child.ts";
import type { BackendAddresses, Target } from "./target.ts";

/** `listen ... http2` became `http2 on;` in NGINX 1.25.1. */
function usesHttp2Directive(version: string): boolean {
  const [major, minor, patch] = version.split(".").map(Number);
  return major > 1 || (major === 1 && (minor > 25 || (minor === 25 && patch >= 1)));
}

/** The installed NGINX version, e.g. `1.22.1`. */
export async function nginxVersion(nginxPath: string): Promise<string> {
  const output = await captureOutput(nginxPath, ["-v"]);
  const match = /nginx\/([\d.]+)/.exec(output);
  if (!match) throw new Error(`cannot read the nginx version from: ${output}`);
  return match[1];
}

function nginxConfig(
  dir: string,
  port: number,
  version: string,
  b: BackendAddresses,
  connectionSlots: number,
): string {
  const listen = usesHttp2Directive(version)
    ? `listen 127.0.0.1:${port}; http2 on;`
    : `listen 127.0.0.1:${port} http2;`;
  return `daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections ${connectionSlots}; }
http {
  # Unbuffered, so that every line is on disk once the call is done; costs no CPU per call
  # measurable above the noise (docs/bench.md).
  log_format grpc '$status $sent_trailer_grpc_status';
  access_log ${dir}/access.log grpc;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  keepalive_requests 1000000;
  upstream fast { server ${b.fast}; keepalive 64; keepalive_requests 1000000; }
  upstream grpcjs { server ${b.grpcjs}; keepalive 64; keepalive_requests 1000000; }
  server {
    ${listen}
    location /bench.Echo/ { grpc_pass grpc://grpcjs; }
    location / { grpc_pass grpc://fast; }
  }
}
`;
}

/**
 * Access-log lines (`<HTTP status> <grpc-status trailer>`) counted by trailer; a line whose
 * trailer is `-` is a call NGINX sent no grpc-status trailer for.
 */
export function callsByTrailer(log: string): StatusCounts {
  const counts = new Map<string, number>();
  for (const line of log.split("\n")) {
    if (line === "") continue;
    const [status, trailer] = line.split(" ");
    const key = trailer === "-" ? `none (HTTP ${status})` : trailer;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts;
}

function accessLogLedger(file: string): CallLedger {
  return {
    source: "nginx access log",
    read: async () => callsByTrailer(await Deno.readTextFile(file)),
  };
}

function acceptsConnections(port: number): Promise<boolean> {
  return Deno.connect({ hostname: "127.0.0.1", port }).then(
    (connection) => {
      connection.close();
      return true;
    },
    () => false,
  );
}

/** Fewest `worker_connections`: NGINX's usual default. */
const MIN_WORKER_CONNECTIONS = 1024;
/** Connections beyond the scenarios' own: the gate's, and spare. */
const SPARE_CONNECTIONS = 64;

/**
 * `worker_connections` for scenarios that hold `connections` at once. Twice as many: once
 * fewer than 1/16 of its slots are free, NGINX frees some by closing idle client connections,
 * which would end the idle connections being measured.
 */
function workerConnections(connections: number): number {
  return Math.max(MIN_WORKER_CONNECTIONS, 2 * connections + SPARE_CONNECTIONS);
}

/**
 * Starts NGINX (at `nginxPath`) in `workDir` and resolves once it accepts connections.
 * `connections` is the most connections, client and upstream together, that a scenario
 * holds at once; `worker_connections` is sized to it (NGINX allocates and initialises that
 * many connection slots at start, so a larger value would add to its idle RSS).
 */
export async function startNginx(
  nginxPath: string,
  backends: BackendAddresses,
  workDir: string,
  connections: number,
): Promise<Target> {
  const dir = `${workDir}/nginx`;
  await Deno.mkdir(dir, { recursive: true });
  const port = await freePort();
  const version = await nginxVersion(nginxPath);
  const config = nginxConfig(dir, port, version, backends, workerConnections(connections));
  await Deno.writeTextFile(`${dir}/nginx.conf`, config);
  const { command, args } = withFdLimitRaised(nginxPath, ["-p", dir, "-c", `${dir}/nginx.conf`]);
  const child = spawnChild(command, args);
  let exited = false;
  child.exited.then(() => exited = true);
  try {
    await waitFor(async () => {
      if (exited) throw new Error(`nginx exited:\n${child.output()}`);
      return await acceptsConnections(port);
    }, { what: "nginx to listen" });
  } catch (error) {
    await child.stop();
    throw error;
  }
  const ledger = accessLogLedger(`${dir}/access.log`);
  return {
    name: "nginx",
    address: () => `127.0.0.1:${port}`,
    ledger: () => ledger,
    proxyPid: child.pid,
    async stop(): Promise<void> {
      await child.stop();
    },
  };
}
