/**
 * `switchyard`: the executable. Parses the command line, loads and validates the config,
 * starts the proxy and turns SIGTERM/SIGINT into a graceful drain.
 *
 * Exit codes: 0 after a clean shutdown, 2 for a bad command line or config, 1 otherwise.
 * @module
 */
import embeddedConfig from "./config.json" with { type: "json" };
import { VERSION } from "./src/version.ts";
import { registeredPolicies } from "./src/balancer/registry.ts";
import { checkStartable, configSummary, printableConfig } from "./src/check.ts";
import {
  type CheckOptions,
  type ConfigOptions,
  parseCli,
  type RunOptions,
  USAGE,
  UsageError,
} from "./src/cli.ts";
import { ConfigError, parseConfig, readConfigJson } from "./src/config/load.ts";
import type { LoadedConfig } from "./src/config/reload.ts";
import { readTlsMaterial } from "./src/config/tls_material.ts";
import { runRegister } from "./src/discovery/register.ts";
import { keepServingOnUncaughtErrors } from "./src/log/keep_serving.ts";
import { componentLogger, configureLogging } from "./src/log/logger.ts";
import { Switchyard } from "./src/switchyard.ts";

const log = componentLogger("lifecycle");

/** Applies CLI overrides before validation, so their errors name the config field too. */
function applyOverrides(raw: unknown, options: ConfigOptions): unknown {
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

/**
 * Reads, overrides and validates the config, and reads the PEM files it names, as at start
 * and at every reload. Throws {@link ConfigError}.
 */
async function load(options: ConfigOptions): Promise<LoadedConfig> {
  const source = options.config ?? "(embedded config.json)";
  const fileConfig = options.config === undefined
    ? structuredClone(embeddedConfig)
    : await readConfigJson(options.config);
  const warnings: string[] = [];
  const config = parseConfig(
    applyOverrides(fileConfig, options),
    source,
    { pickers: registeredPolicies() },
    warnings,
  );
  return { config, tls: await readTlsMaterial(config, source), warnings };
}

async function run(options: RunOptions): Promise<number> {
  const { config, tls, warnings } = await load(options);
  configureLogging(config.log.level);
  const source = options.config ?? "(embedded config.json)";
  log.info("starting switchyard {version} with {source}", { version: VERSION, source });
  for (const warning of warnings) log.warn("config: {warning}", { warning });
  const debugHooks = Deno.env.get("SWITCHYARD_DEBUG_HOOKS") === "1";
  // SIGHUP reloads, as for NGINX and Caddy; its default action would end the process, so it
  // is caught from the start (a reload needs the running proxy; before that it is ignored).
  let running: Switchyard | undefined = undefined;
  Deno.addSignalListener("SIGHUP", () => {
    if (running === undefined) {
      log.warn("received SIGHUP while starting: ignored");
      return;
    }
    log.info("received SIGHUP: reloading {source}", { source });
    void running.reload();
  });
  // SIGUSR1 reopens the access-log file (logrotate's postrotate); its default action would
  // end the process too. The data planes log the outcome.
  Deno.addSignalListener("SIGUSR1", () => {
    if (running === undefined) {
      log.warn("received SIGUSR1 while starting: ignored");
      return;
    }
    void running.dataPlanes.reopenAccessLog();
  });
  const proxy = await Switchyard.start(config, tls, {
    logLevel: config.log.level,
    debugHooks,
    reread: options.config === undefined ? undefined : () => load(options),
    configPath: options.config,
  });
  if (debugHooks) {
    (await import("./src/dataplane/debug_hooks.ts")).installDebugHooks(proxy.dataPlanes);
  }
  keepServingOnUncaughtErrors();
  running = proxy;

  const stopped = Promise.withResolvers<void>();
  let stopping = false;
  const onSignal = (signal: Deno.Signal) => {
    if (stopping) {
      // A second signal during the drain delay: go on to GOAWAY at once.
      proxy.skipDrainDelay();
      return;
    }
    stopping = true;
    log.info("received {signal}: shutting down", { signal });
    proxy.shutdown().then(stopped.resolve, stopped.reject);
  };
  Deno.addSignalListener("SIGTERM", () => onSignal("SIGTERM"));
  Deno.addSignalListener("SIGINT", () => onSignal("SIGINT"));
  await stopped.promise;
  return 0;
}

/**
 * `switchyard check`: loads the config as a start would, and checks what else a start needs,
 * without listening or connecting. 0 with a summary line, or 2 with every problem on stderr.
 */
async function check(options: CheckOptions): Promise<number> {
  const source = options.config ?? "(embedded config.json)";
  try {
    const { config, warnings } = await load(options);
    await checkStartable(config, source);
    for (const warning of warnings) console.error(`warning: ${warning}`);
    if (!options.print) {
      console.log(configSummary(config, source));
      return 0;
    }
    // stdout carries the config alone, for jq and diff.
    console.log(printableConfig(config, { pickers: registeredPolicies() }));
    console.error(configSummary(config, source));
    return 0;
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(error.message);
    return 2;
  }
}

async function main(args: string[]): Promise<number> {
  try {
    const request = parseCli(args);
    switch (request.command) {
      case "help":
        console.log(USAGE);
        return 0;
      case "version":
        console.log(`switchyard ${VERSION} (deno ${Deno.version.deno})`);
        return 0;
      case "register":
        configureLogging("info");
        return await runRegister(request);
      case "run":
        return await run(request);
      case "check":
        return await check(request);
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
