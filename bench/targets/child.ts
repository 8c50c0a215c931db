/**
 * Child processes for the bench: spawned with captured output, awaited on a readiness line,
 * and stopped with SIGTERM (SIGKILL after a grace period).
 * @module
 */
import { waitFor } from "../../tests/support/harness.ts";

/** How long a child may take to exit after SIGTERM before it is killed. */
const STOP_GRACE_MS = 15_000;

/** A running child process. */
export interface Child {
  /** Its process id, for `/proc` sampling. */
  readonly pid: number;
  /** Everything it wrote to stdout and stderr so far. */
  output(): string;
  /** Resolves when it exits. */
  readonly exited: Promise<Deno.CommandStatus>;
  /** Sends SIGTERM, waits for the exit (killing it after a grace period). */
  stop(): Promise<Deno.CommandStatus>;
}

/**
 * Starts `command args` with stdout and stderr captured into {@link Child.output}, with `env`
 * added to the environment.
 */
export function spawnChild(
  command: string,
  args: string[],
  cwd?: string,
  env?: Record<string, string>,
): Child {
  const child = new Deno.Command(command, {
    args,
    cwd,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let text = "";
  const decoder = new TextDecoder();
  const pump = async (stream: ReadableStream<Uint8Array>): Promise<void> => {
    for await (const chunk of stream) text += decoder.decode(chunk, { stream: true });
  };
  const pumped = Promise.all([pump(child.stdout), pump(child.stderr)]);
  const exited = child.status.then(async (status) => {
    await pumped;
    return status;
  });
  let running = true;
  exited.then(() => running = false);
  return {
    pid: child.pid,
    output: () => text,
    exited,
    async stop(): Promise<Deno.CommandStatus> {
      if (running) child.kill("SIGTERM");
      const timer = setTimeout(() => running && child.kill("SIGKILL"), STOP_GRACE_MS);
      const status = await exited;
      clearTimeout(timer);
      return status;
    },
  };
}

/**
 * Waits until the child's output matches `pattern` and returns the match; fails with the
 * output so far when the child exits first or `timeoutMs` passes.
 */
export async function waitForOutput(
  child: Child,
  pattern: RegExp,
  timeoutMs = 20_000,
): Promise<RegExpMatchArray> {
  let exited = false;
  child.exited.then(() => exited = true);
  try {
    return await waitFor(() => {
      if (exited) throw new Error("exited during startup");
      return pattern.exec(child.output());
    }, { timeoutMs, what: String(pattern) });
  } catch (error) {
    throw new Error(`child ${child.pid}: ${(error as Error).message}\n${child.output()}`);
  }
}
