/**
 * Test harness: the real proxy process on loopback, free ports, condition waits.
 * Tests never sleep for a fixed time; they wait for a condition with a deadline.
 * @module
 */
import assert from "node:assert/strict";
import net from "node:net";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

/**
 * Test options for tests that use `@grpc/grpc-js`: it keeps channel timers and sockets alive
 * past a test's end (idle timers, reconnect backoff), which Deno's sanitizers would report.
 */
export const GRPC_JS: Readonly<{ sanitizeOps: false; sanitizeResources: false }> = {
  sanitizeOps: false,
  sanitizeResources: false,
};

/** Log messages of errors that escaped the relay's own handling (see main.ts). */
const INTERNAL_ERROR_SIGNS = /uncaught error|unhandled rejection|failed inside the proxy/;

/** Finds a free TCP port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Polls `condition` until it returns a truthy value, or throws after `timeoutMs`. */
export async function waitFor<T>(
  condition: () => T | Promise<T>,
  { timeoutMs = 10_000, intervalMs = 20, what = "condition" } = {},
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await condition();
      if (value) return value as NonNullable<T>;
    } catch (error) {
      lastError = error;
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
  throw new Error(
    `timed out after ${timeoutMs}ms waiting for ${what}` +
      (lastError ? `: ${String(lastError)}` : ""),
  );
}

/** A proxy process started by a test. */
export interface ProxyProcess {
  /** The proxy's `127.0.0.1:port`. */
  readonly address: string;
  /** The admin API's `127.0.0.1:port`. */
  readonly adminAddress: string;
  /** The config file it was started with; rewrite it and reload to change the config. */
  readonly configPath: string;
  /**
   * Writes `config` to {@link configPath} as the test harness wrote the first one (listen,
   * admin.listen and workers kept unless given), atomically, as config tools do.
   */
  writeConfig(config: Record<string, unknown>): Promise<void>;
  /** The child process. */
  readonly child: Deno.ChildProcess;
  /** Everything written to stderr (JSON log lines) and stdout so far. */
  output(): string;
  /** Everything written to stdout alone (the access log, when it goes there). */
  stdout(): string;
  /** Parsed JSON log lines so far. */
  logs(): Record<string, unknown>[];
  /** Resolves when the process exits, with its status. */
  readonly exited: Promise<Deno.CommandStatus>;
  /** True once the process has exited (for any reason, including a crash). */
  hasExited(): boolean;
  /**
   * Sends SIGTERM and waits for exit; returns the exit code. Throws when the proxy logged an
   * error that escaped a call's own handling.
   */
  stop(): Promise<number>;
  /** Peak/current resident set size in bytes, from /proc. */
  rssBytes(): Promise<number>;
}

/** Options for {@link startProxy}. */
export interface StartProxyOptions {
  /** Extra CLI arguments. */
  readonly args?: string[];
  /** Extra environment variables. */
  readonly env?: Record<string, string>;
  /** Do not wait for the listening log line (for config-error tests). */
  readonly expectExit?: boolean;
  /**
   * The proxy's file-descriptor limit (`ulimit -n`, set by a `bash` that then execs the
   * proxy, so `child.pid` is still the proxy's); the test process's limit when unset.
   */
  readonly fdLimit?: number;
  /**
   * Leave the proxy's stdout pipe unread (a sink that does not keep up: once the pipe is
   * full, writes to stdout wait); {@link ProxyProcess.stdout} stays empty.
   */
  readonly unreadStdout?: boolean;
}

/**
 * Writes `config` (listen and admin.listen filled with free ports unless given, `workers`
 * 1 unless given) to a temp file and runs `main.ts --config FILE`. Resolves once the proxy logs that it listens.
 */
