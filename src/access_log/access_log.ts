/**
 * The access log: one JSON line per finished call, to stdout or an append-only file.
 * Lines are buffered and written in batches so the data path never waits on disk; the
 * buffer flushes on a short timer, when it grows large, and on {@link AccessLog.close}.
 * A file is opened again by {@link AccessLog.reopen} (SIGUSR1, after logrotate moved it).
 * @module
 */
import { componentLogger } from "../log/logger.ts";
import type { CallObserver } from "../proxy/call_record.ts";
import { type AccessLogField, accessLogFormatter } from "./format.ts";

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
  readonly target: SinkTarget;
  readonly closeWhenDone: boolean;
  /** The file's path, for {@link AccessLog.reopen}; `undefined` for stdout and forwarding. */
  readonly path?: string;
  /**
   * Lines held for a sink that does not keep up (a full pipe, a stalled disk). Past this
   * the log drops lines, counting them, rather than grow the proxy's memory without bound.
   */
  readonly maxBufferedBytes: number;
  /** The fields of each line; every field when `undefined`. */
  readonly fields: readonly AccessLogField[] | undefined;
}

/** What a {@link Sink} writes to: `Deno.stdout`, a file, or a forwarder. */
interface SinkTarget {
  write(bytes: Uint8Array): Promise<number>;
  close?(): void;
}

/** Opens `path` for appending, creating it. */
function openAppending(path: string): Promise<Deno.FsFile> {
  return Deno.open(path, { write: true, append: true, create: true });
}

/** Newlines in `bytes`: the lines of a batch of whole lines. */
function countLines(bytes: Uint8Array): number {
  let lines = 0;
  for (let i = 0; i < bytes.length; i++) if (bytes[i] === 0x0a) lines++;
  return lines;
}

/** An open access log. */
export class AccessLog {
  /** Logs one finished call; register it with the proxy's call observers. */
  readonly observe: CallObserver;
  #target: SinkTarget;
  readonly #closeWhenDone: boolean;
  readonly #path: string | undefined;
  readonly #maxBufferedBytes: number;
  readonly #timer: ReturnType<typeof setInterval>;
  #pending: string[] = [];
  /**
   * Characters of `#pending`: its bytes while lines are ASCII, as they nearly always are.
   * Counting bytes exactly would mean encoding every line; a non-ASCII character (a decoded
   * grpc-message, a Latin-1 header byte) counts once until its batch is encoded.
   */
  #pendingBytes = 0;
  /** Bytes handed to the sink and not yet written. */
  #writingBytes = 0;
  /** Lines dropped since the sink last kept up. */
  #dropped = 0;
  /** Lines dropped over the log's life. */
  #droppedTotal = 0;
  #closed = false;
  #writing: Promise<void> = Promise.resolve();

