/**
 * gRPC-Web framing (PROTOCOL-WEB.md in grpc/grpc): messages keep gRPC's 5-byte prefix (flag,
 * 32-bit length), trailers travel as a final frame whose flag has the 0x80 bit, and the
 * `-text` content types carry all of it base64-encoded.
 * @module
 */

import { concatBytes } from "../h2/bytes.ts";

/** The flag bit of a trailer frame. */
const TRAILER_FLAG = 0x80;
const PREFIX_BYTES = 5;

const encoder = new TextEncoder();

/** A request body gRPC-Web cannot carry; its message names what is wrong. */
export class MalformedRequest extends Error {}

/** A request body larger than the limit. */
export class RequestTooLarge extends Error {}

/** A request body with more than one message: client or bidi streaming. */
export class StreamingRequest extends Error {}

/**
 * Checks a whole request body: complete message frames, none of them a trailer frame, and at
 * most one message (browsers send unary and server-streaming calls).
 */
export function checkRequestFrames(body: Uint8Array): void {
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  let messages = 0;
  for (let offset = 0; offset < body.length;) {
    if (body.length - offset < PREFIX_BYTES) {
      throw new MalformedRequest("the request body ends inside a message prefix");
    }
    if ((body[offset] & TRAILER_FLAG) !== 0) {
      throw new MalformedRequest("a request cannot carry a trailer frame");
    }
    offset += PREFIX_BYTES + view.getUint32(offset + 1);
    if (offset > body.length) throw new MalformedRequest("the request body ends inside a message");
    messages++;
  }
  if (messages > 1) {
    throw new StreamingRequest(
      "gRPC-Web carries one request message: client and bidi streaming are not supported",
    );
  }
}

/**
 * Decodes a `-text` request body: base64, possibly several padded strings one after another
 * (the protocol lets each frame be encoded on its own).
 */
export function decodeBase64Body(text: string): Uint8Array {
  const parts: Uint8Array[] = [];
  let start = 0;
  for (let i = 3; i < text.length; i += 4) {
    if (text[i] !== "=" || i + 1 === text.length) continue;
    parts.push(decodeBase64(text.slice(start, i + 1)));
    start = i + 1;
  }
  parts.push(decodeBase64(text.slice(start)));
  return parts.length === 1 ? parts[0] : concatBytes(...parts);
}

function decodeBase64(text: string): Uint8Array {
  try {
    return Uint8Array.fromBase64(text, { lastChunkHandling: "strict" });
  } catch {
    throw new MalformedRequest("the body is not valid base64");
  }
}

/** Encodes bytes as one padded base64 string (each response piece is encoded on its own). */
export function encodeBase64(bytes: Uint8Array): Uint8Array {
  return encoder.encode(bytes.toBase64());
}

/**
 * The trailer frame for a header list of trailers: `name: value\r\n` lines (HTTP/1 header
 * syntax, lower-case names), behind a prefix with the 0x80 flag.
 */
export function trailerFrame(trailers: readonly string[]): Uint8Array {
  let text = "";
  for (let i = 0; i < trailers.length; i += 2) text += `${trailers[i]}: ${trailers[i + 1]}\r\n`;
  // Values are latin1 strings, one char per octet, as the engine delivers them.
  const frame = new Uint8Array(PREFIX_BYTES + text.length);
  frame[0] = TRAILER_FLAG;
  new DataView(frame.buffer).setUint32(1, text.length);
  for (let i = 0; i < text.length; i++) frame[PREFIX_BYTES + i] = text.charCodeAt(i);
  return frame;
}
