/**
 * RST_STREAM and GOAWAY frames this thread's connections sent and received, by the peer's
 * side (client or upstream), direction and error code. The engine only adds to typed arrays;
 * the metrics read them at scrape time (`switchyard_http2_resets_total`,
 * `switchyard_http2_goaway_total`), so counting costs no allocation on the data path.
 * @module
 */
import { errorCodeName } from "./frame.ts";

/** Error codes counted by name: RFC 9113 §7 defines 0x0–0xd; any other counts as "OTHER". */
const NAMED_CODES = 0xe;

/** Who is on the other end of a connection. */
export type FramePeer = "client" | "upstream";
/** Whether this proxy sent the frame or received it. */
export type FrameDirection = "sent" | "received";

const PEERS: readonly FramePeer[] = ["client", "upstream"];
const DIRECTIONS: readonly FrameDirection[] = ["sent", "received"];
const SLOTS = PEERS.length * DIRECTIONS.length * (NAMED_CODES + 1);

/** RST_STREAM frames, indexed by {@link frameCountIndex}. */
export const resetCounts: Float64Array = new Float64Array(SLOTS);
/** GOAWAY frames, indexed by {@link frameCountIndex}. */
export const goawayCounts: Float64Array = new Float64Array(SLOTS);

/** The slot of a frame: `server` is true on connections whose peer is a client. */
export function frameCountIndex(server: boolean, sent: boolean, code: number): number {
  const codeSlot = code >= 0 && code < NAMED_CODES ? code : NAMED_CODES;
  return ((server ? 0 : 2) + (sent ? 0 : 1)) * (NAMED_CODES + 1) + codeSlot;
}

/** One counted slot, labelled for the metrics. */
export interface FrameCount {
  readonly peer: FramePeer;
  readonly direction: FrameDirection;
  /** The RFC 9113 §7 name of the code, or "OTHER" for codes it does not define. */
  readonly code: string;
  readonly count: number;
}

/** The non-zero slots of `counts`, labelled. */
export function frameCountsOf(counts: Float64Array): FrameCount[] {
  const result: FrameCount[] = [];
  for (let i = 0; i < counts.length; i++) {
    if (counts[i] === 0) continue;
    const codeSlot = i % (NAMED_CODES + 1);
    const group = (i - codeSlot) / (NAMED_CODES + 1);
    result.push({
      peer: PEERS[group >> 1],
      direction: DIRECTIONS[group & 1],
      code: codeSlot === NAMED_CODES ? "OTHER" : errorCodeName(codeSlot),
      count: counts[i],
    });
  }
  return result;
}
