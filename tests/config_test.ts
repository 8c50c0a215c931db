/**
 * Bad configs and command lines: the real `main.ts` must exit 2 and say which field is
 * wrong and why, before it binds anything.
 */
import assert from "node:assert/strict";
import { freePort, runSwitchyard, type SwitchyardRun } from "./support/harness.ts";
import { parseConfig } from "../src/config/load.ts";
import { registeredPolicies } from "../src/balancer/registry.ts";

/** A valid config to break one field at a time. */
async function validConfig(): Promise<Record<string, unknown>> {
  return {
    listen: `127.0.0.1:${await freePort()}`,
    admin: { listen: `127.0.0.1:${await freePort()}` },
    clusters: { echo: { picker: "round_robin", backends: ["127.0.0.1:50051"] } },
    routes: [{ service: "test.Test", cluster: "echo" }, { cluster: "echo" }],
  };
}

/** Runs the proxy on `text` written to a temp file. */
async function runWithConfigText(text: string): Promise<SwitchyardRun & { file: string }> {
  const file = await Deno.makeTempFile({ prefix: "switchyard-bad-", suffix: ".json" });
  try {
    await Deno.writeTextFile(file, text);
    return { ...(await runSwitchyard(["--config", file])), file };
  } finally {
    await Deno.remove(file);
  }
}

/** Asserts a config-error exit: code 2 and `expected` in stderr. */
function assertConfigError(run: SwitchyardRun, expected: string): void {
  assert.equal(run.code, 2, `exit code; stderr:\n${run.stderr}`);
  assert.ok(run.stderr.includes(expected), `stderr should contain ${expected}:\n${run.stderr}`);
}

const BAD_CONFIGS: readonly {
  name: string;
  edit: (config: Record<string, unknown>) => void;
  expected: string;
}[] = [
  {
    name: "a backend without a port",
    edit: (c) => c.clusters = { echo: { backends: ["127.0.0.1:50051", "127.0.0.1"] } },
    expected: 'clusters.echo.backends[1]: "127.0.0.1" is not host:port',
  },
  {
    name: "a backend in inet_aton shorthand",
    edit: (c) => c.clusters = { echo: { backends: ["127.1:50051"] } },
    expected: 'clusters.echo.backends[0]: "127.1:50051" is not host:port',
  },
  {
    name: "an admin.allowedHosts entry that is not a host name",
    edit: (c) => c.admin = { allowedHosts: ["admin.internal", "evil_example"] },
    expected: 'admin.allowedHosts[1]: "evil_example" is not a host name or IP address',
  },
  {
    name: "an unknown field",
    edit: (c) => c.clusters = { echo: { backends: ["127.0.0.1:50051"], retries: 3 } },
    expected: 'clusters.echo: unknown field "retries"',
  },
  {
    name: "a route to an unknown cluster",
    edit: (c) => c.routes = [{ service: "test.Test", cluster: "nope" }],
    expected: 'routes[0].cluster: unknown cluster "nope"',
  },
  {
    name: "a catch-all route that is not last",
    edit: (c) => c.routes = [{ cluster: "echo" }, { service: "test.Test", cluster: "echo" }],
    expected: "routes[0]: a catch-all route must be the last one",
  },
  {
    name: "an unknown picker",
    edit: (c) => c.clusters = { echo: { picker: "fastest", backends: ["127.0.0.1:50051"] } },
    expected: 'clusters.echo.picker: unknown picker "fastest"',
  },
  {
    name: 'a worker count that is neither a whole number nor "auto"',
    edit: (c) => c.workers = 0,
    expected: 'workers: must be a whole number from 1 to 1024, or "auto"',
  },
  {
    name: "a worker count given as a word",
    edit: (c) => c.workers = "two",
    expected: 'workers: must be a whole number from 1 to 1024, or "auto"',
  },
  {
    name: "gRPC-Web credentials for any origin",
    edit: (c) =>
      c.grpcWeb = {
        listen: "127.0.0.1:8081",
        cors: { allowedOrigins: ["*"], allowCredentials: true },
      },
    expected: 'grpcWeb.cors.allowCredentials: cannot be true with the "*" origin',
  },
  {
    name: "gRPC-Web on the gRPC listener's address",
    edit: (c) => c.grpcWeb = { listen: c.listen },
    expected: "grpcWeb.listen: must differ from listen",
  },
  {
    name: "a malformed duration",
    edit: (c) => c.drain = { timeout: "soon" },
    expected: 'drain.timeout: "soon" is not a duration',
  },
];

for (const { name, edit, expected } of BAD_CONFIGS) {
  Deno.test(`config error: ${name}`, async () => {
    const config = await validConfig();
    edit(config);
    const run = await runWithConfigText(JSON.stringify(config));
    assertConfigError(run, expected);
    assert.ok(run.stderr.includes(run.file), "the error names the config file");
  });
}

Deno.test("config error: invalid JSON", async () => {
  const run = await runWithConfigText('{ "clusters": { ');
  assertConfigError(run, "(file): not valid JSON");
});

Deno.test("config error: missing file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const missing = `${dir}/absent.json`;
    const run = await runSwitchyard(["--config", missing]);
    assertConfigError(run, `${missing}:\n  (file): cannot read`);
  } finally {
    await Deno.remove(dir);
  }
});

Deno.test("command line: an unknown flag exits 2 with the usage", async () => {
  const run = await runSwitchyard(["--frobnicate"]);
  assert.equal(run.code, 2);
  assert.match(run.stderr, /frobnicate/);
  assert.match(run.stderr, /Usage:/);
});

Deno.test("config: the deprecated drainTimeout still sets drain.timeout, with a warning", () => {
  const warnings: string[] = [];
  const config = parseConfig(
    {
      drainTimeout: "12s",
      clusters: { a: { backends: ["127.0.0.1:1"] } },
      routes: [{ cluster: "a" }],
    },
    "test",
    { pickers: registeredPolicies() },
    warnings,
  );
  assert.equal(config.drain.timeout, 12_000);
  assert.equal(config.drain.delay, 0);
  assert.deepEqual(warnings, ["drainTimeout is deprecated: use drain.timeout"]);
});
