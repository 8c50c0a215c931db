/**
 * The entry point of a data-plane worker thread: builds a {@link DataPlane} from the init
 * message, then serves the control plane's requests until it is terminated.
 * @module
 */
/// <reference lib="deno.worker" />
import { keepServingOnUncaughtErrors } from "../log/keep_serving.ts";
import { configureLogging } from "../log/logger.ts";
import { DataPlane } from "./data_plane.ts";
import type { FromWorker, InitMessage, RequestMessage, Requests } from "./protocol.ts";

/** Batches of passive signals wait this long: one message per batch, not one per call. */
const OUTCOME_BATCH_MS = 10;

function send(message: FromWorker): void {
  self.postMessage(message);
}

async function answer(plane: DataPlane, request: RequestMessage, debugHooks: boolean) {
  switch (request.name) {
    case "apply":
      return plane.apply(request.args as Requests["apply"]["args"]);
    case "stats":
      return plane.stats();
    case "metrics":
      return await plane.metrics();
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

async function start({ init, logLevel, debugHooks }: InitMessage): Promise<void> {
  configureLogging(logLevel, init.worker);
  keepServingOnUncaughtErrors();
  let plane: DataPlane;
  try {
    plane = await DataPlane.start(init, {
      deliver: (batch) => send({ type: "outcomes", batch }),
      delayMs: OUTCOME_BATCH_MS,
    });
  } catch (error) {
    send({ type: "failed", error: String(error) });
    return;
  }
  self.onmessage = async (event: MessageEvent<RequestMessage>) => {
    const { id } = event.data;
    try {
      send({ type: "response", id, result: await answer(plane, event.data, debugHooks) });
    } catch (error) {
      send({ type: "response", id, error: String(error) });
    }
  };
  send({ type: "listening" });
}

self.onmessage = (event: MessageEvent<InitMessage>) => void start(event.data);
