/**
 * Starts the bench's backends, each in its own process so that their CPU is not the bench's.
 * @module
 */
import { findExecutable } from "../tools.ts";
import { type Child, spawnChild, waitForOutput } from "./child.ts";
import type { BackendAddresses } from "./target.ts";

const FAST_BACKEND = new URL("../fast_backend.mjs", import.meta.url).pathname;
const GRPCJS_BACKEND = new URL("../grpcjs_backend.ts", import.meta.url).pathname;
const REPO_ROOT = new URL("../../", import.meta.url).pathname;

/** The running backends. */
export interface Backends {
  /** Their addresses by kind. */
  readonly addresses: BackendAddresses;
  /** Which runtime the fast backend is on. */
  readonly fastRuntime: "node" | "deno";
  /** Stops both. */
  stop(): Promise<void>;
}

async function started(child: Child): Promise<string> {
  const [, port] = await waitForOutput(child, /listening (\d+)/);
  return `127.0.0.1:${port}`;
}

/** Starts the fast backend (on Node when installed) and the grpc-js echo backend. */
export async function startBackends(): Promise<Backends> {
  const node = findExecutable("node");
  const fast = node
    ? spawnChild(node, [FAST_BACKEND, "--port", "0"])
    : spawnChild(Deno.execPath(), ["run", "-A", FAST_BACKEND, "--port", "0"], REPO_ROOT);
  const grpcjs = spawnChild(
    Deno.execPath(),
    ["run", "-A", GRPCJS_BACKEND, "--port", "0"],
    REPO_ROOT,
  );
  const stop = async (): Promise<void> => {
    await Promise.all([fast.stop(), grpcjs.stop()]);
  };
  try {
    const [fastAddress, grpcjsAddress] = await Promise.all([started(fast), started(grpcjs)]);
    return {
      addresses: { fast: fastAddress, grpcjs: grpcjsAddress },
      fastRuntime: node ? "node" : "deno",
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
