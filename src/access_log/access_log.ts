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
/** How long shutdown waits for a sink that does not take the last lines. */
const CLOSE_TIMEOUT_MS = 1_000;
const encoder = new TextEncoder();

/**
 * Where the access log writes: stdout or an append-only file, through their own `write`,
 * which may take part of a buffer. (Not through `FsFile.writable`: on Deno 2.9.6 its writes to
 * a file opened for appending resolve but reach the file only when it closes.)
 */
interface Sink {
  readonly target: { write(bytes: Uint8Array): Promise<number>; close?(): void };
  readonly closeWhenDone: boolean;
  /**
   * Lines held for a sink that does not keep up (a full pipe, a stalled disk). Past this
   * the log drops lines, counting them, rather than grow the proxy's memory without bound.
   */
  readonly maxBufferedBytes: number;
}

/** An open access log. */
export class AccessLog {
  /** Logs one finished call; register it with the proxy's call observers. */
  readonly observe: CallObserver;
  readonly #target: Sink["target"];
  readonly #closeWhenDone: boolean;
  readonly #maxBufferedBytes: number;
  readonly #timer: ReturnType<typeof setInterval>;
  #pending: string[] = [];
  #pendingBytes = 0;
  /** Bytes handed to the sink and not yet written. */
  #writingBytes = 0;
  /** Lines dropped since the sink last kept up. */
  #dropped = 0;
  #writing: Promise<void> = Promise.resolve();

  private constructor(sink: Sink) {
    this.#target = sink.target;
    this.#closeWhenDone = sink.closeWhenDone;
    this.#maxBufferedBytes = sink.maxBufferedBytes;
    this.#timer = setInterval(() => this.flush(), FLUSH_INTERVAL_MS);
    // The timer only batches; it must not keep a finished process alive.
    Deno.unrefTimer(this.#timer);
    this.observe = (record) => {
      if (this.#full()) return;
      const line = formatAccessLogLine(record);
      this.#pending.push(line);
      this.#pendingBytes += line.length;
      if (this.#pendingBytes >= FLUSH_AT_BYTES) this.flush();
    };
  }

  /**
   * Opens the log at `path` (`"stdout"` or a file, created and appended to), holding at most
   * `maxBufferedBytes` of lines the sink has not taken yet.
   */
  static async open(path: string, maxBufferedBytes: number): Promise<AccessLog> {
    if (path === STDOUT_PATH) {
      return new AccessLog({ target: Deno.stdout, closeWhenDone: false, maxBufferedBytes });
    }
    const file = await Deno.open(path, { write: true, append: true, create: true });
    return new AccessLog({ target: file, closeWhenDone: true, maxBufferedBytes });
  }

  /**
   * An access log whose batches go to `forward` instead of a sink of its own: a data-plane
   * worker's, when the workers share stdout (the main thread writes them all, so no two
   * workers' writes interleave in the pipe).
   */
  static forwarding(forward: (batch: Uint8Array) => void, maxBufferedBytes: number): AccessLog {
    const target = {
      write(bytes: Uint8Array): Promise<number> {
        forward(bytes);
        return Promise.resolve(bytes.length);
      },
    };
    return new AccessLog({ target, closeWhenDone: false, maxBufferedBytes });
  }

  /** Writes a batch of whole lines that a worker formatted (see {@link forwarding}). */
  writeBatch(batch: Uint8Array): void {
    if (!this.#full()) this.#send(batch);
  }

  /** Writes everything buffered so far; resolves once it is written. */
  flush(): Promise<void> {
    if (this.#pending.length > 0) {
      const chunk = encoder.encode(this.#pending.join(""));
      this.#pending = [];
      this.#pendingBytes = 0;
      this.#send(chunk);
    }
    return this.#writing;
  }

  /** True, counting the line as dropped, while the sink holds `maxBufferedBytes`. */
  #full(): boolean {
    if (this.#pendingBytes + this.#writingBytes < this.#maxBufferedBytes) return false;
    if (this.#dropped++ === 0) {
      log.warn("access log sink is not keeping up: dropping lines past {limit} bytes", {
        limit: this.#maxBufferedBytes,
      });
    }
    return true;
  }

  #send(chunk: Uint8Array): void {
    this.#writingBytes += chunk.length;
    // Chained so batches reach the sink in order even when a write is slow.
    this.#writing = this.#writing
      .then(() => this.#writeAll(chunk))
      .catch((error) => log.error("access log write failed: {error}", { error }))
      .finally(() => {
        this.#writingBytes -= chunk.length;
        if (this.#dropped > 0 && this.#writingBytes === 0) {
          log.warn("access log sink caught up; {dropped} lines were dropped", {
            dropped: this.#dropped,
          });
          this.#dropped = 0;
        }
      });
  }

  /**
   * Flushes and stops; closes the file (never stdout). A sink that does not take the last
   * lines within a second does not hold up shutdown.
   */
  async close(): Promise<void> {
    clearInterval(this.#timer);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const stalled = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(true), CLOSE_TIMEOUT_MS);
    });
    const done = this.flush().then(() => false);
    const gaveUp = await Promise.race([done, stalled]);
    clearTimeout(timer);
    if (gaveUp) {
      log.warn("access log sink did not take the last lines in time; closing anyway");
      return;
    }
    if (this.#closeWhenDone) this.#target.close?.();
  }

  /** Writes all of `chunk`: a write may take only part of it (a pipe with little room). */
  async #writeAll(chunk: Uint8Array): Promise<void> {
    for (let written = 0; written < chunk.length;) {
      written += await this.#target.write(chunk.subarray(written));
    }
  }
}
