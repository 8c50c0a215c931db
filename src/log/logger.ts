/**
 * Structured logging: one JSON line per event on stderr, via LogTape.
 * stdout is left to the access log and to commands whose output is data.
 * @module
 */
import {
  configureSync,
  getLogger,
  jsonLinesFormatter,
  type Logger,
  type LogLevel,
  type LogRecord,
} from "@logtape/logtape";

const encoder = new TextEncoder();

/** Writes synchronously so the last lines before an exit are never lost. */
function stderrJsonSink(record: LogRecord): void {
  Deno.stderr.writeSync(encoder.encode(jsonLinesFormatter(record)));
}

/** Installs the JSON-lines sink for all `switchyard` loggers at the given level. */
export function configureLogging(level: LogLevel): void {
  configureSync({
    reset: true,
    sinks: { stderr: stderrJsonSink },
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
