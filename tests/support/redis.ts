/**
 * A real `redis-server` for tests: on a free loopback port, without persistence, with a
 * client attached. It can be killed and restarted on the same port to simulate an outage.
 * Also a Sentinel set (master, replica, sentinel) and a three-master Redis Cluster.
 * @module
 */
import { createClient, createCluster } from "redis";
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

/** One `redis-server` (or sentinel) process of a replicated set or a Redis Cluster. */
interface RedisProcess {
  readonly child: Deno.ChildProcess;
}

function spawnRedis(program: string, args: string[], dir: string): RedisProcess {
  const child = new Deno.Command(program, {
    args,
    stdin: "null",
    stdout: "null",
    stderr: "null",
    cwd: dir,
  }).spawn();
  return { child };
}

function serverArgs(port: number, dir: string, extra: string[] = []): string[] {
  return [
    "--port",
    String(port),
    "--bind",
    "127.0.0.1",
    "--save",
    "",
    "--appendonly",
    "no",
    "--dir",
    dir,
    ...extra,
  ];
}

async function stopProcess(process: RedisProcess): Promise<void> {
  try {
    process.child.kill("SIGKILL");
  } catch { /* already exited */ }
  await process.child.status;
}

/** A test client on one node that fails fast rather than queueing while it is down. */
function nodeClient(port: number): TestRedisClient {
  const client: TestRedisClient = createClient({
    url: `redis://127.0.0.1:${port}`,
    socket: { reconnectStrategy: () => 50 },
  });
  client.on("error", () => {});
  client.connect().catch(() => {});
  return client;
}

/** True when the Debian `redis-sentinel` binary (a link to redis-server) is installed. */
function sentinelProgram(): string {
  try {
    new Deno.Command("redis-sentinel", { args: ["--version"], stdout: "null", stderr: "null" })
      .outputSync();
    return "redis-sentinel";
  } catch {
    // `redis-server FILE --sentinel` is the same program in sentinel mode.
    return "redis-server";
  }
}

/** A master, one replica and one sentinel watching them, on free loopback ports. */
export interface RedisSentinelSet {
  /** The name the sentinel knows the master by. */
  readonly masterName: string;
  /** The sentinel's `host:port`. */
  readonly sentinel: string;
  /** The first master's port. */
  readonly masterPort: number;
  /** The replica's port (the master after a failover). */
  readonly replicaPort: number;
  /** Clients on the master and the replica, by port (they reconnect on their own). */
  readonly clients: ReadonlyMap<number, TestRedisClient>;
  /** The `host:port` the sentinel names as master now. */
  currentMaster(): Promise<string>;
  /** SIGKILLs the master: the sentinel promotes the replica after `down-after-milliseconds`. */
  killMaster(): Promise<void>;
  /** Stops every process and removes their directories. */
  stop(): Promise<void>;
}

/**
 * Starts a master, a replica of it, and (once the replica is in sync, so that the sentinel
 * finds it in the master's first INFO) a sentinel with quorum 1 that considers the master
 * down after `downAfterMs` and fails over at once.
 */
export async function startRedisSentinel(
  { masterName = "switchyard-test", downAfterMs = 500 } = {},
): Promise<RedisSentinelSet> {
  const [masterPort, replicaPort, sentinelPort] = [
    await freePort(),
    await freePort(),
    await freePort(),
  ];
  const dirs = await Promise.all(
    [0, 1, 2].map(() => Deno.makeTempDir({ prefix: "switchyard-redis-ha-" })),
  );
  const processes: RedisProcess[] = [];
  const clients = new Map<number, TestRedisClient>();
  const stop = async () => {
    for (const client of clients.values()) client.destroy();
    sentinelClient?.destroy();
    await Promise.all(processes.map(stopProcess));
    await Promise.all(dirs.map((dir) => Deno.remove(dir, { recursive: true }).catch(() => {})));
  };
  let sentinelClient: TestRedisClient | undefined;
  try {
    processes.push(spawnRedis("redis-server", serverArgs(masterPort, dirs[0]), dirs[0]));
    const replicaOf = ["--replicaof", "127.0.0.1", String(masterPort)];
    processes.push(
      spawnRedis("redis-server", serverArgs(replicaPort, dirs[1], replicaOf), dirs[1]),
    );
    clients.set(masterPort, nodeClient(masterPort));
    clients.set(replicaPort, nodeClient(replicaPort));
    await waitFor(async () => {
      const replicaClient = clients.get(replicaPort)!;
      if (!replicaClient.isReady) return false;
      return (await replicaClient.info("replication")).includes("master_link_status:up");
    }, { what: "the replica to sync with the master" });

    const config = `${dirs[2]}/sentinel.conf`;
    await Deno.writeTextFile(
      config,
      [
        `port ${sentinelPort}`,
        "bind 127.0.0.1",
        `dir ${dirs[2]}`,
        `sentinel monitor ${masterName} 127.0.0.1 ${masterPort} 1`,
        `sentinel down-after-milliseconds ${masterName} ${downAfterMs}`,
        `sentinel failover-timeout ${masterName} 2000`,
        `sentinel parallel-syncs ${masterName} 1`,
      ].join("\n") + "\n",
    );
    const program = sentinelProgram();
    const sentinelArgs = program === "redis-sentinel" ? [config] : [config, "--sentinel"];
    processes.push(spawnRedis(program, sentinelArgs, dirs[2]));
    sentinelClient = nodeClient(sentinelPort);
    const sentinelReady = sentinelClient;
    await waitFor(async () => {
      if (!sentinelReady.isReady) return false;
      const replicas = await sentinelReady.sendCommand(["SENTINEL", "REPLICAS", masterName]);
      return Array.isArray(replicas) && replicas.length === 1;
    }, { what: "the sentinel to find the replica" });
  } catch (error) {
    await stop();
    throw error;
  }
  const sentinel = sentinelClient;
  return {
    masterName,
    sentinel: `127.0.0.1:${sentinelPort}`,
    masterPort,
    replicaPort,
    clients,
    async currentMaster() {
      const reply = await sentinel.sendCommand(["SENTINEL", "GET-MASTER-ADDR-BY-NAME", masterName]);
      const [host, port] = reply as unknown as [string, string];
      return `${host}:${port}`;
    },
    async killMaster() {
      await stopProcess(processes[0]);
    },
    stop,
  };
}

