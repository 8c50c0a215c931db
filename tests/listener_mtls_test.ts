/**
 * mTLS on the listener, end to end: a CA and certificates made with `openssl`, the real proxy
 * process with `tls.clientCa`, grpc-js clients with and without client certificates, and the
 * grpc-js test backend, whose `EchoMetadata` shows what request headers reached it.
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import tls from "node:tls";
import { type ConfigError, parseConfig } from "../src/config/load.ts";
import { configProblems } from "./support/config_problems.ts";
import { readTlsMaterial } from "../src/config/tls_material.ts";
import {
  clusterConfig,
  freePort,
  GRPC_JS,
  type ProxyProcess,
  startProxy,
  type StartProxyOptions,
  waitFor,
} from "./support/harness.ts";
import { issue, makeServerPki, type Pem, type ServerPki } from "./support/pki.ts";
import {
  expectServiceError,
  startTestBackend,
  type TestBackend,
  TestClient,
  TestMethod,
  unaryCall,
} from "./support/test_backend.ts";

const IDENTITY_HEADER = "x-client-identity";
const SPIFFE_ID = "spiffe://test/client-1";

/** Paths of the PEM files {@link makePki} writes; `ca` signs the server's and clients'. */
interface Pki extends ServerPki {
  /** A client certificate with a SAN URI (a SPIFFE ID) and CN=client-1. */
  readonly spiffe: Pem;
  /** A client certificate with CN=client-cn and no SAN. */
  readonly cn: Pem;
  /** A client certificate like `spiffe`, but signed by another CA. */
  readonly foreign: Pem;
}

async function makePki(): Promise<Pki> {
  const pki = await makeServerPki("switchyard-mtls-");
  const { dir } = pki;
  // Client certificates are v3 with extendedKeyUsage=clientAuth: rustls refuses v1 ones.
  const clientAuth = "extendedKeyUsage = clientAuth";
  const spiffe = [`subjectAltName = URI:${SPIFFE_ID}`, clientAuth];
  return {
    ...pki,
    spiffe: await issue(dir, "spiffe", "/CN=client-1", spiffe),
    cn: await issue(dir, "cn", "/CN=client-cn", [clientAuth]),
    foreign: await issue(dir, "foreign", "/CN=client-1", spiffe, { ca: "other-ca" }),
  };
}

/** A `test.Test` client over TLS to `address`, presenting `pem` when given. */
async function tlsClient(address: string, pki: Pki, pem?: Pem): Promise<grpc.Client> {
  const read = (path: string) => Deno.readFile(path).then((bytes) => Buffer.from(bytes));
  const credentials = pem === undefined
    ? grpc.credentials.createSsl(await read(pki.ca))
    : grpc.credentials.createSsl(await read(pki.ca), await read(pem.key), await read(pem.cert));
  return new TestClient(address, credentials, {
    "grpc.ssl_target_name_override": "localhost",
    "grpc.enable_retries": 0,
  });
}

/** The identity header the backend saw on an `EchoMetadata` call, which sends `forged`. */
async function identitySeen(client: grpc.Client, forged?: string): Promise<string[]> {
  const metadata = new grpc.Metadata();
  if (forged !== undefined) metadata.set(IDENTITY_HEADER, forged);
  const { headers } = await unaryCall(client, TestMethod.echoMetadata, Buffer.alloc(0), {
    metadata,
    timeoutMs: 10_000,
  });
  return headers.get(IDENTITY_HEADER).map(String);
}

/** The access log's lines so far. */
async function accessLog(path: string): Promise<Record<string, unknown>[]> {
  const text = await Deno.readTextFile(path);
  return text.split("\n").filter(Boolean).map((line) => JSON.parse(line));
}

/** A proxy with mTLS on its listener in front of one test backend, and its access log. */
interface Setup {
  readonly pki: Pki;
  readonly backend: TestBackend;
  readonly proxy: ProxyProcess;
  readonly accessLogPath: string;
  /** Clients made by {@link client}, closed at the end. */
  readonly clients: grpc.Client[];
  client(pem?: Pem): Promise<grpc.Client>;
  [Symbol.asyncDispose](): Promise<void>;
}

