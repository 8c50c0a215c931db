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

const HOST_PORT_PATTERN = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/;

/** Parses `host:port`; returns `undefined` when the text is not a valid address. */
export function parseHostPort(text: string): HostPort | undefined {
  const match = HOST_PORT_PATTERN.exec(text);
  if (!match) return undefined;
  const port = Number(match[3]);
  if (port < 1 || port > 65_535) return undefined;
  return { host: match[1] ?? match[2], port };
}

/** Formats a {@link HostPort} back into its canonical `host:port` text. */
export function formatHostPort({ host, port }: HostPort): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/** True for addresses that only the local machine can reach (127.0.0.0/8, ::1, localhost). */
export function isLoopbackHost(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127(?:\.\d{1,3}){3}$/.test(host);
}
