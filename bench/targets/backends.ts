/**
 * Starts the bench's backends, each in its own process so that their CPU is not the bench's.
 * @module
 */
import { COMPLETED_PATH } from "../fast_backend.mjs";
import type { CallLedger } from "../ledger.ts";
import { connectClient } from "../load/grpc_call.ts";
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
  /** The fast backend's count of the calls it finished with `grpc-status: 0` trailers. */
  readonly fastLedger: CallLedger;
  /** Which runtime the fast backend is on. */
  readonly fastRuntime: "node" | "deno";
  /** Stops both. */
  stop(): Promise<void>;
}

async function started(child: Child): Promise<string> {
  const [, port] = await waitForOutput(child, /listening (\d+)/);
  return `127.0.0.1:${port}`;
}

/** Asks the fast backend at `address` how many calls it finished with OK trailers. */
function completedCalls(address: string): Promise<number> {
  const session = connectClient(address);
  return new Promise<number>((resolve, reject) => {
    const stream = session.request({ ":path": COMPLETED_PATH }, { endStream: true });
    stream.on("error", reject);
    stream.on("response", (headers) => {
      const count = Number(headers["bench-completed"]);
      if (Number.isInteger(count)) resolve(count);
      else {reject(
          new Error(`fast backend: bad bench-completed header ${headers["bench-completed"]}`),
        );}
    });
    stream.resume();
  }).finally(() => session.close());
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
      fastLedger: {
        source: "fast backend's count",
        read: async () => new Map([["0", await completedCalls(fastAddress)]]),
      },
      fastRuntime: node ? "node" : "deno",
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
