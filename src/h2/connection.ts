/**
 * One HTTP/2 connection (RFC 9113) over a Deno socket, in either role: the server side of a
 * client connection, or the client side of a backend connection.
 *
 * Reading: one read loop per connection into a buffer that grows only while frames need it.
 * Frames are parsed in place; DATA payloads reach the relay as views into that buffer.
 * Writing: frames from every stream are serialized into one buffer and written once per
 * microtask checkpoint, so a turn's frames leave in one syscall. Flow control credits a
 * stream's window only when the relay says its data was written on (`consume`), so at most
 * about one stream window is buffered per stream. The connection window of a client
 * connection is credited the same way, which bounds what one client can make the proxy
 * hold; a backend connection's is credited on receipt, because many clients' calls share
 * it and one client that stops reading must not stall the others (HTTP/2 flow control is
 * hop by hop, RFC 9113 §5.2).
 * @module
 */
import { ByteBuffer } from "./bytes.ts";
import {
  CLIENT_PREFACE,
  DEFAULT_WINDOW,
  ErrorCode,
  errorCodeName,
  Flag,
  FRAME_HEADER_BYTES,
  FrameType,
  MAX_MAX_FRAME_SIZE,
  MAX_STREAM_ID,
  MAX_WINDOW,
  MIN_MAX_FRAME_SIZE,
  readUint32,
  Setting,
  writeFrameHeader,
  writeGoaway,
  writePing,
  writeRstStream,
  writeSettings,
  writeWindowUpdate,
} from "./frame.ts";
import { frameCountIndex, goawayCounts, resetCounts } from "./frame_counts.ts";
import { requestHeadersProblem, responseHeadersProblem, trailersProblem } from "./header_rules.ts";
import { HpackDecoder, HpackError } from "./hpack/decoder.ts";
import { HpackEncoder } from "./hpack/encoder.ts";
import { H2Stream, type StreamOwner } from "./stream.ts";
import { type TimerEntry, timers } from "../timer/timer_queue.ts";
import {
  CloseCause,
  type HeaderList,
  headerValue,
  type StreamHandler,
} from "../transport/stream.ts";

/** Limits and settings of one connection; see `http2` in the config for their meaning. */
export interface ConnectionOptions {
  /** Server side of a client connection, or client side of a backend connection. */
  readonly role: "server" | "client";
  /** SETTINGS_MAX_CONCURRENT_STREAMS we advertise (server side). */
  readonly maxConcurrentStreams: number;
  /** SETTINGS_INITIAL_WINDOW_SIZE we advertise. */
  readonly initialStreamWindowSize: number;
  /** The connection receive window we offer. */
  readonly initialConnectionWindowSize: number;
  /** SETTINGS_MAX_FRAME_SIZE we advertise. */
  readonly maxFrameSize: number;
  /** SETTINGS_MAX_HEADER_LIST_SIZE we advertise and enforce. */
  readonly maxHeaderListSize: number;
  /** Encoded bytes of one header block (HEADERS + CONTINUATION). */
  readonly maxHeaderBlockSize: number;
  /** CONTINUATION frames after one HEADERS. */
  readonly maxContinuationFrames: number;
  /** Client resets before a response within {@link prematureResetWindowMs}. */
  readonly maxPrematureResets: number;
  /** See {@link maxPrematureResets}. */
  readonly prematureResetWindowMs: number;
  /** Control frames queued unsent. */
  readonly maxOutboundControlFrames: number;
  /** Consecutive frames with an empty payload and no END_STREAM. */
  readonly maxConsecutiveEmptyFrames: number;
  /** Preface and SETTINGS ACK timeout. */
  readonly settingsTimeoutMs: number;
  /** Close after this long with no stream; 0 for never. */
  readonly idleTimeoutMs: number;
  /** Reset a stream whose queued data made no progress for this long. */
  readonly sendTimeoutMs: number;
  /** Bytes queued for the socket before streams stop sending and the peer stops being read. */
  readonly maxConnectionBufferSize: number;
  /** Keepalive PING interval; 0 for none. */
  readonly keepaliveIntervalMs: number;
  /** How long a keepalive PING may go unanswered. */
  readonly keepaliveTimeoutMs: number;
  /**
   * Server side: once the connection is this old (±10 % jitter, drawn at accept) it drains
   * (gRPC's MAX_CONNECTION_AGE); 0 for never.
   */
  readonly maxConnectionAgeMs: number;
  /**
   * Server side: how long streams may run after that drain began before the owner is asked to
   * end them and the connection closes (gRPC's MAX_CONNECTION_AGE_GRACE); 0 for no limit.
   */
  readonly maxConnectionAgeGraceMs: number;
}

/** What a connection tells its owner (the listener or the upstream pool). */
export interface ConnectionListener {
  /** Server side: a new stream with its request headers. Set `stream.handler` before returning. */
  onStream?(connection: H2Connection, stream: H2Stream, headers: HeaderList, end: boolean): void;
  /**
   * Server side: a request whose header list is over `maxHeaderListSize`. The stream is open
   * without headers; answer it (or reset it) before returning.
   */
  onOversizedRequest?(connection: H2Connection, stream: H2Stream, message: string): void;
  /** The peer's first SETTINGS arrived: the connection can carry streams. */
  onReady?(connection: H2Connection): void;
  /** A stream left the connection: capacity freed. */
  onStreamClosed?(connection: H2Connection): void;
  /**
   * The connection takes no new streams: the peer sent GOAWAY, or (client side) it carried
   * so many cancels that it is retired before the backend's rapid-reset guard trips.
   */
  onGoingAway?(connection: H2Connection, reason: string): void;
  /** Server side: the connection reached `maxConnectionAgeMs` and began to drain. */
  onMaxAge?(connection: H2Connection): void;
  /**
   * Server side: `maxConnectionAgeGraceMs` passed since the age drain began, and `streams` are
   * still open. End them now: the connection closes right after, and a stream left open is
   * lost with it (CONNECTION_LOST).
   */
  onMaxAgeGraceExpired?(connection: H2Connection, streams: readonly H2Stream[]): void;
  /** The connection is gone; `error` says why when it did not end cleanly. */
  onClose(connection: H2Connection, error: string | undefined): void;
}

/** A socket as the engine uses it: Deno's TCP and TLS connections both fit. */
export interface Socket {
  read(buffer: Uint8Array): Promise<number | null>;
  write(bytes: Uint8Array): Promise<number>;
  close(): void;
}

/**
 * Small enough that an idle connection costs little (a client's preface, SETTINGS and first
 * request fit); grown while frames need more.
 */
const INITIAL_READ_BUFFER = 1024;
/** A read that fills the buffer doubles it, up to this, so bulk transfers read in big bites. */
const READ_BUFFER_GROWTH_LIMIT = 64 * 1024;
/** Write buffers larger than this are released when the connection has no stream left. */
const IDLE_BUFFER_LIMIT = 64 * 1024;
/** A spare write buffer larger than this is released even while streams flow. */
const SPARE_BUFFER_LIMIT = 1024 * 1024;
/** How many stream ids we remember as reset by us, to ignore frames already in flight. */
const RECENT_RESETS = 64;
/** The opaque payload of the drain PING (RFC 9113 §6.8: GOAWAY, PING, then the real GOAWAY). */
const DRAIN_PING = new Uint8Array([0x64, 0x72, 0x61, 0x69, 0x6e, 0, 0, 0]);
/** The opaque payload of keepalive PINGs. */
const KEEPALIVE_PING = new Uint8Array([0x6b, 0x65, 0x65, 0x70, 0, 0, 0, 0]);
/**
 * gRPC's jitter on MAX_CONNECTION_AGE, ±10 %: connections accepted in one burst (after a
 * deploy, say) do not all go away, and reconnect, in one burst again.
 */
const AGE_JITTER = 0.1;

/** `ageMs` with ±{@link AGE_JITTER} jitter, at least 1 ms. */
function jitteredAge(ageMs: number): number {
  return Math.max(1, Math.round(ageMs * (1 - AGE_JITTER + 2 * AGE_JITTER * Math.random())));
}

/** Connections with bytes to write, flushed together at the end of the microtask checkpoint. */
const dirty: H2Connection[] = [];
let flushScheduled = false;

function flushDirty(): void {
  flushScheduled = false;
  // A flush can make more connections dirty (a relay reacting to a completed write does not,
  // but keep the loop general): iterate by index over the growing list.
  for (let i = 0; i < dirty.length; i++) dirty[i].flush();
  dirty.length = 0;
}

/** Whether the 8-octet PING payload at `bytes[at..]` is `expected`. */
function samePayload(bytes: Uint8Array, at: number, expected: Uint8Array): boolean {
  for (let i = 0; i < 8; i++) if (bytes[at + i] !== expected[i]) return false;
  return true;
}

/** A protocol violation that ends the whole connection (RFC 9113 §5.4.1). */
class ConnectionError extends Error {
  constructor(readonly code: number, message: string) {
    super(message);
  }
}

