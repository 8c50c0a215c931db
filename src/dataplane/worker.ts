/**
 * The entry point of a data-plane worker thread: builds a {@link DataPlane} from the init
 * message, then serves the control plane's requests until it is terminated. Requests that
 * arrive while the data plane is being built wait, and are answered in order before the
 * worker reports that it listens, so it never serves with snapshots older than the latest.
 * @module
 */
/// <reference lib="deno.worker" />
import { keepServingOnUncaughtErrors } from "../log/keep_serving.ts";
import { configureLogging } from "../log/logger.ts";
import { DataPlane } from "./data_plane.ts";
import type { FromWorker, RequestMessage, Requests, ToWorker } from "./protocol.ts";

/** Batches of passive signals wait this long: one message per batch, not one per call. */
const OUTCOME_BATCH_MS = 10;

let plane: DataPlane | undefined;
let debugHooks = false;
const waiting: RequestMessage[] = [];

function send(message: FromWorker): void {
  self.postMessage(message);
}

async function answer(plane: DataPlane, request: RequestMessage) {
  switch (request.name) {
    case "apply":
      return plane.apply(request.args as Requests["apply"]["args"]);
    case "reconfigure":
      return await plane.reconfigure(request.args as Requests["reconfigure"]["args"]);
    case "stats":
      return plane.stats();
    case "usable":
      return plane.usableClusters();
    case "metrics":
      return await plane.metrics();
    case "reopenAccessLog":
      return await plane.reopenAccessLog();
    case "drain":
      return await plane.drain(request.args as Requests["drain"]["args"]);
    case "close":
      return await plane.close();
    case "ping":
      return;
    case "crash":
      // A silent death, the case only the watchdog can see; ignored outside tests.
      if (debugHooks) Deno.exit(70);
      return;
  }
}

async function serve(request: RequestMessage): Promise<void> {
  const { id } = request;
  try {
    send({ type: "response", id, result: await answer(plane!, request) });
  } catch (error) {
    send({ type: "response", id, error: String(error) });
  }
}

self.onmessage = async (event: MessageEvent<ToWorker>) => {
  const message = event.data;
  if (message.type === "affinity") {
    // Before the data plane exists there is no cache to feed and no call waiting.
    plane?.affinity(message.message);
    return;
  }
  if (message.type === "request") {
    if (plane) void serve(message);
    else waiting.push(message);
    return;
  }
  configureLogging(message.logLevel, message.init.worker);
  keepServingOnUncaughtErrors();
  debugHooks = message.debugHooks;
  try {
    plane = await DataPlane.start(
      message.init,
      { deliver: (batch) => send({ type: "outcomes", batch }), delayMs: OUTCOME_BATCH_MS },
      // Transferred, not copied: a batch is a TextEncoder's fresh buffer, never shared.
      (batch) => self.postMessage({ type: "accessLog", batch }, [batch.buffer as ArrayBuffer]),
      (affinity) => send({ type: "affinity", message: affinity }),
    );
  } catch (error) {
    send({ type: "failed", error: String(error) });
    return;
  }
  // Synchronously, before any connection is served: snapshots published during the start.
  for (const request of waiting.splice(0)) void serve(request);
  send({ type: "listening" });
};
