/**
 * Command-line parsing for `switchyard` (node:util `parseArgs`; unknown flags are errors).
 * @module
 */
import { parseArgs } from "node:util";

/** Usage text for `--help`. */
export const USAGE = `switchyard — gRPC edge proxy and load balancer

Usage:
  switchyard [--config FILE] [--listen HOST:PORT] [--admin HOST:PORT] [--log-level LEVEL]
  switchyard register --redis URL --set KEY --addr HOST:PORT [--ttl 15s]
  switchyard --help | --version

Options:
  --config FILE        config.json to load (default: the embedded config.json)
  --listen HOST:PORT   override "listen"
  --admin HOST:PORT    override "admin.listen"
  --log-level LEVEL    debug | info | warning | error (overrides "log.level")
  --help               show this text
  --version            print the version
`;

/** Options of the proxy command. */
export interface RunOptions {
  /** Run the proxy. */
  readonly command: "run";
  /** `--config`: the config file; the embedded `config.json` when absent. */
  readonly config?: string;
  /** `--listen`: overrides `listen`. */
  readonly listen?: string;
  /** `--admin`: overrides `admin.listen`. */
  readonly admin?: string;
  /** `--log-level`: overrides `log.level`. */
  readonly logLevel?: string;
}

/** Options of the `register` command. */
export interface RegisterOptions {
  /** Register a backend in a Redis set until SIGTERM. */
  readonly command: "register";
  /** `--redis`: the Redis URL. */
  readonly redis: string;
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
      set: { type: "string" },
      addr: { type: "string" },
      ttl: { type: "string", default: "15s" },
    },
  });
  for (const name of ["redis", "set", "addr"] as const) {
    if (!values[name]) throw new UsageError(`register: --${name} is required`);
  }
  return {
    command: "register",
    redis: values.redis!,
    set: values.set!,
    addr: values.addr!,
    ttl: values.ttl!,
  };
}

/** Parses `args` (without the program name). Throws {@link UsageError}. */
export function parseCli(args: string[]): CliRequest {
  try {
    if (args[0] === "register") return parseRegister(args.slice(1));
    const { values, positionals } = parseArgs({
      args,
      strict: true,
      allowPositionals: true,
      options: {
        config: { type: "string", short: "c" },
        listen: { type: "string" },
        admin: { type: "string" },
        "log-level": { type: "string" },
        help: { type: "boolean", short: "h" },
        version: { type: "boolean", short: "V" },
      },
    });
    if (positionals.length > 0) {
      throw new UsageError(`unknown command ${JSON.stringify(positionals[0])}`);
    }
    if (values.help) return { command: "help" };
    if (values.version) return { command: "version" };
    return {
      command: "run",
      config: values.config,
      listen: values.listen,
      admin: values.admin,
      logLevel: values["log-level"],
    };
  } catch (error) {
    if (error instanceof UsageError) throw error;
    throw new UsageError((error as Error).message);
  }
}
