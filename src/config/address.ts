/**
 * `host:port` addresses, the one format for listeners and backends.
 * @module
 */

/** A parsed `host:port`; IPv6 hosts are written `[::1]:50051` and stored without brackets. */
export interface HostPort {
  /** Hostname or IP literal, without IPv6 brackets. */
  readonly host: string;
  /** TCP port, 1–65535. */
  readonly port: number;
}

/**
 * The shape of `host:port`: a bracketed IPv6 address or a name or IPv4 address, and a port.
 * {@link parseHostPort} checks the parts further; this is also the `pattern` the published
 * JSON Schema gives addresses, so editors flag `"127.0.0.1"` or `"host: 80"` as the loader does.
 */
export const HOST_PORT_PATTERN: RegExp = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/;

// RFC 3986 §3.2.2 dec-octet: 0–255 without leading zeros, which inet_aton() reads as octal.
const DEC_OCTET = "(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)";
const IPV4_PATTERN = new RegExp(`^${DEC_OCTET}(?:\\.${DEC_OCTET}){3}$`);
// RFC 1123 §2.1: letters, digits and hyphens, 1–63 characters, no hyphen at either end.
const LABEL_PATTERN = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;
// RFC 1035 §2.3.4 caps a name at 255 octets on the wire: 253 characters as text.
const MAX_NAME_LENGTH = 253;
// A name whose last label is a decimal or hex number is an IPv4 address to inet_aton() and
// to the WHATWG URL parser ("ends in a number"): `127.1`, `0x7f.1` and `2130706433` all mean
// 127.0.0.1. Only the dotted quad is accepted, so one address has one spelling.
const NUMERIC_LABEL = /^(?:\d+|0x[0-9a-f]*)$/i;

/** Parses `host:port`; returns `undefined` when the text is not a valid address. */
export function parseHostPort(text: string): HostPort | undefined {
  const match = HOST_PORT_PATTERN.exec(text);
  if (!match) return undefined;
  const host = parseHost(match[1]);
  const port = Number(match[2]);
  if (host === undefined || port < 1 || port > 65_535) return undefined;
  return { host, port };
}

/**
 * Parses a host as written in an address or a `Host` header: a dotted-quad IPv4 address, an
 * IPv6 address in brackets (RFC 3986 §3.2.2), or an RFC 1123 host name. Returns it without
 * brackets, or `undefined` when it is none of these.
 */
export function parseHost(text: string): string | undefined {
  if (text.startsWith("[") && text.endsWith("]")) {
    const ip = text.slice(1, -1);
    return isIPv6(ip) ? ip : undefined;
  }
  return IPV4_PATTERN.test(text) || isHostName(text) ? text : undefined;
}

function isHostName(text: string): boolean {
  const labels = text.split(".");
  return text.length <= MAX_NAME_LENGTH && labels.every((label) => LABEL_PATTERN.test(label)) &&
    !NUMERIC_LABEL.test(labels[labels.length - 1]);
}

function isIPv6(text: string): boolean {
  // The WHATWG URL parser implements the RFC 4291 §2.2 text forms, IPv4-embedded included.
  if (!/^[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*$/.test(text)) return false;
  return URL.canParse(`http://[${text}]/`);
}

/** Formats a {@link HostPort} back into its canonical `host:port` text. */
export function formatHostPort({ host, port }: HostPort): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/** True for addresses that only the local machine can reach (127.0.0.0/8, ::1, localhost). */
export function isLoopbackHost(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127(?:\.\d{1,3}){3}$/.test(host);
}
