/**
 * The rules a received header list must follow (RFC 9113 §8.2, §8.3). A list that breaks
 * them is malformed, a stream error of type PROTOCOL_ERROR (§8.1.1): only that stream ends,
 * the connection and its other streams go on.
 * @module
 */

/** Connection-specific fields that HTTP/2 forbids (RFC 9113 §8.2.2). */
const CONNECTION_SPECIFIC = new Set([
  "connection",
  "proxy-connection",
  "keep-alive",
  "transfer-encoding",
  "upgrade",
]);

const REQUEST_PSEUDO = new Set([":method", ":scheme", ":authority", ":path"]);

/**
 * Why a field name is invalid, or `undefined`. Names are lower case and free of controls,
 * spaces, and octets above 0x7e (RFC 9113 §8.2.1); a leading colon marks a pseudo-header.
 */
function nameProblem(name: string): string | undefined {
  if (name.length === 0) return "empty field name";
  for (let i = name.charCodeAt(0) === 0x3a ? 1 : 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c <= 0x20 || c >= 0x7f || (c >= 0x41 && c <= 0x5a) || c === 0x3a) {
      return `invalid field name ${JSON.stringify(name)}`;
    }
  }
  return undefined;
}

/** Why a field value is invalid: NUL, CR, LF, or white space at either end (§8.2.1). */
function valueProblem(name: string, value: string): string | undefined {
  const length = value.length;
  if (length === 0) return undefined;
  const first = value.charCodeAt(0);
  const last = value.charCodeAt(length - 1);
  if (first === 0x20 || first === 0x09 || last === 0x20 || last === 0x09) {
    return `field ${name} has white space at either end`;
  }
  for (let i = 0; i < length; i++) {
    const c = value.charCodeAt(i);
    if (c === 0 || c === 0x0a || c === 0x0d) return `field ${name} contains NUL, CR or LF`;
  }
  return undefined;
}

/** Checks the regular fields from `start` on; pseudo-headers there are misplaced. */
function regularFieldsProblem(headers: readonly string[], start: number): string | undefined {
  for (let i = start; i < headers.length; i += 2) {
    const name = headers[i];
    if (name.charCodeAt(0) === 0x3a) return `pseudo-header ${name} after regular fields`;
    const problem = nameProblem(name) ?? valueProblem(name, headers[i + 1]);
    if (problem) return problem;
    if (CONNECTION_SPECIFIC.has(name)) return `connection-specific field ${name}`;
    if (name === "te" && headers[i + 1] !== "trailers") return `te other than "trailers"`;
  }
  return undefined;
}

/**
 * Why a request header list is malformed (RFC 9113 §8.3.1), or `undefined`: pseudo-headers
 * only `:method`, `:scheme`, `:authority`, `:path`, each at most once, before every regular
 * field; `:method`, `:scheme` and a non-empty `:path` present (CONNECT has its own shape).
 */
export function requestHeadersProblem(headers: readonly string[]): string | undefined {
  let i = 0;
  let method: string | undefined;
  let scheme = false;
  let path: string | undefined;
  let authority = false;
  for (; i < headers.length && headers[i].charCodeAt(0) === 0x3a; i += 2) {
    const name = headers[i];
    if (!REQUEST_PSEUDO.has(name)) return `unknown pseudo-header ${name}`;
    const value = headers[i + 1];
    if (name === ":method") {
      if (method !== undefined) return "duplicate :method";
      method = value;
    } else if (name === ":scheme") {
      if (scheme) return "duplicate :scheme";
      scheme = true;
    } else if (name === ":path") {
      if (path !== undefined) return "duplicate :path";
      path = value;
    } else {
      if (authority) return "duplicate :authority";
      authority = true;
    }
  }
  if (method === undefined) return "missing :method";
  if (method === "CONNECT") {
    if (scheme || path !== undefined || !authority) return "malformed CONNECT request";
  } else {
    if (!scheme) return "missing :scheme";
    if (path === undefined || path.length === 0) return "missing or empty :path";
  }
  return regularFieldsProblem(headers, i);
}

/** Why a response header list is malformed (RFC 9113 §8.3.2), or `undefined`. */
export function responseHeadersProblem(headers: readonly string[]): string | undefined {
  if (headers.length < 2 || headers[0] !== ":status") return "missing :status";
  if (headers.length > 2 && headers[2] === ":status") return "duplicate :status";
  return regularFieldsProblem(headers, 2);
}

/** Why a trailer list is malformed: trailers carry no pseudo-headers (RFC 9113 §8.1). */
export function trailersProblem(headers: readonly string[]): string | undefined {
  return regularFieldsProblem(headers, 0);
}
