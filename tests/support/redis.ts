/**
 * A real `redis-server` for tests: on a free loopback port, without persistence, with a
 * client attached. It can be killed and restarted on the same port to simulate an outage.
 * @module
 */
import { createClient } from "redis";
import { freePort, waitFor } from "./harness.ts";

/** A node-redis client connected to the test server. */
export type TestRedisClient = ReturnType<typeof createClient>;

/** Options for {@link startRedis}. */
export interface StartRedisOptions {
  /** Renames CONFIG away, as managed Redis services do, so discovery must fall back to polling. */
  readonly refuseConfig?: boolean;
  /** A port to use instead of a free one (e.g. one a proxy already tries to reach). */
  readonly port?: number;
  /** Requires this password (`requirepass`); it is part of {@link RedisServer.url}. */
  readonly password?: string;
}

/** A running test Redis. */
export interface RedisServer {
  /** `redis://127.0.0.1:port`, with the password when there is one. */
  readonly url: string;
  /** The TCP port, kept across {@link RedisServer.restart}. */
  readonly port: number;
  /** A client that reconnects on its own after a restart. */
  readonly client: TestRedisClient;
  /** SIGKILLs the server (an outage; data is lost, as there is no persistence). */
  kill(): Promise<void>;
  /** Starts a fresh server on the same port (after {@link RedisServer.kill}) and waits for it. */
  restart(): Promise<void>;
  /** Stops the server and the client. */
  stop(): Promise<void>;
}

/** Starts `redis-server` on a free port and waits until the client is ready. */
export async function startRedis(options: StartRedisOptions = {}): Promise<RedisServer> {
  const port = options.port ?? await freePort();
  const dir = await Deno.makeTempDir({ prefix: "switchyard-redis-" });
  const args = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"];
  args.push("--dir", dir);
  if (options.refuseConfig) args.push("--rename-command", "CONFIG", "");
  if (options.password) args.push("--requirepass", options.password);
  const spawn = () =>
    new Deno.Command("redis-server", { args, stdin: "null", stdout: "null", stderr: "null" })
      .spawn();
  let child = spawn();
  const auth = options.password ? `:${encodeURIComponent(options.password)}@` : "";
  const url = `redis://${auth}127.0.0.1:${port}`;
  const client: TestRedisClient = createClient({
    url,
    socket: { reconnectStrategy: () => 50 },
  });
  // Reconnect errors during an outage are expected; commands issued then simply fail.
  client.on("error", () => {});
  const ready = () => waitFor(() => client.isReady, { what: `redis on port ${port}` });
  client.connect().catch(() => {});
  await ready();

  const kill = async () => {
    try {
      child.kill("SIGKILL");
    } catch { /* already exited */ }
    await child.status;
    await waitFor(() => !client.isReady, { what: "client to notice the outage" });
  };
  return {
    url,
    port,
    client,
    kill,
    async restart() {
      child = spawn();
      await ready();
    },
    async stop() {
      client.destroy();
      await kill().catch(() => {});
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}