/** One HTTP/2 connection. */
export class H2Connection implements StreamOwner, TimerEntry {
  /** See {@link TimerEntry}. */
  timerAt = 0;
  /** See {@link TimerEntry}. */
  timerIndex = -1;
  /** The peer's address as `host:port`, for logs and access logs. */
  readonly remoteAddress: string;
  /**
   * Who the peer is by its verified TLS client certificate (mTLS on the listener), set by
   * the server before the connection carries a stream; `undefined` without one.
   */
  peerIdentity: string | undefined = undefined;
  readonly #options: ConnectionOptions;
  readonly #isServer: boolean;
  readonly #listener: ConnectionListener;
  #socket: Socket | undefined;

  // Reading.
  #readBuffer = new Uint8Array(INITIAL_READ_BUFFER);
  #readLength = 0;
  #prefacePending: boolean;
  #peerSettingsSeen = false;
  /** Epoch ms of the last read, kept only where keepalive needs it. */
  #lastReadAt = 0;
  #readPaused: (() => void) | undefined;

  // Writing.
  #out = new ByteBuffer(256);
  #spare: ByteBuffer | undefined;
  #scratch: ByteBuffer | undefined;
  #writing = false;
  #dirty = false;
  #controlQueued = 0;

  // Header compression, created with the first header block so idle connections cost less.
  #decoder: HpackDecoder | undefined;
  #encoder: HpackEncoder | undefined;
  #peerTableSize = -1;
  #headerBlock: ByteBuffer | undefined;
  #headerBlockStream = 0;
  #headerBlockEnd = false;
  #headerBlockFrames = 0;

  // Streams.
  readonly #streams = new Map<number, H2Stream>();
  readonly #pending: H2Stream[] = [];
  readonly #blocked: H2Stream[] = [];
  #recentResets: Int32Array | undefined;
  #recentResetAt = 0;
  #lastPeerStreamId = 0;
  #nextStreamId = 1;
  /**
   * Client side: the highest stream id whose HEADERS were handed to the socket. A stream above
   * it never left this process, so when the connection dies it is NOT_SENT (safe to retry
   * anywhere), not CONNECTION_LOST.
   */
  #handedOutStreamId = 0;

  // Settings and windows.
  #peerMaxFrameSize = MIN_MAX_FRAME_SIZE;
  #peerInitialWindow = DEFAULT_WINDOW;
  #peerMaxStreams = Infinity;
  #sendWindow = DEFAULT_WINDOW;
  #recvWindow = DEFAULT_WINDOW;
  #recvUnacked = 0;
  #settingsAckDue = 0;

  // Abuse accounting.
  #emptyFrames = 0;
  #resetWindowStart = 0;
  #resets = 0;

  // Lifecycle.
  #goawaySent = false;
  #goawayLastId = MAX_STREAM_ID;
  #goawayReceived = false;
  #peerLastStreamId = -1;
  #peerGoawayCode = -1;
  #drainPhase = 0;
  #drainDeadline = 0;
  #closing = false;
  #closed = false;
  #idleSince = 0;
  #keepaliveDue = 0;
  #pingDue = 0;
  #prefaceDue = 0;
  /** Server side: epoch ms when the connection reaches its (jittered) maximum age; 0: none. */
  #maxAgeDue = 0;
  /** Server side: epoch ms when the age drain's grace ends; 0 when none runs. */
  #maxAgeGraceDue = 0;

  /**
   * Creates a connection. A server connection starts reading `socket` at once; a client
   * connection may be created before its socket exists (streams queue on it) and is started
   * with {@link attach}.
   */
  constructor(
    options: ConnectionOptions,
    listener: ConnectionListener,
    remoteAddress: string,
    socket?: Socket,
  ) {
    this.#options = options;
    this.#isServer = options.role === "server";
    this.#listener = listener;
    this.remoteAddress = remoteAddress;
    this.#prefacePending = this.#isServer;
    this.#peerMaxStreams = this.#isServer ? Infinity : 0;
    if (socket) this.attach(socket);
  }

