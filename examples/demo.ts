/**
 * `deno task demo`: three example greeter backends behind Switchyard.
 *
 * 1. `pick_first`: every call goes to the first backend.
 * 2. The picker is switched live to `round_robin` through the admin API: calls spread.
 * 3. One backend turns NOT_SERVING: active health checks take it out and traffic moves away.
 * 4. Affinity: calls carrying `x-client-id` go to a cluster with an affinity table (kept in
 *    memory here; `store: "redis"` shares it between proxies). Each id keeps its backend, and
 *    keeps it while a new backend is added through the admin API; new ids reach the new one.
 *
 * Everything runs on loopback with free ports and is stopped at the end.
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import net from "node:net";
import { type GreeterBackend, GreeterClient, startGreeterBackend } from "./greeter_backend.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

async function until(condition: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (!(await condition().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`demo: timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function sayHello(
  client: grpc.Client,
  name: string,
  metadata = new grpc.Metadata(),
): Promise<{ backend: string }> {
  return new Promise((resolve, reject) => {
    // deno-lint-ignore no-explicit-any
    (client as any).SayHello(
      { name },
      metadata,
      (error: Error | null, reply: { backend: string }) => error ? reject(error) : resolve(reply),
    );
  });
}

/** Calls once as each client id; returns who answered each. */
async function owners(client: grpc.Client, ids: readonly string[]): Promise<Map<string, string>> {
  const answered = new Map<string, string>();
  for (const id of ids) {
    const metadata = new grpc.Metadata();
    metadata.set("x-client-id", id);
    answered.set(id, (await sayHello(client, id, metadata)).backend);
  }
  return answered;
}

function describeOwners(answered: ReadonlyMap<string, string>): string {
  return [...answered].map(([id, backend]) => `${id}→${backend}`).join(" ");
}

async function round(client: grpc.Client, title: string, calls: number): Promise<void> {
  console.log(`\n== ${title}`);
  const totals = new Map<string, number>();
  const answered: string[] = [];
  for (let i = 0; i < calls; i++) {
    const { backend } = await sayHello(client, `call ${i + 1}`);
    answered.push(backend);
    totals.set(backend, (totals.get(backend) ?? 0) + 1);
  }
  console.log(`   answered by: ${answered.join(" ")}`);
  console.log(`   totals:      ${[...totals].map(([b, n]) => `${b}=${n}`).join("  ")}`);
}

