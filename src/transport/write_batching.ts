/**
 * Batches a connection's socket writes within one event-loop turn.
 *
 * Deno 2.9's `node:http2` hands every serialized frame to the socket as a write of its own,
 * so a unary call through the proxy cost six `sendto` syscalls (request HEADERS, DATA and an
 * empty END_STREAM DATA upstream; response HEADERS, DATA and trailers downstream) and about
 * a third of the proxy's CPU. Corking the socket when a call starts writing and uncorking it
 * from `setImmediate` turns each turn's frames, from every call on the connection, into one
 * `writev`. A frame waits at most until the end of the turn that produced it.
 *
 * Trailers need care: `sendTrailers()` serializes them only in a `setImmediate` callback of
 * its own, so the release for a turn that sends trailers is queued after that callback.
 * @module
 */
import type { Http2Session } from "node:http2";

const BATCH = Symbol("writeBatch");

interface WriteBatch {
  readonly cork: () => void;
  readonly uncork: () => void;
  /** Releases queued with `setImmediate`; the socket is corked while any is queued. */
  pending: number;
  /** Streams open on the session, as reported by {@link noteStreamOpened}/{@link noteStreamClosed}. */
  streams: number;
}

/**
 * Below this many open streams a connection is not corked. Holding one call's frames until
 * the end of the turn saved no CPU at concurrency 1 but added about 60 µs to its latency;
 * the gain comes from many calls sharing one writev.
 */
const MIN_STREAMS_TO_BATCH = 2;

type BatchedSession = Http2Session & { [BATCH]?: WriteBatch };

/** Lets {@link holdWrites} batch this session's writes; call it once per session. */
export function enableWriteBatching(session: Http2Session): void {
  // `session.socket` is a proxy that passes `cork` and `uncork` through, bound to the socket.
  const socket = session.socket;
  (session as BatchedSession)[BATCH] = {
    cork: socket.cork,
    uncork: socket.uncork,
    pending: 0,
    streams: 0,
  };
}

function release(batch: WriteBatch, hops: number): void {
  if (hops > 1) setImmediate(release, batch, hops - 1);
  else if (--batch.pending === 0) batch.uncork();
}

function batchOf(session: Http2Session | undefined): WriteBatch | undefined {
  return (session as BatchedSession | undefined)?.[BATCH];
}

/** Counts a stream opened on `session`, so batching knows when there is company to batch. */
export function noteStreamOpened(session: Http2Session | undefined): void {
  const batch = batchOf(session);
  if (batch !== undefined) batch.streams++;
}

/** Counts a stream of `session` as closed again. */
export function noteStreamClosed(session: Http2Session | undefined): void {
  const batch = batchOf(session);
  if (batch !== undefined) batch.streams--;
}

/**
 * Holds the session's socket writes until the end of this event-loop turn (its
 * `setImmediate` phase). Does nothing for a session without batching.
 */
export function holdWrites(session: Http2Session | undefined): void {
  const batch = batchOf(session);
  if (batch === undefined || batch.pending > 0 || batch.streams < MIN_STREAMS_TO_BATCH) return;
  batch.cork();
  batch.pending++;
  setImmediate(release, batch, 1);
}

/**
 * Holds the session's socket writes until every `setImmediate` callback queued so far has
 * run and, with `hops` 2, also those that they queue. `node:http2` defers some frames that
 * way: trailers by one hop after `sendTrailers()`, a client stream's END_STREAM by two after
 * `end()` when a write is in flight.
 */
export function holdWritesThroughImmediates(
  session: Http2Session | undefined,
  hops: 1 | 2,
): void {
  const batch = batchOf(session);
  if (batch === undefined || (batch.pending === 0 && batch.streams < MIN_STREAMS_TO_BATCH)) return;
  if (batch.pending++ === 0) batch.cork();
  setImmediate(release, batch, hops);
}
