/**
 * A loopback TCP listener for backends that tests write by hand below HTTP/2 (silent,
 * blackholed): it keeps every accepted connection so that closing it closes them all.
 * @module
 */

/** A listening hand-rolled backend. */
export interface TcpBackend {
  /** `127.0.0.1:port`. */
  readonly address: string;
  /** Every connection accepted so far, in order. */
  readonly conns: readonly Deno.Conn[];
  /** Stops listening and closes every connection the proxy has not closed. */
  close(): Promise<void>;
}

/** Listens on a free loopback port and hands each accepted connection to `onConnection`. */
export function startTcpBackend(
  onConnection: (conn: Deno.Conn, index: number) => void,
): TcpBackend {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0, transport: "tcp" });
  const conns: Deno.Conn[] = [];
  const accepting = (async () => {
    try {
      for await (const conn of listener) {
        conns.push(conn);
        onConnection(conn, conns.length - 1);
      }
    } catch { /* the listener was closed */ }
  })();
  return {
    address: `127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    conns,
    async close() {
      listener.close();
      await accepting;
      for (const conn of conns) {
        try {
          conn.close();
        } catch { /* the proxy closed it */ }
      }
    },
  };
}
