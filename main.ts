/**
 * `switchyard`: the executable. Parses the command line, loads and validates the config,
 * starts the proxy and turns SIGTERM/SIGINT into a graceful drain.
 *
 * Exit codes: 0 after a clean shutdown, 2 for a bad command line or config, 1 otherwise.
 * @module
 */
import embeddedConfig from "./config.json" with { type: "json" };
import denoJson from "./deno.json" with { type: "json" };
import { registeredPolicies } from "./src/balancer/registry.ts";
import { parseCli, type RunOptions, USAGE, UsageError } from "./src/cli.ts";
import { ConfigError, parseConfig, readConfigJson } from "./src/config/load.ts";
import { readTlsMaterial } from "./src/config/tls_material.ts";
import { runRegister } from "./src/discovery/register.ts";
import { keepServingOnUncaughtErrors } from "./src/log/keep_serving.ts";
import { componentLogger, configureLogging } from "./src/log/logger.ts";
import { Switchyard } from "./src/switchyard.ts";

const log = componentLogger("lifecycle");

/** Applies CLI overrides before validation, so their errors name the config field too. */
function applyOverrides(raw: unknown, options: RunOptions): unknown {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) return raw;
  const config = { ...raw } as Record<string, unknown>;
  if (options.listen !== undefined) config.listen = options.listen;
  if (options.admin !== undefined) {
    config.admin = { ...(config.admin as object | undefined), listen: options.admin };
  }
  if (options.logLevel !== undefined) {
    config.log = { ...(config.log as object | undefined), level: options.logLevel };
  }
  return config;
}

async function run(options: RunOptions): Promise<number> {
  const source = options.config ?? "(embedded config.json)";
  const fileConfig = options.config === undefined
    ? structuredClone(embeddedConfig)
    : await readConfigJson(options.config);
  const raw = applyOverrides(fileConfig, options);
  const config = parseConfig(raw, source, { pickers: registeredPolicies() });
  configureLogging(config.log.level);
  log.info("starting switchyard {version} with {source}", { version: denoJson.version, source });
  const debugHooks = Deno.env.get("SWITCHYARD_DEBUG_HOOKS") === "1";
  const tls = await readTlsMaterial(config, source);
  const proxy = await Switchyard.start(config, tls, { logLevel: config.log.level, debugHooks });
  if (debugHooks) {
    (await import("./src/dataplane/debug_hooks.ts")).installDebugHooks(proxy.dataPlanes);
  }
  keepServingOnUncaughtErrors();

  const stopped = Promise.withResolvers<void>();
  let stopping = false;
  const onSignal = (signal: Deno.Signal) => {
    if (stopping) return;
    stopping = true;
    log.info("received {signal}: shutting down", { signal });
    proxy.shutdown().then(stopped.resolve, stopped.reject);
  };
  Deno.addSignalListener("SIGTERM", () => onSignal("SIGTERM"));
  Deno.addSignalListener("SIGINT", () => onSignal("SIGINT"));
  await stopped.promise;
  return 0;
}

async function main(args: string[]): Promise<number> {
  try {
    const request = parseCli(args);
    switch (request.command) {
      case "help":
        console.log(USAGE);
        return 0;
      case "version":
        console.log(`switchyard ${denoJson.version} (deno ${Deno.version.deno})`);
        return 0;
      case "register":
        configureLogging("info");
        return await runRegister(request);
      case "run":
        return await run(request);
    }
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(`switchyard: ${error.message}\n\n${USAGE}`);
      return 2;
    }
    if (error instanceof ConfigError) {
      configureLogging("info");
      log.error("invalid config {source}: {problems}", {
        source: error.source,
        problems: error.problems.join("; "),
      });
      console.error(error.message);
      return 2;
    }
    log.fatal("fatal: {error}", { error: String((error as Error)?.stack ?? error) });
    console.error(error);
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