  /** True once the peer's SETTINGS arrived and no GOAWAY went either way. */
  get #ready(): boolean {
    return this.#peerSettingsSeen && !this.#goawayReceived && !this.#goawaySent && !this.#closed;
  }

  /** True when the connection takes no new streams (GOAWAY, closing, closed, ids spent). */
  get goingAway(): boolean {
    return this.#goawayReceived || this.#goawaySent || this.#closing || this.#closed ||
      this.#nextStreamId > MAX_STREAM_ID;
  }

  /** True once the connection is gone. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Streams open on the connection, plus client streams waiting for a slot. */
  get streamCount(): number {
    return this.#streams.size + this.#pending.length;
  }

  /** Client side: the peer's SETTINGS_MAX_CONCURRENT_STREAMS (0 until its SETTINGS arrive). */
  get peerMaxStreams(): number {
    return this.#peerMaxStreams;
  }

  /**
   * Client side: the peer's GOAWAY was a graceful shutdown of a connection that worked: no
   * error, and it covers at least one stream we really opened (a last stream id alone proves
   * nothing: a draining peer sends 2^31-1 first, RFC 9113 §6.8).
   */
  get shutDownGracefully(): boolean {
    return this.#goawayReceived && this.#peerGoawayCode === ErrorCode.NO_ERROR &&
      Math.min(this.#peerLastStreamId, this.#nextStreamId - 2) >= 1;
  }

  /** Client side: takes the oldest stream waiting here for a slot, to start it elsewhere. */
  takePending(): H2Stream | undefined {
    return this.#pending.shift();
  }

  /**
   * Client side: takes over a stream that waited for a slot on another connection of the
   * same backend; it starts at once when this connection has room.
   */
  adoptPending(stream: H2Stream): void {
    stream.owner = this;
    if (this.hasCapacity) this.#activate(stream);
    else this.#pending.push(stream);
  }

  /** Client side: whether a new stream would start now rather than wait for a slot. */
  get hasCapacity(): boolean {
    return this.#ready && this.#pending.length === 0 &&
      this.#streams.size < this.#peerMaxStreams && this.#nextStreamId <= MAX_STREAM_ID;
  }

  /** Starts the connection on its socket: our preface and SETTINGS, then the read loop. */
  attach(socket: Socket): void {
    this.#socket = socket;
    const options = this.#options;
    if (!this.#isServer) this.#out.pushBytes(CLIENT_PREFACE);
    const settings = [
      Setting.ENABLE_PUSH,
      0,
      Setting.INITIAL_WINDOW_SIZE,
      options.initialStreamWindowSize,
      Setting.MAX_FRAME_SIZE,
      options.maxFrameSize,
      Setting.MAX_HEADER_LIST_SIZE,
      options.maxHeaderListSize,
    ];
    if (this.#isServer) settings.push(Setting.MAX_CONCURRENT_STREAMS, options.maxConcurrentStreams);
    writeSettings(this.#out, settings, false);
    const extra = options.initialConnectionWindowSize - DEFAULT_WINDOW;
    if (extra > 0) {
      writeWindowUpdate(this.#out, 0, extra);
      this.#recvWindow += extra;
    }
    const now = Date.now();
    this.#settingsAckDue = now + options.settingsTimeoutMs;
    if (this.#isServer) this.#prefaceDue = now + options.settingsTimeoutMs;
    this.#idleSince = now;
    if (options.keepaliveIntervalMs > 0) this.#keepaliveDue = now + options.keepaliveIntervalMs;
    if (this.#isServer && options.maxConnectionAgeMs > 0) {
      this.#maxAgeDue = now + jitteredAge(options.maxConnectionAgeMs);
    }
    this.#markDirty();
    this.#rearm(now);
    this.#readLoop();
  }

  /** Client side: the socket could not be opened; every stream fails as never sent. */
  failToConnect(error: string): void {
    this.#terminate(error, false);
  }

  /**
   * Client side: opens a stream. It starts at once when the peer allows another stream, else
   * it waits for a slot with its headers and data queued (RFC 9113 §5.1.2).
   */
  openStream(headers: HeaderList, handler: StreamHandler): H2Stream {
    const stream = new H2Stream(this, handler);
    stream.pendingHeaders = headers;
    if (this.#closed) {
      // Never sent: the caller hears so once it holds the stream, and may send it elsewhere.
      stream.closed = true;
      stream.handler = undefined;
      stream.closeReason = "connection closed";
      queueMicrotask(() => handler.onClose(stream, CloseCause.NOT_SENT));
      return stream;
    }
    if (this.hasCapacity) this.#activate(stream);
    else this.#pending.push(stream);
    return stream;
  }

  /**
   * Starts a graceful shutdown. Server side: GOAWAY with the largest stream id, a PING, and
   * after its ACK the real last stream id (RFC 9113 §6.8), so requests in flight are not
   * lost; the connection closes when its streams are done. Client side: GOAWAY, then close
   * once the streams are done. `debugData` goes in the first GOAWAY (server side).
   */
  drain(debugData = "draining"): void {
    if (this.#closed || this.#closing) return;
    this.#closing = true;
    if (this.#isServer && this.#peerSettingsSeen) {
      writeGoaway(this.#out, MAX_STREAM_ID, ErrorCode.NO_ERROR, debugData);
      goawayCounts[frameCountIndex(true, true, ErrorCode.NO_ERROR)]++;
      writePing(this.#out, false, DRAIN_PING, 0);
      this.#drainPhase = 1;
      this.#drainDeadline = Date.now() + this.#options.settingsTimeoutMs;
      this.#rearm(Date.now());
      this.#markDirty();
    } else {
      this.#sendFinalGoaway(ErrorCode.NO_ERROR, "");
      // Streams still waiting for a slot would never get one here: they were never sent, so
      // their callers may retry them elsewhere.
      for (const stream of this.#pending.splice(0)) {
        stream.closeReason = "its backend connection is going away";
        this.#close(stream, CloseCause.NOT_SENT);
      }
      this.#closeIfDone();
    }
  }

  /** Ends the connection at once: streams fail, the socket closes after a GOAWAY. */
  destroy(reason: string): void {
    if (this.#closed) return;
    this.#sendFinalGoaway(ErrorCode.NO_ERROR, reason);
    this.#terminate(reason, true);
  }

  // --- StreamOwner ------------------------------------------------------------------------

  /** See {@link StreamOwner.sendHeaders}. */
  sendHeaders(stream: H2Stream, headers: HeaderList, endStream: boolean): void {
    if (stream.closed || stream.localEnded) return;
    if (stream.id === 0) {
      stream.pendingHeaders = headers;
      return;
    }
    this.#writeHeaders(stream.id, headers, endStream);
    stream.headersDone = true;
    if (endStream) this.#endLocal(stream);
  }

  /** See {@link StreamOwner.sendData}. */
  sendData(stream: H2Stream, data: Uint8Array, endStream: boolean): void {
    if (stream.closed || stream.localEnded) return;
    if (endStream) stream.localEnded = true;
    if (stream.queue.length > 0 || stream.id === 0) {
      this.#enqueue(stream, data, 0);
      if (stream.id !== 0) this.#pump(stream);
      return;
    }
    // Fast path: frame straight from the caller's view, within the windows.
    const sent = this.#frameData(stream, data, 0, endStream);
    if (sent < data.length) this.#enqueue(stream, data, sent);
    else if (endStream) this.#afterLocalEnd(stream);
    if (sent > 0) stream.handler?.onFlushed(stream, sent);
  }

  /** See {@link StreamOwner.sendTrailers}. */
  sendTrailers(stream: H2Stream, trailers: HeaderList): void {
    if (stream.closed || stream.localEnded) return;
    stream.localEnded = true;
    if (stream.queue.length > 0 || stream.id === 0) {
      stream.queuedTrailers = trailers;
      return;
    }
    this.#writeHeaders(stream.id, trailers, true);
    this.#afterLocalEnd(stream);
  }

  /** See {@link StreamOwner.resetStream}. */
  resetStream(stream: H2Stream, code: number, reason: string): void {
    this.#reset(stream, code, reason, false);
  }

  /**
   * Resets a stream. Resets the peer provoked (stream errors) count toward the control frames
   * it may leave unread; the relay's own cancels do not, or one client's disconnect could
   * close a backend connection other calls share.
   */
  #reset(stream: H2Stream, code: number, reason: string, provoked: boolean): void {
    if (stream.closed) return;
    if (stream.id !== 0) {
      if (provoked) this.#writeControl();
      this.#writeReset(stream.id, code);
      this.#markDirty();
      if (!this.#isServer && !this.#closing && this.#overResetBudget()) {
        this.#retire(
          `retired after ${this.#resets} cancels within ${this.#options.prematureResetWindowMs}ms`,
        );
      }
    }
    stream.resetCode = code;
    stream.closeReason = reason || `reset with ${errorCodeName(code)}`;
    this.#close(stream, stream.id === 0 ? CloseCause.UNPROCESSED : CloseCause.LOCAL_RESET);
  }

  /** See {@link StreamOwner.consume}. */
  consume(stream: H2Stream, bytes: number): void {
    // A closed stream's unconsumed bytes went back to the connection window when it closed.
    if (bytes <= 0 || stream.closed) return;
    stream.recvUnconsumed -= bytes;
    this.#creditStream(stream, bytes);
    // A backend connection is credited on receipt (see #onData): only client connections
    // wait for the relay here.
    if (this.#isServer) this.#creditConnection(bytes);
  }

  #creditStream(stream: H2Stream, bytes: number): void {
    if (stream.remoteEnded) return;
    stream.recvUnacked += bytes;
    // Announce credit in halves of the window, as nghttp2 does: fewer WINDOW_UPDATE frames
    // while the sender always has half a window in hand.
    if (stream.recvUnacked >= this.#options.initialStreamWindowSize >>> 1) {
      writeWindowUpdate(this.#out, stream.id, stream.recvUnacked);
      stream.recvWindow += stream.recvUnacked;
      stream.recvUnacked = 0;
      this.#markDirty();
    }
  }

  // --- reading ------------------------------------------------------------------------------

  async #readLoop(): Promise<void> {
    let error: string | undefined;
    const socket = this.#socket!;
    try {
      for (;;) {
        if (this.#out.length >= this.#options.maxConnectionBufferSize && !this.#closed) {
          // The peer is not reading what we send: stop reading what it sends (RFC 9113 §10.5).
          await new Promise<void>((resume) => (this.#readPaused = resume));
        }
        if (this.#closed) return;
        let buffer = this.#readBuffer;
        if (this.#readLength === buffer.length) {
          buffer = this.#growReadBuffer(buffer.length * 2);
        }
        const count = await socket.read(buffer.subarray(this.#readLength));
        if (count === null) {
          error = this.#streams.size > 0 || this.#pending.length > 0 || !this.#goawaySent
            ? "connection closed by peer"
            : undefined;
          break;
        }
        if (this.#closed) return;
        this.#readLength += count;
        if (this.#keepaliveDue > 0) this.#lastReadAt = Date.now();
        if (
          this.#readLength === buffer.length && buffer.length < READ_BUFFER_GROWTH_LIMIT
        ) this.#growReadBuffer(buffer.length * 2);
        this.#processReadBuffer();
        if (this.#closed) return;
      }
    } catch (caught) {
      if (this.#closed) return;
      error = caught instanceof Error ? caught.message : String(caught);
    }
    if (this.#closed) return;
    if (error === undefined && this.#streams.size === 0 && this.#pending.length === 0) {
      this.#terminate(undefined, false);
    } else this.#terminate(error ?? "connection closed by peer", false);
  }

  #growReadBuffer(size: number): Uint8Array<ArrayBuffer> {
    const grown = new Uint8Array(size);
    grown.set(this.#readBuffer.subarray(0, this.#readLength));
    this.#readBuffer = grown;
    return grown;
  }

  #processReadBuffer(): void {
    const bytes = this.#readBuffer;
    const end = this.#readLength;
    let at = 0;
    try {
      if (this.#prefacePending) {
        const have = Math.min(end, CLIENT_PREFACE.length);
        for (let i = 0; i < have; i++) {
          if (bytes[i] !== CLIENT_PREFACE[i]) {
            throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "invalid connection preface");
          }
        }
        if (have < CLIENT_PREFACE.length) return;
        this.#prefacePending = false;
        at = CLIENT_PREFACE.length;
      }
      const maxFrame = this.#options.maxFrameSize;
      while (end - at >= FRAME_HEADER_BYTES) {
        const length = (bytes[at] << 16) | (bytes[at + 1] << 8) | bytes[at + 2];
        if (length > maxFrame) {
          throw new ConnectionError(
            ErrorCode.FRAME_SIZE_ERROR,
            `frame of ${length} bytes exceeds SETTINGS_MAX_FRAME_SIZE ${maxFrame}`,
          );
        }
        if (end - at - FRAME_HEADER_BYTES < length) break;
        const type = bytes[at + 3];
        const flags = bytes[at + 4];
        const streamId = readUint32(bytes, at + 5) & 0x7fffffff;
        const start = at + FRAME_HEADER_BYTES;
        at = start + length;
        this.#onFrame(type, flags, streamId, start, at);
        if (this.#closed) return;
      }
    } catch (error) {
      if (error instanceof ConnectionError) {
        this.#connectionError(error.code, error.message);
        return;
      }
      throw error;
    }
    // Keep the partial frame at the front, and make room for all of it.
    const left = end - at;
    if (left > 0 && at > 0) bytes.copyWithin(0, at, end);
    this.#readLength = left;
    if (left >= FRAME_HEADER_BYTES) {
      const need = FRAME_HEADER_BYTES +
        ((bytes[0] << 16) | (bytes[1] << 8) | bytes[2]);
      if (need > this.#readBuffer.length) {
        let size = this.#readBuffer.length * 2;
        while (size < need) size *= 2;
        this.#growReadBuffer(size);
      }
    }
  }

  #onFrame(type: number, flags: number, streamId: number, start: number, end: number): void {
    if (!this.#peerSettingsSeen && type !== FrameType.SETTINGS) {
      // RFC 9113 §3.4: the preface's first frame is SETTINGS.
      throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "first frame is not SETTINGS");
    }
    if (this.#headerBlockStream !== 0 && type !== FrameType.CONTINUATION) {
      throw new ConnectionError(
        ErrorCode.PROTOCOL_ERROR,
        "header block interrupted by another frame (RFC 9113 §6.10)",
      );
    }
    switch (type) {
      case FrameType.DATA:
        return this.#onData(flags, streamId, start, end);
      case FrameType.HEADERS:
        return this.#onHeaders(flags, streamId, start, end);
      case FrameType.PRIORITY:
        return this.#onPriority(streamId, start, end);
      case FrameType.RST_STREAM:
        return this.#onRstStream(streamId, start, end);
      case FrameType.SETTINGS:
        return this.#onSettings(flags, streamId, start, end);
      case FrameType.PUSH_PROMISE:
        // We advertise SETTINGS_ENABLE_PUSH 0, and clients never push (RFC 9113 §8.4).
        throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "PUSH_PROMISE with push disabled");
      case FrameType.PING:
        return this.#onPing(flags, streamId, start, end);
      case FrameType.GOAWAY:
        return this.#onGoaway(streamId, start, end);
      case FrameType.WINDOW_UPDATE:
        return this.#onWindowUpdate(streamId, start, end);
      case FrameType.CONTINUATION:
        return this.#onContinuation(flags, streamId, start, end);
      default:
        // Unknown frame types are ignored (RFC 9113 §4.1, §5.5).
        return;
    }
  }

  /** Strips padding (RFC 9113 §6.1, §6.2); returns the payload end. */
  #unpaddedEnd(flags: number, start: number, end: number): number {
    if ((flags & Flag.PADDED) === 0) return end;
    if (end - start < 1) {
      throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "padded frame without pad length");
    }
    const padding = this.#readBuffer[start];
    if (padding >= end - start) {
      throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "padding exceeds the frame payload");
    }
    return end - padding;
  }

  #countEmpty(length: number, endStream: boolean): void {
    if (length > 0 || endStream) {
      this.#emptyFrames = 0;
      return;
    }
    if (++this.#emptyFrames > this.#options.maxConsecutiveEmptyFrames) {
      throw new ConnectionError(
        ErrorCode.ENHANCE_YOUR_CALM,
        `more than ${this.#options.maxConsecutiveEmptyFrames} consecutive empty frames (http2.maxConsecutiveEmptyFrames)`,
      );
    }
  }

  #onData(flags: number, streamId: number, start: number, end: number): void {
    if (streamId === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "DATA on stream 0");
    const length = end - start;
    // Flow control counts the whole payload, padding included (RFC 9113 §6.9.1).
    if (length > this.#recvWindow) {
      throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "DATA beyond the connection window");
    }
    this.#recvWindow -= length;
    const stream = this.#streams.get(streamId);
    if (stream === undefined) {
      this.#creditConnection(length);
      if (this.#isIdle(streamId)) {
        throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `DATA on idle stream ${streamId}`);
      }
      // Data in flight on a stream we reset or refused, or above our final GOAWAY's last
      // stream id, is ignored (RFC 9113 §5.1, §6.8); a backend's data for a call we cancelled
      // is too, however many calls were cancelled since (as Go's client does).
      if (
        !this.#isServer || streamId > this.#goawayLastId || this.#wasResetByUs(streamId)
      ) return;
      // A client sending on a stream it closed itself: a stream error (§5.1, closed).
      this.#writeControl();
      this.#writeReset(streamId, ErrorCode.STREAM_CLOSED);
      this.#markDirty();
      return;
    }
    if (!this.#isServer && !stream.headersDone) {
      // DATA before the response HEADERS is a malformed response (RFC 9113 §8.1).
      this.#creditConnection(length);
      return this.#streamError(stream, ErrorCode.PROTOCOL_ERROR, "DATA before response headers");
    }
    const dataStart = (flags & Flag.PADDED) !== 0 ? start + 1 : start;
    const dataEnd = this.#unpaddedEnd(flags, start, end);
    const endStream = (flags & Flag.END_STREAM) !== 0;
    this.#countEmpty(dataEnd - dataStart, endStream);
    if (stream.remoteEnded) {
      this.#creditConnection(length);
      return this.#streamError(stream, ErrorCode.STREAM_CLOSED, "DATA after END_STREAM");
    }
    if (length > stream.recvWindow) {
      this.#creditConnection(length);
      return this.#streamError(
        stream,
        ErrorCode.FLOW_CONTROL_ERROR,
        "DATA beyond the stream window",
      );
    }
    stream.recvWindow -= length;
    const padding = length - (dataEnd - dataStart);
    if (padding > 0) {
      // Padding is flow-controlled but never consumed by anyone: return it at once (§6.1).
      this.#creditStream(stream, padding);
      this.#creditConnection(padding);
    }
    const dataLength = dataEnd - dataStart;
    stream.receivedLength += dataLength;
    if (
      stream.expectedLength >= 0 &&
      (stream.receivedLength > stream.expectedLength ||
        (endStream && stream.receivedLength !== stream.expectedLength))
    ) {
      this.#creditConnection(dataLength);
      return this.#streamError(stream, ErrorCode.PROTOCOL_ERROR, "content-length mismatch");
    }
    stream.recvUnconsumed += dataLength;
    if (!this.#isServer) this.#creditConnection(dataLength);
    if (endStream) stream.remoteEnded = true;
    const handler = stream.handler;
    if (handler !== undefined) {
      handler.onData(stream, this.#readBuffer.subarray(dataStart, dataEnd), endStream);
    } else if (dataLength > 0) this.consume(stream, dataLength);
    if (endStream && stream.localEnded && stream.queue.length === 0 && !stream.closed) {
      this.#close(stream, CloseCause.DONE);
    }
  }

  #onHeaders(flags: number, streamId: number, start: number, end: number): void {
    if (streamId === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "HEADERS on stream 0");
    let blockStart = (flags & Flag.PADDED) !== 0 ? start + 1 : start;
    const blockEnd = this.#unpaddedEnd(flags, start, end);
    if ((flags & Flag.PRIORITY) !== 0) {
      if (blockEnd - blockStart < 5) {
        throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "HEADERS too short for its priority");
      }
      blockStart += 5;
    }
    if (blockStart > blockEnd) {
      throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "HEADERS too short");
    }
    const endStream = (flags & Flag.END_STREAM) !== 0;
    this.#countEmpty(blockEnd - blockStart, endStream);
    if ((flags & Flag.END_HEADERS) !== 0) {
      this.#onHeaderBlock(streamId, endStream, this.#readBuffer, blockStart, blockEnd);
      return;
    }
    this.#checkBlockSize(blockEnd - blockStart);
    const block = this.#headerBlock ??= new ByteBuffer(blockEnd - blockStart + 256);
    block.clear();
    block.pushBytes(this.#readBuffer, blockStart, blockEnd);
    this.#headerBlockStream = streamId;
    this.#headerBlockEnd = endStream;
    this.#headerBlockFrames = 0;
  }

  #checkBlockSize(size: number): void {
    if (size > this.#options.maxHeaderBlockSize) {
      throw new ConnectionError(
        ErrorCode.ENHANCE_YOUR_CALM,
        `header block over ${this.#options.maxHeaderBlockSize} bytes (http2.maxHeaderBlockSize)`,
      );
    }
  }

  #onContinuation(flags: number, streamId: number, start: number, end: number): void {
    if (this.#headerBlockStream === 0 || streamId !== this.#headerBlockStream) {
      throw new ConnectionError(
        ErrorCode.PROTOCOL_ERROR,
        "unexpected CONTINUATION (RFC 9113 §6.10)",
      );
    }
    const block = this.#headerBlock!;
    // CONTINUATION floods (CVE-2024-27316 class): bound the frames and the bytes.
    if (++this.#headerBlockFrames > this.#options.maxContinuationFrames) {
      throw new ConnectionError(
        ErrorCode.ENHANCE_YOUR_CALM,
        `more than ${this.#options.maxContinuationFrames} CONTINUATION frames (http2.maxContinuationFrames)`,
      );
    }
    this.#checkBlockSize(block.length + end - start);
    if (end === start && (flags & Flag.END_HEADERS) === 0) this.#countEmpty(0, false);
    block.pushBytes(this.#readBuffer, start, end);
    if ((flags & Flag.END_HEADERS) === 0) return;
    this.#headerBlockStream = 0;
    this.#onHeaderBlock(streamId, this.#headerBlockEnd, block.bytes, 0, block.length);
  }

  #decode(bytes: Uint8Array, start: number, end: number, out: string[]): number {
    try {
      this.#decoder ??= new HpackDecoder();
      return this.#decoder.decode(bytes, start, end, out, this.#options.maxHeaderListSize);
    } catch (error) {
      if (error instanceof HpackError) {
        throw new ConnectionError(ErrorCode.COMPRESSION_ERROR, `HPACK: ${error.message}`);
      }
      throw error;
    }
  }

  #onHeaderBlock(
    streamId: number,
    endStream: boolean,
    bytes: Uint8Array,
    start: number,
    end: number,
  ): void {
    // Decode first, always: the dynamic table must follow every block (RFC 7541 §2.2).
    const headers: string[] = [];
    const size = this.#decode(bytes, start, end, headers);
    const oversized = size > this.#options.maxHeaderListSize;
    const existing = this.#streams.get(streamId);
    if (existing !== undefined) {
      this.#onTrailersOrResponse(existing, headers, endStream, oversized, size);
      return;
    }
    if (!this.#isServer) {
      if (this.#isIdle(streamId)) {
        throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `HEADERS on idle stream ${streamId}`);
      }
      return; // a response in flight for a call we cancelled: decoded, then ignored (§5.1)
    }
    if ((streamId & 1) === 0) {
      throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `client opened even stream ${streamId}`);
    }
    if (streamId <= this.#lastPeerStreamId) {
      if (this.#wasResetByUs(streamId) || streamId > this.#goawayLastId) return;
      throw new ConnectionError(
        ErrorCode.PROTOCOL_ERROR,
        `stream ${streamId} is not above the last opened stream ${this.#lastPeerStreamId} (RFC 9113 §5.1.1)`,
      );
    }
    this.#lastPeerStreamId = streamId;
    if (streamId > this.#goawayLastId) return; // after our final GOAWAY: ignored (§6.8)
    if (this.#streams.size >= this.#options.maxConcurrentStreams) {
      // RFC 9113 §5.1.2: over the advertised limit is a stream error; REFUSED_STREAM tells the
      // client the request was not processed and may be retried.
      this.#writeControl();
      this.#writeReset(streamId, ErrorCode.REFUSED_STREAM);
      this.#markDirty();
      return;
    }
    const stream = new H2Stream(this, undefined);
    stream.id = streamId;
    stream.recvWindow = this.#options.initialStreamWindowSize;
    stream.sendWindow = this.#peerInitialWindow;
    stream.remoteEnded = endStream;
    this.#streams.set(streamId, stream);
    if (oversized) {
      this.#listener.onOversizedRequest?.(
        this,
        stream,
        `request header list of ${size} bytes exceeds http2.maxHeaderListSize ${this.#options.maxHeaderListSize}`,
      );
      if (!stream.closed && stream.handler === undefined) {
        this.resetStream(stream, ErrorCode.REFUSED_STREAM, "request headers too large");
      }
      return;
    }
    const problem = requestHeadersProblem(headers);
    if (problem !== undefined) return this.#streamError(stream, ErrorCode.PROTOCOL_ERROR, problem);
    const contentLength = headerValue(headers, "content-length");
    if (contentLength !== undefined) {
      const declared = /^\d{1,15}$/.test(contentLength) ? Number(contentLength) : -1;
      if (declared < 0 || (endStream && declared !== 0)) {
        return this.#streamError(stream, ErrorCode.PROTOCOL_ERROR, "invalid content-length");
      }
      stream.expectedLength = declared;
    }
    this.#listener.onStream?.(this, stream, headers, endStream);
  }

  #onTrailersOrResponse(
    stream: H2Stream,
    headers: string[],
    endStream: boolean,
    oversized: boolean,
    size: number,
  ): void {
    if (stream.remoteEnded) {
      return this.#streamError(stream, ErrorCode.STREAM_CLOSED, "HEADERS after END_STREAM");
    }
    if (oversized) {
      return this.#streamError(
        stream,
        ErrorCode.PROTOCOL_ERROR,
        `header list of ${size} bytes exceeds http2.maxHeaderListSize ${this.#options.maxHeaderListSize}`,
      );
    }
    let problem: string | undefined;
    if (!this.#isServer && !stream.headersDone) {
      problem = responseHeadersProblem(headers);
      // Informational responses (1xx) precede the real one and never end the stream (§8.1).
      if (problem === undefined && headers[1].charCodeAt(0) === 0x31) {
        if (!endStream) return;
        problem = "informational response with END_STREAM";
      }
      stream.headersDone = true;
    } else {
      if (!endStream) problem = "trailers without END_STREAM";
      else problem = trailersProblem(headers);
    }
    if (problem !== undefined) return this.#streamError(stream, ErrorCode.PROTOCOL_ERROR, problem);
    if (endStream) stream.remoteEnded = true;
    stream.handler?.onHeaders(stream, headers, endStream);
    if (endStream && stream.localEnded && stream.queue.length === 0 && !stream.closed) {
      this.#close(stream, CloseCause.DONE);
    }
  }

  #onPriority(streamId: number, start: number, end: number): void {
    if (streamId === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "PRIORITY on stream 0");
    const stream = this.#streams.get(streamId);
    if (end - start !== 5 && stream !== undefined) {
      // A stream error of type FRAME_SIZE_ERROR (RFC 9113 §6.3). On a stream that is idle or
      // already closed there is nothing to reset, and a RST_STREAM on an idle stream would be
      // the peer's connection error (§6.4): the frame is ignored there.
      this.#streamError(stream, ErrorCode.FRAME_SIZE_ERROR, "malformed PRIORITY");
    }
    // Otherwise ignored: RFC 9113 deprecates the priority scheme (§5.3.2).
  }

  #onRstStream(streamId: number, start: number, end: number): void {
    if (streamId === 0) {
      throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "RST_STREAM on stream 0");
    }
    if (end - start !== 4) {
      throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "RST_STREAM length");
    }
    if (this.#isIdle(streamId)) {
      throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `RST_STREAM on idle stream ${streamId}`);
    }
    const code = readUint32(this.#readBuffer, start);
    resetCounts[frameCountIndex(this.#isServer, false, code)]++;
    const stream = this.#streams.get(streamId);
    if (stream === undefined) return; // already closed: nothing to do (§5.1)
    if (this.#isServer && !stream.headersDone && this.#overResetBudget()) {
      throw new ConnectionError(
        ErrorCode.ENHANCE_YOUR_CALM,
        `more than ${this.#options.maxPrematureResets} streams reset before a response (http2.maxPrematureResets)`,
      );
    }
    stream.resetCode = code;
    stream.closeReason = `peer reset the stream with ${errorCodeName(code)}`;
    this.#close(stream, CloseCause.PEER_RESET);
  }

  /**
   * Counts one reset against the connection's budget; true once the budget is spent. On the
   * server side these are client resets before any response (rapid reset, CVE-2023-44487);
   * on the client side, the cancels we send a backend, which guards against rapid reset too.
   */
  #overResetBudget(): boolean {
    const now = Date.now();
    if (now - this.#resetWindowStart > this.#options.prematureResetWindowMs) {
      this.#resetWindowStart = now;
      this.#resets = 0;
    }
    return ++this.#resets > this.#options.maxPrematureResets;
  }

  #onSettings(flags: number, streamId: number, start: number, end: number): void {
    if (streamId !== 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "SETTINGS on a stream");
    const length = end - start;
    if ((flags & Flag.ACK) !== 0) {
      if (length !== 0) {
        throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS ACK with payload");
      }
      if (!this.#peerSettingsSeen) {
        throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "first frame is not SETTINGS");
      }
      this.#settingsAckDue = 0;
      return;
    }
    if (length % 6 !== 0) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS length");
    const bytes = this.#readBuffer;
    for (let at = start; at < end; at += 6) {
      const id = (bytes[at] << 8) | bytes[at + 1];
      const value = readUint32(bytes, at + 2);
      switch (id) {
        case Setting.HEADER_TABLE_SIZE:
          this.#peerTableSize = value;
          this.#encoder?.setMaxTableSize(value);
          break;
        case Setting.ENABLE_PUSH:
          if (value > 1 || (value === 1 && !this.#isServer)) {
            throw new ConnectionError(
              ErrorCode.PROTOCOL_ERROR,
              `invalid SETTINGS_ENABLE_PUSH ${value}`,
            );
          }
          break;
        case Setting.MAX_CONCURRENT_STREAMS:
          this.#peerMaxStreams = value;
          break;
        case Setting.INITIAL_WINDOW_SIZE:
          if (value > MAX_WINDOW) {
            throw new ConnectionError(
              ErrorCode.FLOW_CONTROL_ERROR,
              `invalid SETTINGS_INITIAL_WINDOW_SIZE ${value}`,
            );
          }
          this.#applyInitialWindow(value);
          break;
        case Setting.MAX_FRAME_SIZE:
          if (value < MIN_MAX_FRAME_SIZE || value > MAX_MAX_FRAME_SIZE) {
            throw new ConnectionError(
              ErrorCode.PROTOCOL_ERROR,
              `invalid SETTINGS_MAX_FRAME_SIZE ${value}`,
            );
          }
          this.#peerMaxFrameSize = value;
          break;
        default:
          // SETTINGS_MAX_HEADER_LIST_SIZE is advisory; unknown settings are ignored (§6.5.2).
          break;
      }
    }
    if (!this.#peerSettingsSeen && !this.#isServer && this.#peerMaxStreams === 0) {
      // A server that omits the setting allows unlimited streams (RFC 9113 §6.5.2).
      if (!this.#sawMaxStreams(start, end)) this.#peerMaxStreams = Infinity;
    }
    this.#writeControl();
    writeSettings(this.#out, [], true);
    this.#markDirty();
    if (!this.#peerSettingsSeen) {
      this.#peerSettingsSeen = true;
      this.#prefaceDue = 0;
      this.#listener.onReady?.(this);
    }
    this.#pumpBlocked();
    this.#startPending();
  }

  #sawMaxStreams(start: number, end: number): boolean {
    const bytes = this.#readBuffer;
    for (let at = start; at < end; at += 6) {
      if (((bytes[at] << 8) | bytes[at + 1]) === Setting.MAX_CONCURRENT_STREAMS) return true;
    }
    return false;
  }

  /** SETTINGS_INITIAL_WINDOW_SIZE changes every stream's send window by the difference (§6.9.2). */
  #applyInitialWindow(value: number): void {
    const delta = value - this.#peerInitialWindow;
    this.#peerInitialWindow = value;
    if (delta === 0) return;
    for (const stream of this.#streams.values()) {
      stream.sendWindow += delta;
      if (stream.sendWindow > MAX_WINDOW) {
        throw new ConnectionError(
          ErrorCode.FLOW_CONTROL_ERROR,
          "stream window overflow from SETTINGS",
        );
      }
    }
  }

  #onPing(flags: number, streamId: number, start: number, end: number): void {
    if (streamId !== 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "PING on a stream");
    if (end - start !== 8) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "PING length");
    const bytes = this.#readBuffer;
    if ((flags & Flag.ACK) === 0) {
      this.#writeControl();
      writePing(this.#out, true, bytes, start);
      this.#markDirty();
      return;
    }
    if (this.#drainPhase === 1 && samePayload(bytes, start, DRAIN_PING)) {
      this.#finishDrain();
    } else if (this.#pingDue > 0 && samePayload(bytes, start, KEEPALIVE_PING)) {
      this.#pingDue = 0;
      this.#rearm(Date.now()); // back to the keepalive interval
    }
  }

  #onGoaway(streamId: number, start: number, end: number): void {
    if (streamId !== 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "GOAWAY on a stream");
    if (end - start < 8) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "GOAWAY length");
    const bytes = this.#readBuffer;
    const lastStreamId = readUint32(bytes, start) & 0x7fffffff;
    const code = readUint32(bytes, start + 4);
    goawayCounts[frameCountIndex(this.#isServer, false, code)]++;
    const first = !this.#goawayReceived;
    this.#goawayReceived = true;
    this.#peerLastStreamId = lastStreamId;
    this.#peerGoawayCode = code;
    if (!this.#isServer) {
      // Streams above the last id were never processed: callers may retry them (§6.8).
      for (const stream of [...this.#streams.values()]) {
        if (stream.id > lastStreamId) {
          stream.closeReason = `backend sent GOAWAY (${
            errorCodeName(code)
          }) before processing the stream`;
          this.#close(stream, CloseCause.UNPROCESSED);
        }
      }
      for (const stream of this.#pending.splice(0)) {
        stream.closeReason = `backend sent GOAWAY (${errorCodeName(code)})`;
        this.#close(stream, CloseCause.NOT_SENT);
      }
    }
    if (first) this.#listener.onGoingAway?.(this, `backend sent GOAWAY (${errorCodeName(code)})`);
    this.#closing = true;
    this.#closeIfDone();
  }

  #onWindowUpdate(streamId: number, start: number, end: number): void {
    if (end - start !== 4) {
      throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "WINDOW_UPDATE length");
    }
    const increment = readUint32(this.#readBuffer, start) & 0x7fffffff;
    if (streamId === 0) {
      if (increment === 0) {
        throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE of 0 on the connection");
      }
      this.#sendWindow += increment;
      if (this.#sendWindow > MAX_WINDOW) {
        throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "connection window over 2^31-1");
      }
      this.#pumpBlocked();
      return;
    }
    const stream = this.#streams.get(streamId);
    if (stream === undefined) {
      if (this.#isIdle(streamId)) {
        throw new ConnectionError(
          ErrorCode.PROTOCOL_ERROR,
          `WINDOW_UPDATE on idle stream ${streamId}`,
        );
      }
      return; // closed streams may still get updates in flight (§6.9)
    }
    if (increment === 0) {
      return this.#streamError(stream, ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE of 0");
    }
    stream.sendWindow += increment;
    if (stream.sendWindow > MAX_WINDOW) {
      return this.#streamError(stream, ErrorCode.FLOW_CONTROL_ERROR, "stream window over 2^31-1");
    }
    if (stream.queue.length > 0 || stream.queuedTrailers !== undefined) this.#pump(stream);
  }

  /** A stream id the peer could not have used yet (RFC 9113 §5.1: idle). */
  #isIdle(streamId: number): boolean {
    const peerInitiated = ((streamId & 1) === 1) === this.#isServer;
    return peerInitiated ? streamId > this.#lastPeerStreamId : streamId >= this.#nextStreamId;
  }

  /** Writes RST_STREAM, remembering the stream (see {@link #wasResetByUs}) and counting it. */
  #writeReset(streamId: number, code: number): void {
    writeRstStream(this.#out, streamId, code);
    resetCounts[frameCountIndex(this.#isServer, true, code)]++;
    this.#rememberReset(streamId);
  }

  #rememberReset(streamId: number): void {
    this.#recentResets ??= new Int32Array(RECENT_RESETS);
    this.#recentResets[this.#recentResetAt] = streamId;
    this.#recentResetAt = (this.#recentResetAt + 1) % RECENT_RESETS;
  }

  /** Frames can still arrive on a stream we just reset; they are ignored (RFC 9113 §5.1). */
  #wasResetByUs(streamId: number): boolean {
    return this.#recentResets !== undefined && this.#recentResets.includes(streamId);
  }

  // --- writing ------------------------------------------------------------------------------

  /**
   * Counts a control frame queued for the socket: a peer that provokes them (PING, SETTINGS,
   * resets) faster than it reads them is cut off rather than buffered without bound.
   */
  #writeControl(): void {
    if (++this.#controlQueued > this.#options.maxOutboundControlFrames) {
      this.#connectionError(
        ErrorCode.ENHANCE_YOUR_CALM,
        `more than ${this.#options.maxOutboundControlFrames} control frames queued unsent (http2.maxOutboundControlFrames)`,
      );
    }
  }

  #writeHeaders(streamId: number, headers: HeaderList, endStream: boolean): void {
    const block = this.#scratch ??= new ByteBuffer(256);
    block.clear();
    if (this.#encoder === undefined) {
      this.#encoder = new HpackEncoder();
      if (this.#peerTableSize >= 0) this.#encoder.setMaxTableSize(this.#peerTableSize);
    }
    this.#encoder.encode(headers, block);
    const out = this.#out;
    const maxFrame = this.#peerMaxFrameSize;
    const endFlag = endStream ? Flag.END_STREAM : 0;
    if (block.length <= maxFrame) {
      writeFrameHeader(out, block.length, FrameType.HEADERS, endFlag | Flag.END_HEADERS, streamId);
      out.pushBytes(block.bytes, 0, block.length);
    } else {
      // RFC 9113 §6.10: the rest of the block follows in CONTINUATION frames, back to back.
      writeFrameHeader(out, maxFrame, FrameType.HEADERS, endFlag, streamId);
      out.pushBytes(block.bytes, 0, maxFrame);
      for (let at = maxFrame; at < block.length; at += maxFrame) {
        const size = Math.min(maxFrame, block.length - at);
        const last = at + size === block.length;
        writeFrameHeader(out, size, FrameType.CONTINUATION, last ? Flag.END_HEADERS : 0, streamId);
        out.pushBytes(block.bytes, at, at + size);
      }
    }
    this.#markDirty();
  }

  /**
   * Frames `data[from..]` as DATA within the windows and the connection's buffer cap; returns
   * how many bytes were framed. END_STREAM goes on the frame that carries the last byte.
   */
  #frameData(stream: H2Stream, data: Uint8Array, from: number, endStream: boolean): number {
    const out = this.#out;
    const total = data.length;
    let at = from;
    if (total === from) {
      if (endStream) {
        writeFrameHeader(out, 0, FrameType.DATA, Flag.END_STREAM, stream.id);
        this.#markDirty();
      }
      return 0;
    }
    const maxFrame = this.#peerMaxFrameSize;
    const cap = this.#options.maxConnectionBufferSize;
    while (at < total) {
      const room = cap - out.length;
      let size = total - at;
      if (size > maxFrame) size = maxFrame;
      if (size > stream.sendWindow) size = stream.sendWindow;
      if (size > this.#sendWindow) size = this.#sendWindow;
      if (size > room) size = room;
      if (size <= 0) break;
      const last = at + size === total;
      writeFrameHeader(
        out,
        size,
        FrameType.DATA,
        last && endStream ? Flag.END_STREAM : 0,
        stream.id,
      );
      out.pushBytes(data, at, at + size);
      stream.sendWindow -= size;
      this.#sendWindow -= size;
      at += size;
    }
    if (at > from) this.#markDirty();
    return at - from;
  }

  /** Keeps `data[from..]` in the stream until window opens; it is copied, as the view is not ours. */
  #enqueue(stream: H2Stream, data: Uint8Array, from: number): void {
    if (from < data.length) {
      stream.queue.push(data.slice(from));
      stream.queuedBytes += data.length - from;
    }
    if (stream.id === 0) return;
    if (stream.blockedSince === 0) {
      stream.blockedSince = Date.now();
      this.#armAt(stream.blockedSince + this.#options.sendTimeoutMs);
    }
    if (!stream.blocked) {
      stream.blocked = true;
      this.#blocked.push(stream);
    }
  }

  /** Sends what a stream has queued, as far as the windows allow. */
  #pump(stream: H2Stream): void {
    if (stream.closed || stream.id === 0) return;
    let flushed = 0;
    const queue = stream.queue;
    while (queue.length > 0) {
      const chunk = queue[0];
      const last = queue.length === 1;
      const endStream = last && stream.localEnded && stream.queuedTrailers === undefined;
      const sent = this.#frameData(stream, chunk, stream.queueOffset, endStream);
      flushed += sent;
      stream.queueOffset += sent;
      if (stream.queueOffset < chunk.length) break;
      queue.shift();
      stream.queueOffset = 0;
    }
    if (flushed > 0) {
      stream.queuedBytes -= flushed;
      stream.blockedSince = Date.now();
    }
    // Before the stream can close below: closing clears its handler.
    if (flushed > 0) stream.handler?.onFlushed(stream, flushed);
    if (queue.length === 0 && !stream.closed) {
      stream.blockedSince = 0;
      if (stream.queuedTrailers !== undefined) {
        const trailers = stream.queuedTrailers;
        stream.queuedTrailers = undefined;
        this.#writeHeaders(stream.id, trailers, true);
      }
      if (stream.localEnded) this.#afterLocalEnd(stream);
    }
  }

  #pumpBlocked(): void {
    const blocked = this.#blocked;
    if (blocked.length === 0) return;
    // Round-robin over waiting streams, each as far as the windows allow.
    let kept = 0;
    for (let i = 0; i < blocked.length; i++) {
      const stream = blocked[i];
      if (
        !stream.closed && this.#sendWindow > 0 &&
        this.#out.length < this.#options.maxConnectionBufferSize
      ) {
        this.#pump(stream);
      }
      if (!stream.closed && stream.queue.length > 0) blocked[kept++] = stream;
      else stream.blocked = false;
    }
    blocked.length = kept;
  }

  #endLocal(stream: H2Stream): void {
    stream.localEnded = true;
    this.#afterLocalEnd(stream);
  }

  /** Our END_STREAM is on the wire: the stream closes, or (server) stops the request (§8.1). */
  #afterLocalEnd(stream: H2Stream): void {
    if (stream.closed) return;
    if (stream.remoteEnded) {
      this.#close(stream, CloseCause.DONE);
    } else if (this.#isServer) {
      // A complete response before the whole request: ask the client to stop sending,
      // without error (RFC 9113 §8.1).
      this.#writeReset(stream.id, ErrorCode.NO_ERROR);
      this.#markDirty();
      this.#close(stream, CloseCause.DONE);
    }
  }

  #creditConnection(bytes: number): void {
    if (this.#closed) return;
    this.#recvUnacked += bytes;
    if (this.#recvUnacked >= this.#options.initialConnectionWindowSize >>> 1) {
      writeWindowUpdate(this.#out, 0, this.#recvUnacked);
      this.#recvWindow += this.#recvUnacked;
      this.#recvUnacked = 0;
      this.#markDirty();
    }
  }

  #markDirty(): void {
    if (this.#dirty) return;
    this.#dirty = true;
    dirty.push(this);
    if (!flushScheduled) {
      flushScheduled = true;
      queueMicrotask(flushDirty);
    }
  }

  /** Writes what is queued; called once per microtask checkpoint for connections with output. */
  flush(): void {
    this.#dirty = false;
    if (this.#writing || this.#socket === undefined || this.#out.length === 0) return;
    const out = this.#out;
    this.#out = this.#spare ?? new ByteBuffer(256);
    this.#spare = undefined;
    this.#writing = true;
    // Activation writes a stream's HEADERS into the buffer at once, so every stream activated
    // so far is in this write.
    this.#handedOutStreamId = this.#nextStreamId - 2;
    this.#writeOut(out);
  }

  async #writeOut(buffer: ByteBuffer): Promise<void> {
    const socket = this.#socket!;
    try {
      let at = 0;
      while (at < buffer.length) {
        at += await socket.write(buffer.bytes.subarray(at, buffer.length));
      }
    } catch (error) {
      this.#writing = false;
      if (!this.#closed) {
        this.#terminate(error instanceof Error ? error.message : String(error), false);
      }
      return;
    }
    buffer.clear();
    // Kept while streams flow, so bulk transfers do not regrow a buffer for every write, up to
    // a size a burst may have grown it to but steady traffic does not need.
    if (
      buffer.bytes.length <= IDLE_BUFFER_LIMIT ||
      (this.#streams.size > 0 && buffer.bytes.length <= SPARE_BUFFER_LIMIT)
    ) this.#spare = buffer;
    this.#writing = false;
    this.#controlQueued = 0;
    if (this.#closed) {
      if (this.#out.length > 0) this.flush();
      else this.#closeSocket();
      return;
    }
    this.#pumpBlocked();
    if (this.#readPaused && this.#out.length < this.#options.maxConnectionBufferSize) {
      const resume = this.#readPaused;
      this.#readPaused = undefined;
      resume();
    }
    if (this.#out.length > 0) this.flush();
  }

  // --- stream lifecycle -----------------------------------------------------------------------

  #activate(stream: H2Stream): void {
    stream.id = this.#nextStreamId;
    this.#nextStreamId += 2;
    stream.recvWindow = this.#options.initialStreamWindowSize;
    stream.sendWindow = this.#peerInitialWindow;
    this.#streams.set(stream.id, stream);
    const headers = stream.pendingHeaders!;
    stream.pendingHeaders = undefined;
    const endStream = stream.localEnded && stream.queue.length === 0 &&
      stream.queuedTrailers === undefined;
    this.#writeHeaders(stream.id, headers, endStream);
    if (stream.queue.length > 0 || stream.queuedTrailers !== undefined) {
      stream.blocked = true;
      stream.blockedSince = Date.now();
      this.#blocked.push(stream);
      this.#armAt(stream.blockedSince + this.#options.sendTimeoutMs);
      this.#pump(stream);
    }
    // The last stream id is spent: the connection finishes its streams and is replaced.
    if (this.#nextStreamId > MAX_STREAM_ID) this.#retire("stream ids exhausted");
  }

  #startPending(): void {
    while (this.#pending.length > 0 && this.#hasCapacityForPending()) {
      this.#activate(this.#pending.shift()!);
    }
  }

  /** Whether the first waiting stream may start. */
  #hasCapacityForPending(): boolean {
    return this.#ready && this.#streams.size < this.#peerMaxStreams &&
      this.#nextStreamId <= MAX_STREAM_ID;
  }

  #streamError(stream: H2Stream, code: number, reason: string): void {
    this.#reset(stream, code, reason, true);
  }

  #close(stream: H2Stream, cause: CloseCause): void {
    if (stream.closed || stream.owner !== this) return;
    stream.closed = true;
    if (stream.id !== 0 && this.#streams.get(stream.id) === stream) this.#streams.delete(stream.id);
    else {
      const index = this.#pending.indexOf(stream);
      if (index >= 0) this.#pending.splice(index, 1);
    }
    // Data the relay never consumed still counts against the connection window: return it.
    if (stream.recvUnconsumed > 0) {
      const unconsumed = stream.recvUnconsumed;
      stream.recvUnconsumed = 0;
      if (this.#isServer) this.#creditConnection(unconsumed);
    }
    stream.queue.length = 0;
    stream.queuedBytes = 0;
    stream.queuedTrailers = undefined;
    // Off the send timeout; #pumpBlocked drops it from the waiting list on its next pass.
    stream.blockedSince = 0;
    const handler = stream.handler;
    stream.handler = undefined;
    handler?.onClose(stream, cause);
    if (this.#closed) return;
    if (this.#streams.size === 0) {
      // Buffers a burst grew are let go once the connection is idle.
      if (this.#spare !== undefined && this.#spare.bytes.length > IDLE_BUFFER_LIMIT) {
        this.#spare = undefined;
      }
      if (!this.#writing && this.#out.length === 0 && this.#out.bytes.length > IDLE_BUFFER_LIMIT) {
        this.#out = new ByteBuffer(256);
      }
      this.#idleSince = Date.now();
      if (this.#options.idleTimeoutMs > 0) {
        this.#armAt(this.#idleSince + this.#options.idleTimeoutMs);
      }
    }
    this.#startPending();
    this.#listener.onStreamClosed?.(this);
    this.#closeIfDone();
  }

  // --- connection lifecycle ------------------------------------------------------------------

  #connectionError(code: number, message: string): void {
    if (this.#closed) return;
    this.#sendFinalGoaway(code, message);
    this.#terminate(`${errorCodeName(code)}: ${message}`, true);
  }

  #sendFinalGoaway(code: number, debug: string): void {
    if (this.#socket === undefined) return;
    // The last stream id never grows from one GOAWAY to the next (RFC 9113 §6.8).
    const lastId = this.#isServer ? Math.min(this.#lastPeerStreamId, this.#goawayLastId) : 0;
    if (this.#goawaySent && code === ErrorCode.NO_ERROR) return;
    this.#goawaySent = true;
    this.#goawayLastId = lastId;
    writeGoaway(this.#out, lastId, code, debug);
    goawayCounts[frameCountIndex(this.#isServer, true, code)]++;
    this.#markDirty();
  }

  /**
   * Client side: one client's cancels must not trip a backend's rapid-reset guard, which
   * would close a connection that other clients' calls share. Past the budget the
   * connection takes no new streams, its calls finish, and the pool dials a fresh one.
   */
  #retire(reason: string): void {
    this.drain();
    this.#listener.onGoingAway?.(this, reason);
  }

  /**
   * Server side: the connection reached its maximum age. It drains as a shutdown does, so its
   * calls go on while the client opens a new connection for new ones (and the pickers place
   * those afresh); `maxConnectionAgeGraceMs` later, the streams still open are ended.
   */
  #reachedMaxAge(now: number): void {
    this.#maxAgeDue = 0;
    const graceMs = this.#options.maxConnectionAgeGraceMs;
    if (graceMs > 0) this.#maxAgeGraceDue = now + graceMs;
    // Already draining (a listener shutdown, or the client's own GOAWAY): nothing to announce.
    if (this.#closing) return;
    this.#listener.onMaxAge?.(this);
    this.drain("max connection age");
  }

  /**
   * Server side: the age drain's grace is over. The owner ends the streams still open (the
   * proxy answers each call UNAVAILABLE), and the connection closes without waiting longer
   * for the drain PING's ACK.
   */
  #maxAgeGraceExpired(): void {
    this.#maxAgeGraceDue = 0;
    if (this.#drainPhase === 1) this.#drainPhase = 2;
    if (this.#streams.size > 0) {
      this.#listener.onMaxAgeGraceExpired?.(this, [...this.#streams.values()]);
    }
    if (this.#closed) return; // the last stream closing closed the connection
    this.#sendFinalGoaway(ErrorCode.NO_ERROR, "");
    this.#terminate(
      this.#streams.size > 0 ? "streams still open after http2.maxConnectionAgeGrace" : undefined,
      true,
    );
  }

  #finishDrain(): void {
    this.#drainPhase = 2;
    this.#sendFinalGoaway(ErrorCode.NO_ERROR, "");
    this.#closeIfDone();
  }

  #closeIfDone(): void {
    if (this.#closed || !this.#closing || this.#drainPhase === 1) return;
    if (this.#streams.size > 0 || this.#pending.length > 0) return;
    this.#sendFinalGoaway(ErrorCode.NO_ERROR, "");
    this.#terminate(undefined, true);
  }

  /**
   * Closes the connection: every stream ends (in flight: CONNECTION_LOST; never handed to the
   * socket: NOT_SENT), then the socket closes once queued frames are written when `flushFirst`.
   */
  #terminate(error: string | undefined, flushFirst: boolean): void {
    if (this.#closed) return;
    this.#closed = true;
    timers.cancel(this);
    if (flushFirst && (this.#writing || this.#out.length > 0)) {
      // A peer that stops reading must not hold the socket open: close it regardless soon.
      timers.schedule(this, Date.now() + this.#options.settingsTimeoutMs);
    }
    // What is queued will still be written, so its streams did leave (NOT_SENT would let the
    // caller send them elsewhere while this backend still gets them).
    if (flushFirst) this.#handedOutStreamId = this.#nextStreamId - 2;
    const streams = [...this.#pending.splice(0), ...this.#streams.values()];
    this.#blocked.length = 0;
    const resume = this.#readPaused;
    this.#readPaused = undefined;
    resume?.();
    if (!flushFirst || (!this.#writing && this.#out.length === 0)) this.#closeSocket();
    else if (!this.#writing) this.flush();
    // The owner hears first, so that a call replayed from one of these streams already sees
    // the backend's new state (a failed dial is TRANSIENT_FAILURE) and goes elsewhere.
    this.#listener.onClose(this, error);
    const reason = error ?? "connection closed";
    for (const stream of streams) {
      stream.closeReason = reason;
      const unsent = stream.id === 0 || (!this.#isServer && stream.id > this.#handedOutStreamId);
      this.#close(stream, unsent ? CloseCause.NOT_SENT : CloseCause.CONNECTION_LOST);
    }
  }

  #closeSocket(): void {
    const socket = this.#socket;
    if (socket === undefined) return;
    this.#socket = undefined;
    try {
      socket.close();
    } catch {
      // Already closed by the peer or a failed write.
    }
  }

  // --- timers ---------------------------------------------------------------------------------

  #armAt(at: number): void {
    if (!this.#closed) timers.scheduleNoLaterThan(this, at);
  }

  /** Recomputes the next deadline of this connection and arms the shared timer for it. */
  #rearm(now: number): void {
    let next = Infinity;
    if (this.#prefaceDue > 0) next = Math.min(next, this.#prefaceDue);
    if (this.#settingsAckDue > 0) next = Math.min(next, this.#settingsAckDue);
    if (this.#drainPhase === 1) next = Math.min(next, this.#drainDeadline);
    if (this.#maxAgeDue > 0) next = Math.min(next, this.#maxAgeDue);
    if (this.#maxAgeGraceDue > 0) next = Math.min(next, this.#maxAgeGraceDue);
    if (this.#pingDue > 0) next = Math.min(next, this.#pingDue);
    else if (this.#keepaliveDue > 0) next = Math.min(next, this.#keepaliveDue);
    if (this.#streams.size === 0 && this.#options.idleTimeoutMs > 0) {
      next = Math.min(next, this.#idleSince + this.#options.idleTimeoutMs);
    }
    for (const stream of this.#blocked) {
      if (!stream.closed && stream.blockedSince > 0) {
        next = Math.min(next, stream.blockedSince + this.#options.sendTimeoutMs);
      }
    }
    if (next === Infinity) timers.cancel(this);
    else timers.schedule(this, Math.max(next, now));
  }

  /** See {@link TimerEntry.onTimer}: every timeout of the connection, checked together. */
  onTimer(now: number): void {
    if (this.#closed) return this.#closeSocket();
    const options = this.#options;
    if (this.#prefaceDue > 0 && now >= this.#prefaceDue) {
      return this.#connectionError(
        ErrorCode.SETTINGS_TIMEOUT,
        "no preface and SETTINGS in time (http2.settingsTimeout)",
      );
    }
    if (this.#settingsAckDue > 0 && now >= this.#settingsAckDue) {
      return this.#connectionError(
        ErrorCode.SETTINGS_TIMEOUT,
        "SETTINGS not acknowledged in time (http2.settingsTimeout)",
      );
    }
    if (this.#drainPhase === 1 && now >= this.#drainDeadline) this.#finishDrain();
    if (this.#maxAgeDue > 0 && now >= this.#maxAgeDue && !this.#closed) this.#reachedMaxAge(now);
    if (this.#maxAgeGraceDue > 0 && now >= this.#maxAgeGraceDue && !this.#closed) {
      this.#maxAgeGraceExpired();
    }
    if (this.#closed) return;
    if (this.#pingDue > 0 && now >= this.#pingDue) {
      this.#sendFinalGoaway(ErrorCode.NO_ERROR, "keepalive timeout");
      return this.#terminate("keepalive PING unanswered (http2.upstream.keepaliveTimeout)", true);
    }
    if (this.#keepaliveDue > 0 && now >= this.#keepaliveDue) {
      // Ping only a connection that has been quiet for a whole interval; a busy one is
      // checked again an interval after its last read.
      const quietSince = Math.max(
        this.#lastReadAt,
        this.#keepaliveDue - options.keepaliveIntervalMs,
      );
      if (now - quietSince >= options.keepaliveIntervalMs && this.#pingDue === 0) {
        writePing(this.#out, false, KEEPALIVE_PING, 0);
        this.#pingDue = now + options.keepaliveTimeoutMs;
        this.#markDirty();
        this.#keepaliveDue = now + options.keepaliveIntervalMs;
      } else {
        this.#keepaliveDue = quietSince + options.keepaliveIntervalMs;
      }
    }
    if (
      this.#streams.size === 0 && this.#pending.length === 0 && options.idleTimeoutMs > 0 &&
      now >= this.#idleSince + options.idleTimeoutMs
    ) {
      this.#sendFinalGoaway(ErrorCode.NO_ERROR, "idle timeout");
      return this.#terminate(undefined, true);
    }
    for (const stream of [...this.#blocked]) {
      if (stream.blockedSince > 0 && now >= stream.blockedSince + options.sendTimeoutMs) {
        this.resetStream(
          stream,
          ErrorCode.CANCEL,
          `no flow-control window for ${options.sendTimeoutMs}ms (http2.sendTimeout)`,
        );
      }
    }
    if (!this.#closed) this.#rearm(now);
  }
}
