/**
 * The W3C `traceparent` header (Trace Context Level 1, §3.2): parsed from a client's request
 * and formatted for the request the proxy sends on. Plain string work, no tracing library.
 * @module
 */

/** What a valid `traceparent` carries (§3.2.2). */
export interface Traceparent {
  /** `trace-id`: 32 lowercase hex digits, not all zero (§3.2.2.3). */
  readonly traceId: string;
  /** `parent-id`: the caller's span, 16 lowercase hex digits, not all zero (§3.2.2.4). */
  readonly parentId: string;
  /** `trace-flags` as a number; only bit 0, `sampled`, is defined (§3.2.2.5). */
  readonly flags: number;
}

/** The length of a version-00 `traceparent`: `2 + 1 + 32 + 1 + 16 + 1 + 2`. */
const LENGTH_00 = 55;
/** Where each field starts, for version 00 and (§3.2.4) for every later version. */
const TRACE_ID_AT = 3;
const PARENT_ID_AT = 36;
const FLAGS_AT = 53;
const DASH = 0x2d;
/** `trace-flags` bit 0 (§3.2.2.5.1). */
export const SAMPLED_FLAG = 0x01;

const ZERO_TRACE_ID = "00000000000000000000000000000000";
const ZERO_PARENT_ID = "0000000000000000";

/** The value of a lowercase hex digit (`HEXDIGLC`, §3.2.2), or -1. */
function hexValue(code: number): number {
  if (code >= 0x30 && code <= 0x39) return code - 0x30;
  if (code >= 0x61 && code <= 0x66) return code - 0x61 + 10;
  return -1;
}

/** True when `value[from, from + length)` is all `HEXDIGLC`. */
function isLowerHex(value: string, from: number, length: number): boolean {
  for (let i = from; i < from + length; i++) {
    if (hexValue(value.charCodeAt(i)) < 0) return false;
  }
  return true;
}

/**
 * Parses a `traceparent` value; `undefined` when the header must be ignored (§3.2.2):
 * - `version` is two `HEXDIGLC` followed by a dash, and not `ff` (§3.2.2.1);
 * - version `00` is exactly `00-<trace-id>-<parent-id>-<trace-flags>` (§3.2.2.2);
 * - a higher version is parsed by the version-00 rules, as §3.2.4 asks: at least 55
 *   characters, and the flags are either the end of the value or followed by a dash (what
 *   follows is not looked at);
 * - `trace-id` and `parent-id` are lowercase hex and not all zero (§3.2.2.3, §3.2.2.4);
 *   `trace-flags` is two lowercase hex digits (§3.2.2.5).
 */
export function parseTraceparent(value: string): Traceparent | undefined {
  if (value.length < LENGTH_00) return undefined;
  const high = hexValue(value.charCodeAt(0));
  const low = hexValue(value.charCodeAt(1));
  if (high < 0 || low < 0 || value.charCodeAt(2) !== DASH) return undefined;
  const version = high * 16 + low;
  if (version === 0xff) return undefined;
  if (
    version === 0
      ? value.length !== LENGTH_00
      : value.length > LENGTH_00 && value.charCodeAt(LENGTH_00) !== DASH
  ) {
    return undefined;
  }
  if (value.charCodeAt(PARENT_ID_AT - 1) !== DASH || value.charCodeAt(FLAGS_AT - 1) !== DASH) {
    return undefined;
  }
  if (
    !isLowerHex(value, TRACE_ID_AT, 32) || !isLowerHex(value, PARENT_ID_AT, 16) ||
    !isLowerHex(value, FLAGS_AT, 2)
  ) {
    return undefined;
  }
  const traceId = value.slice(TRACE_ID_AT, TRACE_ID_AT + 32);
  const parentId = value.slice(PARENT_ID_AT, PARENT_ID_AT + 16);
  if (traceId === ZERO_TRACE_ID || parentId === ZERO_PARENT_ID) return undefined;
  const flags = hexValue(value.charCodeAt(FLAGS_AT)) * 16 +
    hexValue(value.charCodeAt(FLAGS_AT + 1));
  return { traceId, parentId, flags };
}

/**
 * A version-00 `traceparent` naming `spanId` as the parent (§3.2.2.2). Only the `sampled`
 * flag is set or not: other flags must be sent as zero (§3.2.2.5.2), and a higher version
 * received is downgraded to 00 (§3.4).
 */
export function formatTraceparent(traceId: string, spanId: string, sampled: boolean): string {
  return `00-${traceId}-${spanId}-${sampled ? "01" : "00"}`;
}