const backends: GreeterBackend[] = [];
for (const name of ["backend-1", "backend-2", "backend-3"]) {
  backends.push(await startGreeterBackend(name));
}
// Not in any cluster yet: step 4 adds it to the affinity cluster through the admin API.
const late = await startGreeterBackend("backend-4");
const [listen, admin, grpcWeb] = [
  `127.0.0.1:${await freePort()}`,
  `127.0.0.1:${await freePort()}`,
  `127.0.0.1:${await freePort()}`,
];
const configFile = await Deno.makeTempFile({ suffix: ".json" });
await Deno.writeTextFile(
  configFile,
  JSON.stringify({
    listen,
    admin: { listen: admin },
    grpcWeb: { listen: grpcWeb },
    log: { level: "warning" },
    clusters: {
      greeter: {
        picker: "pick_first",
        backends: backends.map((b) => b.address),
        healthCheck: { interval: "300ms", timeout: "250ms", healthyThreshold: 1 },
      },
      sessions: {
        picker: "round_robin",
        backends: backends.map((b) => b.address),
        affinity: { key: "header:x-client-id", store: "local", ttl: "10m" },
      },
    },
    routes: [
      {
        service: "helloworld.Greeter",
        headers: [{ name: "x-client-id", present: true }],
        cluster: "sessions",
      },
      { service: "helloworld.Greeter", cluster: "greeter" },
    ],
  }),
);
console.log(`backends: ${backends.map((b) => `${b.name}@${b.address}`).join(", ")}`);
console.log(`switchyard: proxy on ${listen}, gRPC-Web on ${grpcWeb}, admin on http://${admin}/`);
const proxy = new Deno.Command(Deno.execPath(), {
  args: ["run", "-A", MAIN, "--config", configFile],
  stdout: "inherit",
  stderr: "inherit",
}).spawn();
const adminUrl = `http://${admin}`;
const client = new GreeterClient(listen, grpc.credentials.createInsecure());
try {
  await until(async () => (await fetch(`${adminUrl}/ready`)).ok, "the proxy to be ready");
  await round(client, "pick_first: the first backend in list order takes every call", 6);

  const switched = await fetch(`${adminUrl}/clusters/greeter/picker`, {
    method: "PUT",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name: "round_robin" }),
  });
  if (!switched.ok) throw new Error(`picker switch failed: ${await switched.text()}`);
  // pick_first connected only the first backend; round_robin now dials the others too.
  await until(async () => {
    const cluster = await (await fetch(`${adminUrl}/clusters/greeter`)).json();
    // deno-lint-ignore no-explicit-any
    return cluster.backends.every((b: any) => b.state === "READY");
  }, "round_robin to connect every backend");
  await round(client, "round_robin (switched live via the admin API): calls spread evenly", 9);

  const sick = backends[1];
  sick.setServing("NOT_SERVING");
  const flippedAt = Date.now();
  await until(async () => {
    const cluster = await (await fetch(`${adminUrl}/clusters/greeter`)).json();
    // deno-lint-ignore no-explicit-any
    return cluster.backends.some((b: any) =>
      b.address === sick.address && b.health === "unhealthy"
    );
  }, `${sick.name} to be marked unhealthy`);
  console.log(
    `\n${sick.name} reported NOT_SERVING; health checks took it out after ${
      Date.now() - flippedAt
    }ms`,
  );
  await round(client, `round_robin with ${sick.name} unhealthy: traffic moves away`, 9);

  // What a browser sends (examples/grpc_web.html does the same from a page): one framed
  // message over HTTP/1.1; the answer ends with a trailer frame.
  console.log("\n== gRPC-Web: the same cluster over HTTP/1.1, as a browser calls it");
  const request = new TextEncoder().encode(JSON.stringify({ name: "gRPC-Web" }));
  const body = new Uint8Array(5 + request.length);
  new DataView(body.buffer).setUint32(1, request.length);
  body.set(request, 5);
  const answer = new Uint8Array(
    await (await fetch(`http://${grpcWeb}/helloworld.Greeter/SayHello`, {
      method: "POST",
      headers: { "content-type": "application/grpc-web+proto" },
      body,
    })).arrayBuffer(),
  );
  const length = new DataView(answer.buffer).getUint32(1);
  const trailer = new TextDecoder().decode(answer.subarray(10 + length)).trim();
  console.log(`   reply:   ${new TextDecoder().decode(answer.subarray(5, 5 + length))}`);
  console.log(`   trailer: ${trailer.replaceAll("\r\n", "  ")}`);

  console.log("\n== affinity: calls with x-client-id stick to one backend per id");
  const ids = ["alice", "bob", "carol", "dave", "erin", "frank"];
  const first = await owners(client, ids);
  console.log(`   first calls:  ${describeOwners(first)}`);
  const again = await owners(client, ids);
  const same = (answered: Map<string, string>) =>
    ids.every((id) => answered.get(id) === first.get(id));
  console.log(`   again:        ${describeOwners(again)}  (${same(again) ? "all kept" : "MOVED"})`);
  const added = await fetch(`${adminUrl}/clusters/sessions/backends`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ address: late.address }),
  });
  if (!added.ok) throw new Error(`adding ${late.name} failed: ${await added.text()}`);
  await until(async () => {
    const cluster = await (await fetch(`${adminUrl}/clusters/sessions`)).json();
    // deno-lint-ignore no-explicit-any
    return cluster.backends.some((b: any) => b.address === late.address && b.state === "READY");
  }, `${late.name} to be ready`);
  console.log(`   ${late.name} added to the cluster through the admin API`);
  const after = await owners(client, ids);
  console.log(`   after:        ${describeOwners(after)}  (${same(after) ? "all kept" : "MOVED"})`);
  const newcomers = await owners(client, ["grace", "heidi", "ivan", "judy"]);
  console.log(`   new ids:      ${describeOwners(newcomers)}`);
  const table = await (await fetch(`${adminUrl}/clusters/sessions/affinity?id=alice`)).json();
  console.log(`   GET /clusters/sessions/affinity?id=alice → owner ${table.owner}`);
  if (!same(again) || !same(after)) throw new Error("demo: affinity did not hold");
} finally {
  client.close();
  proxy.kill("SIGTERM");
  const { code } = await proxy.status;
  await Promise.all([...backends, late].map((b) => b.stop()));
  await Deno.remove(configFile);
  console.log(`\nstopped: proxy exited with ${code}, backends shut down`);
}