/** A Redis Cluster of three masters (and optionally a replica each) on free loopback ports. */
export interface RedisClusterSet {
  /** The nodes' `host:port`s (masters first, as `redis-cli --cluster create` assigns them). */
  readonly nodes: readonly string[];
  /** A node-redis Cluster client on it. */
  readonly client: ReturnType<typeof createCluster>;
  /** Clients on each node, in {@link nodes} order (they reconnect on their own). */
  readonly nodeClients: readonly TestRedisClient[];
  /** SIGKILLs the node at `nodes[index]`. */
  kill(index: number): Promise<void>;
  /** Stops every node and removes their directories. */
  stop(): Promise<void>;
}

/**
 * Starts three `cluster-enabled` nodes (six with `replicas: 1`), joins them with `redis-cli
 * --cluster create` (slots split evenly over three masters) and waits until every node
 * reports `cluster_state:ok`. Nodes consider a peer failed after one second. `ports` are used
 * first (e.g. ones a proxy already tries to reach).
 */
export async function startRedisCluster(
  { replicas = 0, ports = [] as number[] } = {},
): Promise<RedisClusterSet> {
  ports = [...ports];
  while (ports.length < 3 * (1 + replicas)) ports.push(await freePort());
  const dirs = await Promise.all(
    ports.map(() => Deno.makeTempDir({ prefix: "switchyard-redis-cluster-" })),
  );
  const processes: RedisProcess[] = [];
  const nodeClients: TestRedisClient[] = [];
  let client: ReturnType<typeof createCluster> | undefined;
  const stop = async () => {
    client?.destroy();
    for (const nodeClient of nodeClients) nodeClient.destroy();
    await Promise.all(processes.map(stopProcess));
    await Promise.all(dirs.map((dir) => Deno.remove(dir, { recursive: true }).catch(() => {})));
  };
  const nodes = ports.map((port) => `127.0.0.1:${port}`);
  try {
    for (const [index, port] of ports.entries()) {
      const args = serverArgs(port, dirs[index], [
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
        "--cluster-node-timeout",
        "1000",
      ]);
      processes.push(spawnRedis("redis-server", args, dirs[index]));
      nodeClients.push(nodeClient(port));
    }
    await waitFor(() => nodeClients.every((nodeClient) => nodeClient.isReady), {
      what: "the cluster nodes to start",
    });
    const create = await new Deno.Command("redis-cli", {
      args: ["--cluster", "create", ...nodes, "--cluster-replicas", String(replicas)]
        .concat(["--cluster-yes"]),
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!create.success) {
      throw new Error(
        `redis-cli --cluster create failed: ${new TextDecoder().decode(create.stderr)}`,
      );
    }
    await waitFor(async () => {
      const states = await Promise.all(nodeClients.map((nodeClient) => nodeClient.clusterInfo()));
      return states.every((info) => String(info).includes("cluster_state:ok"));
    }, { what: "cluster_state:ok on every node" });
    await waitFor(async () => {
      const roles = await Promise.all(
        nodeClients.map((nodeClient) => nodeClient.info("replication")),
      );
      return roles.filter((info) => info.includes("master_link_status:up")).length === 3 * replicas;
    }, { what: "every replica to sync" });
    client = createCluster({
      rootNodes: ports.map((port) => ({ socket: { host: "127.0.0.1", port } })),
    });
    client.on("error", () => {});
    await client.connect();
  } catch (error) {
    await stop();
    throw error;
  }
  return { nodes, client, nodeClients, kill: (index) => stopProcess(processes[index]), stop };
}
