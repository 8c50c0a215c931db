/**
 * TLS and mTLS from the proxy to its backends, end to end: a CA and certificates made with
 * `openssl`, grpc-js backends serving TLS, and the real proxy process between them and a
 * grpc-js client. One proxy carries every case, one cluster each, routed by `x-cluster`.
 *
 * The proxy runs with `DENO_TLS_CA_STORE=system` and `SSL_CERT_FILE` naming the test CA, so
 * the test CA is its only "system root": clusters without `ca` verify the backends against it,
 * and a cluster whose `ca` names another CA shows that `ca` replaces the roots rather than
 * adding to them.
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { parseConfig } from "../src/config/load.ts";
import { clusterProblems } from "./support/config_problems.ts";
import { deferGoawayCloseOnAllClientSessions } from "../src/health/node_http2_goaway.ts";
import {
  freePort,
  GRPC_JS,
  type ProxyProcess,
  runSwitchyard,
  startProxy,
  waitFor,
} from "./support/harness.ts";
import { healthLogs } from "./support/health_traffic.ts";
import { issue, makeServerPki, type Pem, selfSigned, type ServerPki } from "./support/pki.ts";
import { startTcpBackend, type TcpBackend } from "./support/tcp_backend.ts";
import {
  expectServiceError,
  startTestBackend,
  type TestBackend,
  testClient,
  TestMethod,
  unaryCall,
} from "./support/test_backend.ts";

// The test's own grpc-js client sees the proxy's GOAWAY at shutdown (docs/deno-http2.md).
deferGoawayCloseOnAllClientSessions();

/** Paths of the PEM files {@link makePki} writes. */
interface Pki extends ServerPki {
  /** Signed by the CA, v3 with extendedKeyUsage=clientAuth (rustls refuses v1). */
  readonly client: Pem;
  /** Like `client`, with its key, but expired yesterday. */
  readonly expiredClient: string;
  /** Self-signed for IP:127.0.0.1, chaining to nothing the proxy trusts. */
  readonly untrusted: Pem;
}

/**
 * {@link makeServerPki}'s files, its `ca` being the proxy's only "system root" and its
 * `otherCa` signing nothing here, and the client certificates and the untrusted one.
 */
async function makePki(): Promise<Pki> {
  const pki = await makeServerPki("switchyard-pki-");
  const { dir } = pki;
  const clientAuth = ["extendedKeyUsage = clientAuth"];
  const client = await issue(dir, "client", "/CN=switchyard", clientAuth);
  // Negative days: notAfter is a day before notBefore (now), so the certificate has expired.
  const expired = await issue(dir, "expired-client", "/CN=switchyard", clientAuth, {
    days: -1,
    key: "client",
  });
  return {
    ...pki,
    client,
    expiredClient: expired.cert,
    untrusted: await selfSigned(dir, "untrusted", "/CN=untrusted", ["subjectAltName=IP:127.0.0.1"]),
  };
}

/** A TLS server that negotiates no ALPN protocol: the proxy must refuse it (RFC 9113 §3.2). */
function startNoAlpnServer(pem: { cert: string; key: string }): Deno.TlsListener {
  const listener = Deno.listenTls({ hostname: "127.0.0.1", port: 0, ...pem });
  (async () => {
    for await (const conn of listener) {
      conn.handshake().catch(() => {}).finally(() => conn.close());
    }
  })().catch(() => {});
  return listener;
}

/** Everything the TLS cases share: the backends, one proxy and a client. */
interface Setup {
  readonly proxy: ProxyProcess;
  readonly client: grpc.Client;
  /** The TLS backend that takes any client. */
  readonly open: TestBackend;
  /** The TLS backend that requires a client certificate from the test CA. */
  readonly mutual: TestBackend;
  /** The mTLS backend with a health service, for the probes. */
  readonly probed: TestBackend;
  /** A TCP listener that never answers. */
  readonly silent: TcpBackend;
  [Symbol.asyncDispose](): Promise<void>;
}