export async function startProxy(
  config: Record<string, unknown>,
  options: StartProxyOptions = {},
): Promise<ProxyProcess> {
  const listen = (config.listen as string | undefined) ?? `127.0.0.1:${await freePort()}`;
  const admin = {
    listen: `127.0.0.1:${await freePort()}`,
    ...(config.admin as Record<string, unknown> | undefined),
  };
  const file = await Deno.makeTempFile({ prefix: "switchyard-", suffix: ".json" });
  // One data plane unless a test asks for more: most tests count connections and calls of
  // one data plane; tests/workers_test.ts covers several.
  const workers = config.workers ?? 1;
  const writeConfig = async (next: Record<string, unknown>) => {
    const written = { workers, listen, ...next, admin: { ...admin, ...(next.admin as object) } };
    await Deno.writeTextFile(`${file}.next`, JSON.stringify(written));
    await Deno.rename(`${file}.next`, file);
  };
  await writeConfig(config);
  const args = ["run", "-A", MAIN, "--config", file, ...(options.args ?? [])];
  const [program, programArgs] = options.fdLimit === undefined
    ? [Deno.execPath(), args]
    : ["bash", ["-c", `ulimit -n ${options.fdLimit} && exec "$0" "$@"`, Deno.execPath(), ...args]];
  const child = new Deno.Command(program, {
    args: programArgs,
    env: options.env,
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).spawn();
  let text = "";
  let stdoutText = "";
  const pump = async (stream: ReadableStream<Uint8Array>, isStdout: boolean) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) {
      const decoded = decoder.decode(chunk, { stream: true });
      text += decoded;
      if (isStdout) stdoutText += decoded;
    }
  };
  const pumped = Promise.all([
    options.unreadStdout ? undefined : pump(child.stdout, true),
    pump(child.stderr, false),
  ]);
  const exited = child.status.then(async (status) => {
    await pumped;
    if (options.unreadStdout) await child.stdout.cancel();
    await Deno.remove(file).catch(() => {});
    return status;
  });
  let hasExited = false;
  child.status.then(() => hasExited = true);
  const process: ProxyProcess = {
    address: listen,
    adminAddress: admin.listen as string,
    configPath: file,
    writeConfig,
    child,
    output: () => text,
    stdout: () => stdoutText,
    logs: () =>
      text.split("\n").filter((line) => line.startsWith("{")).flatMap((line) => {
        try {
          return [JSON.parse(line)];
        } catch {
          return [];
        }
      }),
    exited,
    hasExited: () => hasExited,
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch { /* already exited */ }
      const { code } = await exited;
      // The proxy logs and survives an error escaping one call; a test must still fail on it.
      const escaped = INTERNAL_ERROR_SIGNS.exec(text);
      if (escaped) throw new Error(`the proxy logged "${escaped[0]}":\n${text.slice(-3000)}`);
      return code;
    },
    async rssBytes() {
      const status = await Deno.readTextFile(`/proc/${child.pid}/status`);
      return Number(/VmRSS:\s+(\d+)/.exec(status)![1]) * 1024;
    },
  };
  if (options.expectExit) return process;
  let exitedEarly = false;
  exited.then(() => exitedEarly = true);
  await waitFor(() => {
    if (exitedEarly) throw new Error(`proxy exited during startup:\n${text}`);
    return text.includes('"listening on');
  }, { timeoutMs: 20_000, what: "proxy to listen" });
  return process;
}

/** What a finished `switchyard` run printed, and how it exited. */
export interface SwitchyardRun {
  /** The exit code. */
  readonly code: number;
  /** Everything written to stdout. */
  readonly stdout: string;
  /** Everything written to stderr. */
  readonly stderr: string;
}

// Every caller expects an early exit; a config the proxy wrongly accepts would otherwise run
// (and hang the test) forever, so it is killed and the test fails on its exit code.
const RUN_TIMEOUT_MS = 60_000;

/**
 * Runs `main.ts` with `args` until it exits (for command-line and config-error tests), with
 * `env` added to the environment.
 */
export async function runSwitchyard(
  args: string[],
  env: Record<string, string> = {},
): Promise<SwitchyardRun> {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    env,
    stdin: "null",
    signal: AbortSignal.timeout(RUN_TIMEOUT_MS),
  }).output();
  const decoder = new TextDecoder();
  return { code, stdout: decoder.decode(stdout), stderr: decoder.decode(stderr) };
}

/**
 * Runs `main.ts` with `base` and then each case's arguments: every run must exit 2 (a usage
 * error) with the case's message in stderr.
 */
export async function expectUsageErrors(
  base: readonly string[],
  cases: readonly (readonly [string[], string])[],
): Promise<void> {
  for (const [args, message] of cases) {
    const { code, stderr } = await runSwitchyard([...base, ...args]);
    assert.equal(code, 2, stderr);
    assert.ok(stderr.includes(message), stderr);
  }
}

/**
 * Runs `switchyard register` with `args` while `during` runs, then sends it SIGTERM (which
 * deregisters); it must exit 0.
 */
export async function whileRegistered(
  args: readonly string[],
  during: () => Promise<unknown>,
): Promise<void> {
  const register = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, "register", ...args],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const output = register.output();
  try {
    await during();
  } finally {
    register.kill("SIGTERM");
  }
  const { code, stderr } = await output;
  assert.equal(code, 0, new TextDecoder().decode(stderr));
}

/**
 * A proxy config with one cluster, `name`, that serves the `test.Test` service from
 * `backends`; `cluster` adds or overrides cluster settings. The drain timeout is short so a
 * test that forgets a client still stops quickly.
 */
export function clusterConfig(
  backends: readonly string[],
  cluster: Record<string, unknown> = {},
  name = "echo",
): Record<string, unknown> {
  return {
    drain: { timeout: "5s" },
    clusters: { [name]: { backends, ...cluster } },
    routes: [{ service: "test.Test", cluster: name }],
  };
}