  private constructor(sink: Sink) {
    this.#target = sink.target;
    this.#closeWhenDone = sink.closeWhenDone;
    this.#path = sink.path;
    this.#maxBufferedBytes = sink.maxBufferedBytes;
    this.#timer = setInterval(() => this.flush(), FLUSH_INTERVAL_MS);
    // The timer only batches; it must not keep a finished process alive.
    Deno.unrefTimer(this.#timer);
    const format = accessLogFormatter(sink.fields);
    this.observe = (record) => {
      // A full buffer drops the line before formatting it: a stalled sink costs calls nothing.
      if (this.#full(0)) return;
      const line = format(record);
      // The one line that would cross the limit is dropped too: the limit is never exceeded.
      if (this.#full(line.length)) return;
      this.#pending.push(line);
      this.#pendingBytes += line.length;
      if (this.#pendingBytes >= FLUSH_AT_BYTES) this.flush();
    };
  }

  /**
   * Opens the log at `path` (`"stdout"` or a file, created and appended to), holding at most
   * `maxBufferedBytes` of lines the sink has not taken yet; its lines carry `fields` (every
   * field when not given).
   */
  static async open(
    path: string,
    maxBufferedBytes: number,
    fields?: readonly AccessLogField[],
  ): Promise<AccessLog> {
    if (path === STDOUT_PATH) {
      return new AccessLog({ target: Deno.stdout, closeWhenDone: false, maxBufferedBytes, fields });
    }
    const file = await openAppending(path);
    return new AccessLog({ target: file, closeWhenDone: true, path, maxBufferedBytes, fields });
  }

  /**
   * An access log whose batches go to `forward` instead of a sink of its own: a data-plane
   * worker's, when the workers share stdout (the main thread writes them all, so no two
   * workers' writes interleave in the pipe). `forward` may return a promise: the batch
   * counts as buffered until it settles (tests use this to stand for a sink that stalls).
   */
  static forwarding(
    forward: (batch: Uint8Array) => void | Promise<void>,
    maxBufferedBytes: number,
    fields?: readonly AccessLogField[],
  ): AccessLog {
    const target = {
      async write(bytes: Uint8Array): Promise<number> {
        // Read first: `forward` may transfer the buffer, which empties `bytes`.
        const length = bytes.length;
        await forward(bytes);
        return length;
      },
    };
    return new AccessLog({ target, closeWhenDone: false, maxBufferedBytes, fields });
  }

  /**
   * Bytes held for the sink: lines not yet handed to it, and batches it has not finished
   * writing. Never more than `maxBufferedBytes` (for lines not yet encoded, characters count
   * as bytes: see `#pendingBytes`).
   */
  get bufferedBytes(): number {
    return this.#pendingBytes + this.#writingBytes;
  }

  /** Lines dropped because the sink did not keep up, over the log's life. */
  get dropped(): number {
    return this.#droppedTotal;
  }

  /** Writes a batch of whole lines that a worker formatted (see {@link forwarding}). */
  writeBatch(batch: Uint8Array): void {
    if (this.#full(batch.length, batch)) return;
    this.#send(batch);
  }

  /**
   * Opens the file again at its path, creating it, after writing what was buffered to the
   * old one (logrotate moved it away and waits for SIGUSR1). Stdout and forwarding logs have
   * nothing to reopen. Rejects, still writing to the old file, when the path cannot be opened.
   */
  reopen(): Promise<void> {
    const path = this.#path;
    if (path === undefined) return Promise.resolve();
    this.flush();
    // In the write chain: batches before it reach the old file, batches after it the new one.
    const reopened = this.#writing.then(async () => {
      if (this.#closed) return;
      const file = await openAppending(path);
      if (this.#closed) {
        file.close();
        return;
      }
      const old = this.#target;
      this.#target = file;
      old.close?.();
    });
    this.#writing = reopened.catch(() => {});
    return reopened;
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

  /**
   * True, counting the lines as dropped, when `bytes` more would hold more than
   * `maxBufferedBytes` for the sink (or, with 0, when it holds that much already). `batch`
   * is a batch of lines to count; without it, one line.
   */
  #full(bytes: number, batch?: Uint8Array): boolean {
    const held = this.#pendingBytes + this.#writingBytes;
    if (bytes === 0 ? held < this.#maxBufferedBytes : held + bytes <= this.#maxBufferedBytes) {
      return false;
    }
    const lines = batch === undefined ? 1 : countLines(batch);
    this.#droppedTotal += lines;
    const first = this.#dropped === 0;
    this.#dropped += lines;
    if (first) {
      log.warn("access log sink is not keeping up: dropping lines past {limit} bytes", {
        limit: this.#maxBufferedBytes,
      });
    }
    return true;
  }

  #send(chunk: Uint8Array): void {
    // Kept aside: a forwarding log transfers the chunk's buffer, which leaves it empty.
    const bytes = chunk.length;
    this.#writingBytes += bytes;
    // Chained so batches reach the sink in order even when a write is slow.
    this.#writing = this.#writing
      .then(() => this.#writeAll(chunk))
      .catch((error) => log.error("access log write failed: {error}", { error }))
      .finally(() => {
        this.#writingBytes -= bytes;
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
    this.#closed = true;
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