async function setUp(): Promise<Setup> {
  const pki = await makePki();
  const read = (path: string) => Deno.readTextFile(path);
  const serverTls = { cert: await read(pki.server.cert), key: await read(pki.server.key) };
  const ca = await read(pki.ca);
  const open = await startTestBackend("open", 0, { tls: { ...serverTls, ca } });
  const mutual = await startTestBackend("mutual", 0, {
    tls: { ...serverTls, ca, requireClientCert: true },
  });
  const probed = await startTestBackend("probed", 0, {
    tls: { ...serverTls, ca, requireClientCert: true },
    health: true,
  });
  const untrusted = await startTestBackend("untrusted", 0, {
    tls: { cert: await read(pki.untrusted.cert), key: await read(pki.untrusted.key), ca },
  });
  const noAlpn = startNoAlpnServer(serverTls);
  const noAlpnAddress = `127.0.0.1:${(noAlpn.addr as Deno.NetAddr).port}`;
  // Accepts and never answers: a TLS handshake that never ends.
  const silent = startTcpBackend(() => {});
  const backends = [open, mutual, probed, untrusted];
  const stopBackends = async () => {
    noAlpn.close();
    await Promise.all([...backends.map((backend) => backend.stop()), silent.close()]);
  };
  const clientCert = { cert: pki.client.cert, key: pki.client.key };
  const clusters: Record<string, { backend: string; tls: object; connectTimeout?: string }> = {
    roots: { backend: open.address, tls: {} },
    pinned: { backend: open.address, tls: { ca: pki.ca } },
    otherCa: { backend: open.address, tls: { ca: pki.otherCa } },
    mtls: { backend: mutual.address, tls: clientCert },
    noClientCert: { backend: mutual.address, tls: {} },
    named: { backend: open.address, tls: { serverName: "orders.internal" } },
    namedMtls: { backend: mutual.address, tls: { serverName: "orders.internal", ...clientCert } },
    wrongName: { backend: open.address, tls: { serverName: "billing.internal" } },
    insecure: { backend: untrusted.address, tls: { insecureSkipVerify: true } },
    verified: { backend: untrusted.address, tls: {} },
    noAlpn: { backend: noAlpnAddress, tls: {} },
    silent: { backend: silent.address, tls: {}, connectTimeout: "300ms" },
  };
  let proxy: ProxyProcess;
  try {
    proxy = await startProxy({
      clusters: {
        ...Object.fromEntries(
          Object.entries(clusters).map(([name, { backend, ...settings }]) => [
            name,
            { backends: [backend], waitForReadyTimeout: "3s", ...settings },
          ]),
        ),
        probed: {
          backends: [probed.address],
          tls: { ca: pki.ca, ...clientCert },
          healthCheck: { interval: "100ms", timeout: "1s" },
          panicThreshold: 0,
        },
      },
      routes: [...Object.keys(clusters), "probed"].map((name) => ({
        service: "test.Test",
        headers: [{ name: "x-cluster", exact: name }],
        cluster: name,
      })),
    }, {
      args: ["--log-level", "debug"],
      env: { DENO_TLS_CA_STORE: "system", SSL_CERT_FILE: pki.ca },
    });
  } catch (error) {
    await stopBackends();
    throw error;
  }
  const client = testClient(proxy.address, { "grpc.enable_retries": 0 });
  return {
    proxy,
    client,
    open,
    mutual,
    probed,
    silent,
    async [Symbol.asyncDispose]() {
      client.close();
      try {
        assert.equal(await proxy.stop(), 0);
      } finally {
        await stopBackends();
        await Deno.remove(pki.dir, { recursive: true });
      }
    },
  };
}

/** An `Echo` call through `cluster`; resolves with the backend that answered. */
async function echoVia(setup: Setup, cluster: string): Promise<string> {
  const metadata = new grpc.Metadata();
  metadata.set("x-cluster", cluster);
  const request = Buffer.from(cluster);
  const options = { metadata, timeoutMs: 10_000 };
  const { headers, response } = await unaryCall(setup.client, TestMethod.echo, request, options);
  assert.equal(response.toString(), cluster);
  return String(headers.get("x-backend")[0]);
}

/** The UNAVAILABLE an `Echo` call through `cluster` ends with. */
async function failureVia(setup: Setup, cluster: string): Promise<grpc.ServiceError> {
  const error = await expectServiceError(echoVia(setup, cluster));
  assert.equal(error.code, grpc.status.UNAVAILABLE, `${cluster}: ${error.details}`);
  return error;
}

