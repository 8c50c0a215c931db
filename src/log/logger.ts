/**
 * Structured logging: one JSON line per event on stderr, via LogTape.
 * stdout is left to the access log and to commands whose output is data.
 * @module
 */
import {
  configureSync,
  getLogger,
  type Logger,
  type LogLevel,
  type LogRecord,
} from "@logtape/logtape";

export type { LogLevel } from "@logtape/logtape";

const encoder = new TextEncoder();

const LEVEL_NAMES: Readonly<Record<LogLevel, string>> = {
  trace: "TRACE",
  debug: "DEBUG",
  info: "INFO",
  warning: "WARN",
  error: "ERROR",
  fatal: "FATAL",
};

/**
 * Renders the message with string values as they are. LogTape's own JSON formatter quotes
 * them (`backend "127.0.0.1:50051" joined "echo"`), which reads badly; the structured
 * values stay available unchanged under `properties`.
 */
function renderMessage(parts: readonly unknown[]): string {
  let message = "";
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i];
    message += i % 2 === 0 || typeof part === "string" ? String(part) : JSON.stringify(part);
  }
  return message;
}

/**
 * A sink that writes one JSON line per record, with `worker` when a data-plane worker logs.
 * Writes synchronously so the last lines before an exit are never lost.
 */
function stderrJsonSink(worker: number | undefined): (record: LogRecord) => void {
  return (record) => {
    const line = JSON.stringify({
      "@timestamp": new Date(record.timestamp).toISOString(),
      level: LEVEL_NAMES[record.level],
      message: renderMessage(record.message),
      logger: record.category.join("."),
      worker,
      properties: record.properties,
    });
    Deno.stderr.writeSync(encoder.encode(line + "\n"));
  };
}

/**
 * Installs the JSON-lines sink for all `switchyard` loggers at the given level; `worker`
 * marks the lines of a data-plane worker thread.
 */
export function configureLogging(level: LogLevel, worker?: number): void {
  configureSync({
    reset: true,
    sinks: { stderr: stderrJsonSink(worker) },
    loggers: [
      { category: ["switchyard"], lowestLevel: level, sinks: ["stderr"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["stderr"] },
    ],
  });
}

/** Returns the logger for one component, e.g. `componentLogger("proxy")`. */
export function componentLogger(component: string): Logger {
  return getLogger(["switchyard", component]);
}
