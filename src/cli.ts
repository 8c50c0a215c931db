/**
 * Command-line parsing for `switchyard` (node:util `parseArgs`; unknown flags are errors).
 * @module
 */
import { parseArgs } from "node:util";

/** Usage text for `--help`. */
export const USAGE = `switchyard — gRPC edge proxy and load balancer

Usage:
  switchyard [--config FILE] [--listen HOST:PORT] [--admin HOST:PORT] [--log-level LEVEL]
  switchyard check [--config FILE] [--print] [--listen …] [--admin …] [--log-level …]
  switchyard register REDIS --set KEY --addr HOST:PORT [--ttl 15s]
    REDIS: --redis URL | --redis-sentinel HOST:PORT,… --redis-master-name NAME
         | --redis-cluster HOST:PORT,… | --config FILE (its "redis" section, credentials too)
  switchyard --help | --version

Commands:
  (none)               run the proxy
  check                validate the config, its PEM files and paths as a start would, without
                       listening or connecting; exit 0 with a summary, or 2 listing every problem
  register             keep a backend in a Redis set until SIGTERM

Options:
  --config FILE        config.json to load (default: the embedded config.json)
  --listen HOST:PORT   override "listen"
  --admin HOST:PORT    override "admin.listen"
  --log-level LEVEL    debug | info | warning | error (overrides "log.level")
  --print              check: print the effective config as JSON, secrets redacted
  --help               show this text
  --version            print the version

Config strings may name environment variables: \${NAME}, or \${NAME:-default} when NAME is
unset or empty; write $\${ for a literal "\${".
`;

/** Where the config comes from, and the command-line overrides applied to it. */
export interface ConfigOptions {
  /** `--config`: the config file; the embedded `config.json` when absent. */
  readonly config?: string;
  /** `--listen`: overrides `listen`. */
  readonly listen?: string;
  /** `--admin`: overrides `admin.listen`. */
  readonly admin?: string;
  /** `--log-level`: overrides `log.level`. */
  readonly logLevel?: string;
}

/** Options of the proxy command. */
export interface RunOptions extends ConfigOptions {
  /** Run the proxy. */
  readonly command: "run";
}

/** Options of the `check` command. */
export interface CheckOptions extends ConfigOptions {
  /** Validate the config as a start would, without listening or connecting. */
  readonly command: "check";
  /** `--print`: print the effective config, secrets redacted. */
  readonly print: boolean;
}

/** Options of the `register` command. */
export interface RegisterOptions {
  /** Register a backend in a Redis set until SIGTERM. */
  readonly command: "register";
  /** `--redis`: the Redis URL. */
  readonly redis?: string;
  /** `--redis-sentinel`: comma-separated sentinel `host:port`s. */
  readonly redisSentinel?: string;
  /** `--redis-master-name`: the master's name in Sentinel. */
  readonly redisMasterName?: string;
  /** `--redis-cluster`: comma-separated Redis Cluster node `host:port`s. */
  readonly redisCluster?: string;
  /** `--config`: a proxy config file whose `redis` section to use. */
  readonly config?: string;
  /** `--set`: the set key. */
  readonly set: string;
  /** `--addr`: the member's `host:port`. */
  readonly addr: string;
  /** `--ttl`: the heartbeat's time to live, e.g. `15s`. */
  readonly ttl: string;
}

/** What the command line asks for. */
export type CliRequest =
  | RunOptions
  | CheckOptions
  | RegisterOptions
  | { readonly command: "help" }
  | { readonly command: "version" };

/** A command-line mistake; `main` prints it with the usage and exits 2. */
export class UsageError extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

function parseRegister(args: string[]): RegisterOptions {
  const { values } = parseArgs({
    args,
    strict: true,
    allowPositionals: false,
    options: {
      redis: { type: "string" },
      "redis-sentinel": { type: "string" },
      "redis-master-name": { type: "string" },
      "redis-cluster": { type: "string" },
      config: { type: "string", short: "c" },
      set: { type: "string" },
      addr: { type: "string" },
      ttl: { type: "string", default: "15s" },
    },
  });
  for (const name of ["set", "addr"] as const) {
    if (!values[name]) throw new UsageError(`register: --${name} is required`);
  }
  const sources = (["redis", "redis-sentinel", "redis-cluster", "config"] as const)
    .filter((name) => values[name] !== undefined);
  if (sources.length !== 1) {
    throw new UsageError(
      "register: give exactly one of --redis, --redis-sentinel (with --redis-master-name), " +
        "--redis-cluster or --config",
    );
  }
  if ((values["redis-sentinel"] === undefined) !== (values["redis-master-name"] === undefined)) {
    throw new UsageError("register: --redis-sentinel and --redis-master-name go together");
  }
  return {
    command: "register",
    redis: values.redis,
    redisSentinel: values["redis-sentinel"],
    redisMasterName: values["redis-master-name"],
    redisCluster: values["redis-cluster"],
    config: values.config,
    set: values.set!,
    addr: values.addr!,
    ttl: values.ttl!,
  };
}

/** The flags of the commands that load a config: the run command and `check`. */
const CONFIG_FLAGS = {
  config: { type: "string", short: "c" },
  listen: { type: "string" },
  admin: { type: "string" },
  "log-level": { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

function configOptions(
  values: { config?: string; listen?: string; admin?: string; "log-level"?: string },
): ConfigOptions {
  return {
    config: values.config,
    listen: values.listen,
    admin: values.admin,
    logLevel: values["log-level"],
  };
}

function parseCheck(args: string[]): CheckOptions | { readonly command: "help" } {
  const { values } = parseArgs({
    args,
    strict: true,
    allowPositionals: false,
    options: { ...CONFIG_FLAGS, print: { type: "boolean" } },
  });
  if (values.help) return { command: "help" };
  return { command: "check", print: values.print ?? false, ...configOptions(values) };
}

/** Parses `args` (without the program name). Throws {@link UsageError}. */
export function parseCli(args: string[]): CliRequest {
  try {
    if (args[0] === "register") return parseRegister(args.slice(1));
    if (args[0] === "check") return parseCheck(args.slice(1));
    const { values, positionals } = parseArgs({
      args,
      strict: true,
      allowPositionals: true,
      options: { ...CONFIG_FLAGS, version: { type: "boolean", short: "V" } },
    });
    if (positionals.length > 0) {
      throw new UsageError(`unknown command ${JSON.stringify(positionals[0])}`);
    }
    if (values.help) return { command: "help" };
    if (values.version) return { command: "version" };
    return { command: "run", ...configOptions(values) };
  } catch (error) {
    if (error instanceof UsageError) throw error;
    throw new UsageError((error as Error).message);
  }
}