async function setUp(
  tlsSettings: Record<string, unknown>,
  extra: Record<string, unknown> = {},
  options: StartProxyOptions = {},
): Promise<Setup> {
  const pki = await makePki();
  const backend = await startTestBackend("mtls");
  const accessLogPath = await Deno.makeTempFile({ prefix: "switchyard-access-" });
  let proxy: ProxyProcess;
  try {
    proxy = await startProxy({
      ...clusterConfig([backend.address]),
      tls: { ...pki.server, clientCa: pki.ca, ...tlsSettings },
      accessLog: { enabled: true, path: accessLogPath },
      ...extra,
    }, { args: ["--log-level", "debug"], ...options });
  } catch (error) {
    await backend.stop();
    await Deno.remove(pki.dir, { recursive: true });
    throw error;
  }
  const clients: grpc.Client[] = [];
  return {
    pki,
    backend,
    proxy,
    accessLogPath,
    clients,
    async client(pem?: Pem) {
      const client = await tlsClient(proxy.address, pki, pem);
      clients.push(client);
      return client;
    },
    async [Symbol.asyncDispose]() {
      for (const client of clients) client.close();
      try {
        assert.equal(await proxy.stop(), 0);
      } finally {
        await backend.stop();
        await Deno.remove(pki.dir, { recursive: true });
        await Deno.remove(accessLogPath);
      }
    },
  };
}

/** The UNAVAILABLE a call from `client` ends with: its connection was refused. */
async function refused(client: grpc.Client): Promise<grpc.ServiceError> {
  const error = await expectServiceError(
    unaryCall(client, TestMethod.echo, Buffer.from("x"), { timeoutMs: 10_000 }),
  );
  assert.equal(error.code, grpc.status.UNAVAILABLE, error.details);
  return error;
}

Deno.test({
  name: "mTLS listener, requireClientCert: only CA-signed clients, their identity logged and sent",
  ...GRPC_JS,
  async fn(t) {
    await using setup = await setUp({
      requireClientCert: true,
      clientIdentityHeader: IDENTITY_HEADER,
    });

    await t.step("a client without a certificate is refused: UNAVAILABLE", async () => {
      await refused(await setup.client());
      await waitFor(() => setup.proxy.output().includes("it sent no certificate"), {
        what: "the proxy to log the refused handshake",
      });
    });

    await t.step("a certificate another CA signed is refused", async () => {
      await refused(await setup.client(setup.pki.foreign));
      await waitFor(() => setup.proxy.output().includes("tls.clientCa does not trust"), {
        what: "the proxy to log why",
      });
      assert.equal(setup.backend.calls(), 0, "no refused client reached the backend");
    });

    await t.step("a SAN URI names the client; a forged identity header is replaced", async () => {
      const client = await setup.client(setup.pki.spiffe);
      assert.deepEqual(await identitySeen(client, "spiffe://test/forged"), [SPIFFE_ID]);
      assert.deepEqual(await identitySeen(client), [SPIFFE_ID]);
    });

    await t.step("without a SAN the subject CN names the client", async () => {
      assert.deepEqual(await identitySeen(await setup.client(setup.pki.cn)), ["client-cn"]);
    });

    await t.step("the access log carries each call's identity", async () => {
      const lines = await waitFor(async () => {
        const lines = await accessLog(setup.accessLogPath);
        return lines.length >= 3 ? lines : undefined;
      }, { what: "three access-log lines" });
      assert.deepEqual(
        lines.map((line) => [line.method, line.grpcStatus, line.clientIdentity]),
        [
          [TestMethod.echoMetadata, 0, SPIFFE_ID],
          [TestMethod.echoMetadata, 0, SPIFFE_ID],
          [TestMethod.echoMetadata, 0, "client-cn"],
        ],
      );
    });
  },
});

