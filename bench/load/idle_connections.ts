/**
 * Idle HTTP/2 client connections over raw sockets, for measuring what an open connection costs
 * a proxy: each sends the client preface and an empty SETTINGS frame, acknowledges the
 * server's SETTINGS, waits for the acknowledgement of its own, and then sends nothing more
 * until it is closed. No stream is ever opened.
 * @module
 */

const FRAME_HEADER_BYTES = 9;
const SETTINGS = 0x4;
const GOAWAY = 0x7;
const ACK = 0x1;

/** A frame header with an empty payload on stream 0. */
function emptyFrame(type: number, flags: number): Uint8Array {
  const frame = new Uint8Array(FRAME_HEADER_BYTES);
  frame[3] = type;
  frame[4] = flags;
  return frame;
}

const CLIENT_PREFACE = new TextEncoder().encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
const OPENING = new Uint8Array([...CLIENT_PREFACE, ...emptyFrame(SETTINGS, 0)]);
const SETTINGS_ACK = emptyFrame(SETTINGS, ACK);

/** Connections opened at once while opening many. */
const OPEN_BATCH = 50;
/** Bytes read from a socket at a time. */
const READ_BYTES = 1024;

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let offset = 0; offset < bytes.length;) offset += await conn.write(bytes.subarray(offset));
}

/** One client connection: opened, settings exchanged, then left idle until closed. */
class IdleConnection {
  /** Resolves once both SETTINGS are acknowledged; rejects when the target ends it first. */
  readonly ready: Promise<void>;
  /** Why the connection ended, once the target has ended it. */
  endedBy?: string;
  readonly #conn: Deno.Conn;
  #serverSettingsAcked = false;
  #ownSettingsAcked = false;
  #markReady!: () => void;
  #fail!: (error: Error) => void;

  constructor(conn: Deno.Conn) {
    this.#conn = conn;
    this.ready = new Promise((resolve, reject) => {
      this.#markReady = resolve;
      this.#fail = reject;
    });
    this.ready.catch(() => {}); // the opener awaits it; a late failure is only recorded
    this.#readUntilClosed();
  }

  /** Closes the socket; closing it again does nothing. */
  close(): void {
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
  }

  /** Reads frames until the socket closes, answering the server's SETTINGS. */
  async #readUntilClosed(): Promise<void> {
    const chunk = new Uint8Array(READ_BYTES);
    let pending = new Uint8Array(0);
    let why = "closed by the target";
    try {
      await writeAll(this.#conn, OPENING);
      for (;;) {
        const read = await this.#conn.read(chunk);
        if (read === null) break;
        pending = new Uint8Array([...pending, ...chunk.subarray(0, read)]);
        while (pending.length >= FRAME_HEADER_BYTES) {
          const length = (pending[0] << 16) | (pending[1] << 8) | pending[2];
          if (pending.length < FRAME_HEADER_BYTES + length) break;
          await this.#onFrame(pending[3], pending[4]);
          pending = pending.subarray(FRAME_HEADER_BYTES + length);
        }
      }
    } catch (error) {
      why = (error as Error).message; // including our own close() during a read
    }
    this.endedBy ??= why;
    this.#fail(new Error(this.endedBy));
  }

  async #onFrame(type: number, flags: number): Promise<void> {
    if (type === GOAWAY) this.endedBy ??= "GOAWAY from the target";
    if (type !== SETTINGS) return;
    if ((flags & ACK) !== 0) this.#ownSettingsAcked = true;
    else {
      await writeAll(this.#conn, SETTINGS_ACK);
      this.#serverSettingsAcked = true;
    }
    if (this.#ownSettingsAcked && this.#serverSettingsAcked) this.#markReady();
  }
}

/** A set of open idle connections; disposing of it closes them all. */
export interface IdleConnections extends Disposable {
  /** How many the target has ended so far (closed, or sent GOAWAY on). */
  ended(): number;
}

/**
 * Opens `count` idle connections to `address` (`host:port`), `OPEN_BATCH` at a time, and
 * resolves once every one has exchanged SETTINGS. Throws, with all of them closed, when one
 * fails or `timeoutMs` passes first.
 */
export async function openIdleConnections(
  address: string,
  count: number,
  timeoutMs: number,
): Promise<IdleConnections> {
  const separator = address.lastIndexOf(":");
  const hostname = address.slice(0, separator);
  const port = Number(address.slice(separator + 1));
  const connections: IdleConnection[] = [];
  let closed = false;
  const opened: IdleConnections = {
    ended: () => connections.filter((connection) => connection.endedBy !== undefined).length,
    [Symbol.dispose]: () => {
      closed = true;
      for (const connection of connections) connection.close();
    },
  };
  const connect = async (): Promise<void> => {
    const connection = new IdleConnection(await Deno.connect({ hostname, port }));
    connections.push(connection);
    if (closed) connection.close(); // connected after a timeout or another's failure
    await connection.ready;
  };
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`${connections.length} of ${count} connected after ${timeoutMs} ms`)),
      timeoutMs,
    );
  });
  try {
    for (let started = 0; started < count; started += OPEN_BATCH) {
      const batch = Array.from({ length: Math.min(OPEN_BATCH, count - started) }, connect);
      await Promise.race([Promise.all(batch), timeout]);
    }
    return opened;
  } catch (error) {
    opened[Symbol.dispose]();
    throw new Error(`opening idle connections: ${(error as Error).message}`);
  } finally {
    clearTimeout(timer);
  }
}
