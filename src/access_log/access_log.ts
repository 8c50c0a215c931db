/**
 * The access log: one JSON line per finished call, to stdout or an append-only file.
 * Lines are buffered and written in batches so the data path never waits on disk; the
 * buffer flushes on a short timer, when it grows large, and on {@link AccessLog.close}.
 * @module
 */
import { componentLogger } from "../log/logger.ts";
import type { CallObserver } from "../proxy/call_record.ts";
import { formatAccessLogLine } from "./format.ts";

const log = componentLogger("access_log");

/** `accessLog.path` value meaning the process's stdout. */
export const STDOUT_PATH = "stdout";

const FLUSH_INTERVAL_MS = 200;
const FLUSH_AT_BYTES = 64 * 1024;
const encoder = new TextEncoder();

/** A writable sink the access log batches into. */
interface Sink {
  readonly writable: WritableStream<Uint8Array>;
  readonly closeWhenDone: boolean;
}

/** An open access log. */
export class AccessLog {
  /** Logs one finished call; register it with the proxy's call observers. */
  readonly observe: CallObserver;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #closeWhenDone: boolean;
  readonly #timer: ReturnType<typeof setInterval>;
  #pending: string[] = [];
  #pendingBytes = 0;
  #writing: Promise<void> = Promise.resolve();

  private constructor(sink: Sink) {
    this.#writer = sink.writable.getWriter();
    this.#closeWhenDone = sink.closeWhenDone;
    this.#timer = setInterval(() => this.flush(), FLUSH_INTERVAL_MS);
    // The timer only batches; it must not keep a finished process alive.
    Deno.unrefTimer(this.#timer);
    this.observe = (record) => {
      const line = formatAccessLogLine(record);
      this.#pending.push(line);
      this.#pendingBytes += line.length;
      if (this.#pendingBytes >= FLUSH_AT_BYTES) this.flush();
    };
  }

  /** Opens the log at `path` (`"stdout"` or a file, created and appended to). */
  static async open(path: string): Promise<AccessLog> {
    if (path === STDOUT_PATH) {
      return new AccessLog({ writable: Deno.stdout.writable, closeWhenDone: false });
    }
    const file = await Deno.open(path, { write: true, append: true, create: true });
    return new AccessLog({ writable: file.writable, closeWhenDone: true });
  }

  /** Writes everything buffered so far; resolves once it is written. */
  flush(): Promise<void> {
    if (this.#pending.length > 0) {
      const chunk = encoder.encode(this.#pending.join(""));
      this.#pending = [];
      this.#pendingBytes = 0;
      // Chained so batches reach the sink in order even when a write is slow.
      this.#writing = this.#writing
        .then(() => this.#writer.write(chunk))
        .catch((error) => log.error("access log write failed: {error}", { error }));
    }
    return this.#writing;
  }

  /** Flushes and stops; closes the file (never stdout). */
  async close(): Promise<void> {
    clearInterval(this.#timer);
    await this.flush();
    if (this.#closeWhenDone) await this.#writer.close();
    else this.#writer.releaseLock();
  }
}