Deno.test({
  name: "mTLS listener, optional certificates: across 2 workers, and gRPC-Web carries none",
  ...GRPC_JS,
  async fn(t) {
    const webPort = await freePort();
    // node:tls listeners share the port between workers with SO_REUSEPORT, as Deno's do.
    await using setup = await setUp({ clientIdentityHeader: IDENTITY_HEADER }, {
      workers: 2,
      grpcWeb: { listen: `127.0.0.1:${webPort}` },
    });

    await t.step("a client without a certificate is served with no identity", async () => {
      const client = await setup.client();
      assert.deepEqual(await identitySeen(client, "spiffe://test/forged"), []);
    });

    await t.step("a client with a certificate is named", async () => {
      assert.deepEqual(await identitySeen(await setup.client(setup.pki.spiffe)), [SPIFFE_ID]);
    });

    await t.step("a certificate another CA signed is still refused", async () => {
      await refused(await setup.client(setup.pki.foreign));
    });

    await t.step("a gRPC-Web call cannot forge the identity header", async () => {
      const caCerts = [await Deno.readTextFile(setup.pki.ca)];
      using httpClient = Deno.createHttpClient({ caCerts });
      const response = await fetch(`https://localhost:${webPort}${TestMethod.echoMetadata}`, {
        method: "POST",
        headers: {
          "content-type": "application/grpc-web+proto",
          [IDENTITY_HEADER]: "spiffe://test/forged",
          "x-probe": "1",
        },
        body: new Uint8Array(5),
        client: httpClient,
      });
      await response.body?.cancel();
      assert.equal(response.status, 200);
      assert.equal(response.headers.get("x-probe"), "1", "other metadata is echoed");
      assert.equal(response.headers.get(IDENTITY_HEADER), null);
    });

    await t.step("the access log has the identity, or null", async () => {
      const lines = await waitFor(async () => {
        const lines = await accessLog(setup.accessLogPath);
        return lines.length >= 3 ? lines : undefined;
      }, { what: "three access-log lines" });
      assert.deepEqual(
        lines.map((line) => [line.protocol, line.clientIdentity]).sort(),
        [["grpc", null], ["grpc", SPIFFE_ID], ["grpc-web", null]],
      );
    });
  },
});

Deno.test({
  name: "mTLS listener: http2.maxConnections closes the excess at once",
  ...GRPC_JS,
  async fn() {
    await using setup = await setUp({ requireClientCert: true }, {
      http2: { maxConnections: 1 },
    });
    const [host, port] = setup.proxy.address.split(":");
    const [ca, cert, key] = await Promise.all(
      [setup.pki.ca, setup.pki.spiffe.cert, setup.pki.spiffe.key].map((path) =>
        Deno.readTextFile(path)
      ),
    );
    const connect = () => {
      const socket = tls.connect({
        host,
        port: Number(port),
        servername: "localhost",
        ca,
        cert,
        key,
        ALPNProtocols: ["h2"],
      });
      const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
      socket.on("error", () => {});
      return { socket, closed };
    };
    const first = connect();
    await new Promise((resolve) => first.socket.once("secureConnect", resolve));
    // Past the limit: closed at once, while the first stays open.
    const second = connect();
    await second.closed;
    assert.ok(!first.socket.closed, "the first connection is kept");
    await waitFor(() => setup.proxy.output().includes("connection limit 1 reached"), {
      what: "the proxy to log the limit",
    });
    first.socket.destroy();
    await first.closed;
    const client = await setup.client(setup.pki.cn);
    await waitFor(async () => (await unaryCall(client, TestMethod.echo, Buffer.from("x"))).status, {
      what: "a call once the first connection closed",
    });
  },
});

/** The proxy's file descriptors open now. */
function openDescriptors(proxy: ProxyProcess): number {
  return [...Deno.readDirSync(`/proc/${proxy.child.pid}/fd`)].length;
}