Deno.test({
  name: "TLS to backends: verification, mTLS, serverName, insecureSkipVerify, ALPN, probes",
  ...GRPC_JS,
  async fn(t) {
    await using setup = await setUp();

    await t.step("without ca the system roots verify the backend", async () => {
      assert.equal(await echoVia(setup, "roots"), "open");
    });

    await t.step("with ca the backend's chain is verified against it", async () => {
      assert.equal(await echoVia(setup, "pinned"), "open");
    });

    await t.step("ca replaces the roots: another CA fails UNAVAILABLE naming it", async () => {
      const error = await failureVia(setup, "otherCa");
      assert.match(error.details, /certificate/i);
      assert.match(error.details, new RegExp(`TLS handshake with ${setup.open.address}`));
    });

    await t.step("a backend that requires a client certificate gets one", async () => {
      assert.equal(await echoVia(setup, "mtls"), "mutual");
    });

    await t.step("without a client certificate that backend is UNAVAILABLE", async () => {
      const error = await failureVia(setup, "noClientCert");
      assert.match(error.details, /certificate/i);
      assert.ok(error.details.includes(setup.mutual.address), error.details);
    });

    await t.step("serverName is verified instead of the address dialled", async () => {
      assert.equal(await echoVia(setup, "named"), "open");
      assert.equal(await echoVia(setup, "namedMtls"), "mutual");
      const error = await failureVia(setup, "wrongName");
      assert.match(error.details, /as billing\.internal failed: .*certificate/i);
    });

    await t.step(
      "insecureSkipVerify accepts an untrusted certificate, with a warning",
      async () => {
        assert.equal(await echoVia(setup, "insecure"), "untrusted");
        const error = await failureVia(setup, "verified");
        assert.match(error.details, /certificate/i);
        const warnings = setup.proxy.logs().filter((line) =>
          line.level === "WARN" && String(line.message).includes("insecureSkipVerify")
        );
        assert.equal(warnings.length, 1, JSON.stringify(warnings));
        assert.equal((warnings[0].properties as { cluster: string }).cluster, "insecure");
      },
    );

    await t.step("a backend that negotiates no ALPN is refused, named", async () => {
      const error = await failureVia(setup, "noAlpn");
      assert.match(error.details, /did not negotiate h2 over TLS \(ALPN: none\)/);
    });

    await t.step("connectTimeout covers a handshake that never ends", async () => {
      const error = await failureVia(setup, "silent");
      assert.match(error.details, /connect timeout after 300ms/);
      // The proxy closed the connection it gave up on (it timed out, as the call's message
      // says): after the ClientHello it sent, the backend reads the end.
      let ended = false;
      const [first] = setup.silent.conns;
      (async () => {
        const buffer = new Uint8Array(4096);
        while ((await first.read(buffer)) !== null);
      })().catch(() => {}).finally(() => ended = true);
      await waitFor(() => ended, { what: "the timed-out connection to be closed" });
    });

    await t.step("health probes use the cluster's TLS, client certificate included", async () => {
      const address = setup.probed.address;
      const healthy = await waitFor(() => healthLogs(setup.proxy, address, "is healthy")[0], {
        what: `${address} healthy`,
        timeoutMs: 15_000,
      });
      assert.equal((healthy.properties as { reason: string }).reason, "first check passed");
      assert.equal(healthLogs(setup.proxy, address, "is unhealthy").length, 0);
      assert.equal(await echoVia(setup, "probed"), "probed");
    });
  },
});

Deno.test("an unreadable, expired or mismatched cluster TLS file exits 2 naming it", async () => {
  const pki = await makePki();
  const file = `${pki.dir}/config.json`;
  try {
    const cluster = (tls: Record<string, unknown>) => ({ backends: ["127.0.0.1:1"], tls });
    await Deno.writeTextFile(
      file,
      JSON.stringify({
        listen: `127.0.0.1:${await freePort()}`,
        admin: { listen: `127.0.0.1:${await freePort()}` },
        clusters: {
          missing: cluster({ cert: `${pki.dir}/nope.pem`, key: pki.client.key }),
          expired: cluster({ cert: pki.expiredClient, key: pki.client.key }),
          mismatched: cluster({ cert: pki.client.cert, key: pki.server.key }),
          notCa: cluster({ ca: pki.client.key }),
        },
        routes: [{ cluster: "missing" }],
      }),
    );
    const run = await runSwitchyard(["--config", file]);
    assert.equal(run.code, 2, run.stderr);
    for (
      const expected of [
        `clusters.missing.tls.cert: cannot read ${pki.dir}/nope.pem`,
        "clusters.expired.tls.cert: expired on",
        "clusters.mismatched.tls.cert: does not match its private key",
        `clusters.notCa.tls.ca: ${pki.client.key} is not a PEM certificate`,
      ]
    ) assert.ok(run.stderr.includes(expected), `stderr should name ${expected}:\n${run.stderr}`);
  } finally {
    await Deno.remove(pki.dir, { recursive: true });
  }
});

Deno.test("cluster tls settings are validated", () => {
  const problems = (tls: Record<string, unknown>) =>
    clusterProblems({ backends: ["127.0.0.1:1"], tls });
  assert.deepEqual(problems({ cert: "c.pem" }), ["clusters.c.tls.key: is required with cert"]);
  assert.deepEqual(problems({ key: "c.key" }), ["clusters.c.tls.cert: is required with key"]);
  assert.deepEqual(problems({ alpn: ["http/1.1"] }), [
    'clusters.c.tls.alpn: must include "h2": backends are spoken to in HTTP/2 (RFC 9113 §3.2)',
  ]);
  assert.deepEqual(problems({ serverName: "10.0.0.5" }), [
    'clusters.c.tls.serverName: "10.0.0.5" is not a host name',
  ]);
  assert.deepEqual(problems({ insecure: true }), ['clusters.c.tls: unknown field "insecure"']);
  const config = parseConfig(
    { clusters: { c: { backends: ["127.0.0.1:1"], tls: {} } }, routes: [{ cluster: "c" }] },
    "test",
    { pickers: ["round_robin"] },
  );
  assert.deepEqual(config.clusters.c.tls, { alpn: ["h2"], insecureSkipVerify: false });
});