Deno.test({
  name: "mTLS listener: file descriptors exhausted, it recovers and leaks none",
  ...GRPC_JS,
  async fn() {
    const fdLimit = 256;
    await using setup = await setUp({ requireClientCert: true }, {}, { fdLimit });
    const client = await setup.client(setup.pki.cn);
    const echo = () => unaryCall(client, TestMethod.echo, Buffer.from("x"), { timeoutMs: 5_000 });
    await echo();
    const baseline = openDescriptors(setup.proxy);
    const [hostname, port] = setup.proxy.address.split(":");
    // More connections than the proxy has descriptors: accept fails with EMFILE.
    const conns: Deno.Conn[] = [];
    try {
      while (conns.length < fdLimit + 64) {
        conns.push(await Deno.connect({ hostname, port: Number(port) }));
      }
      await waitFor(() => setup.proxy.output().includes("accept failed"), {
        what: "the proxy to log the accept error",
      });
      await echo();
    } finally {
      for (const conn of conns) conn.close();
    }
    // A new client is served again, and the refused handshakes' descriptors are all closed.
    const fresh = await setup.client(setup.pki.spiffe);
    await waitFor(
      () => unaryCall(fresh, TestMethod.echo, Buffer.from("x"), { timeoutMs: 2_000 }),
      { what: "a new client to be served" },
    );
    await waitFor(() => setup.proxy.output().includes("accepting connections again"), {
      what: "the proxy to log its recovery",
    });
    await waitFor(() => openDescriptors(setup.proxy) <= baseline + 2, {
      what: `the proxy's descriptors back to ${baseline} (+ the new client's connection)`,
    });
  },
});

Deno.test({
  name: "without mTLS calls are untouched: the header passes, the identity is null",
  ...GRPC_JS,
  async fn() {
    const backend = await startTestBackend("plain");
    const accessLogPath = await Deno.makeTempFile({ prefix: "switchyard-access-" });
    const proxy = await startProxy({
      ...clusterConfig([backend.address]),
      accessLog: { enabled: true, path: accessLogPath },
    });
    const client = new TestClient(proxy.address, grpc.credentials.createInsecure());
    try {
      assert.deepEqual(await identitySeen(client, "as-sent"), ["as-sent"]);
      const [line] = await waitFor(async () => {
        const lines = await accessLog(accessLogPath);
        return lines.length > 0 ? lines : undefined;
      }, { what: "an access-log line" });
      assert.equal(line.clientIdentity, null);
    } finally {
      client.close();
      assert.equal(await proxy.stop(), 0);
      await backend.stop();
      await Deno.remove(accessLogPath);
    }
  },
});

Deno.test("listener tls: client-certificate settings are validated and their CA read", async () => {
  const raw = (settings: Record<string, unknown>) => ({
    tls: { cert: "c.pem", key: "c.key", ...settings },
    clusters: { c: { backends: ["127.0.0.1:1"] } },
    routes: [{ cluster: "c" }],
  });
  const problems = (settings: Record<string, unknown>) => configProblems(raw(settings));
  assert.deepEqual(problems({ requireClientCert: true }), [
    "tls.requireClientCert: needs clientCa",
  ]);
  assert.deepEqual(problems({ clientIdentityHeader: IDENTITY_HEADER }), [
    "tls.clientIdentityHeader: needs clientCa",
  ]);
  assert.deepEqual(problems({ clientCa: "ca.pem", clientIdentityHeader: "X-Client" }), [
    "tls.clientIdentityHeader: is not a lower-case HTTP header name",
  ]);
  assert.equal(problems({ clientCa: "ca.pem", clientIdentityHeader: "te" }).length, 1);

  const pki = await makePki();
  try {
    const config = (clientCa: string) =>
      parseConfig(
        {
          ...raw({ ...pki.server, clientCa }),
          tls: { ...pki.server, clientCa, clientIdentityHeader: IDENTITY_HEADER },
        },
        "test",
        { pickers: ["round_robin"] },
      );
    const material = await readTlsMaterial(config(pki.ca), "test");
    assert.equal(material.listener?.clientCa, await Deno.readTextFile(pki.ca));
    assert.equal(material.listener?.requireClientCert, false);
    assert.equal(material.listener?.clientIdentityHeader, IDENTITY_HEADER);
    await assert.rejects(
      readTlsMaterial(config(pki.server.key), "test"),
      (error: ConfigError) =>
        error.problems.some((problem) =>
          problem.startsWith(`tls.clientCa: ${pki.server.key} is not a PEM certificate`)
        ),
    );
  } finally {
    await Deno.remove(pki.dir, { recursive: true });
  }
});
