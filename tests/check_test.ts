/**
 * `switchyard check`, environment variables in the config, duplicate routes and the published
 * JSON Schema: the real `main.ts` for the command, the functions themselves for the rules.
 */
import { selfSigned } from "./support/pki.ts";
import assert from "node:assert/strict";
import net from "node:net";
import { registeredPolicies } from "../src/balancer/registry.ts";
import { parseCli, UsageError } from "../src/cli.ts";
import { DURATION_PATTERN, formatDuration, parseDuration } from "../src/config/duration.ts";
import { substituteEnv } from "../src/config/env_vars.ts";
import { renderConfigJsonSchema } from "../src/config/json_schema.ts";
import { ConfigError, parseConfig } from "../src/config/load.ts";
import { freePort, runSwitchyard, type SwitchyardRun } from "./support/harness.ts";

const PICKERS = { pickers: registeredPolicies() };

/** A valid config on free loopback ports, to break one field at a time. */
async function validConfig(): Promise<Record<string, unknown>> {
  return {
    listen: `127.0.0.1:${await freePort()}`,
    admin: { listen: `127.0.0.1:${await freePort()}` },
    workers: 1,
    clusters: { echo: { picker: "round_robin", backends: ["127.0.0.1:50051"] } },
    routes: [{ service: "test.Test", cluster: "echo" }, { cluster: "echo" }],
  };
}

/** Runs `switchyard check ARGS --config FILE` on `config` written to a temp file. */
async function check(
  config: Record<string, unknown>,
  { args = [], env = {} }: { args?: string[]; env?: Record<string, string> } = {},
): Promise<SwitchyardRun & { file: string }> {
  const file = await Deno.makeTempFile({ prefix: "switchyard-check-", suffix: ".json" });
  try {
    await Deno.writeTextFile(file, JSON.stringify(config));
    return { ...(await runSwitchyard(["check", "--config", file, ...args], env)), file };
  } finally {
    await Deno.remove(file);
  }
}

/** Asserts exit 2 with each of `expected` as a `path: reason` line of stderr. */
function assertProblems(run: SwitchyardRun & { file: string }, expected: string[]): void {
  assert.equal(run.code, 2, `exit code; stderr:\n${run.stderr}`);
  assert.ok(run.stderr.startsWith(`invalid config ${run.file}:\n`), run.stderr);
  const lines = run.stderr.trimEnd().split("\n").slice(1).map((line) => line.trim());
  for (const line of expected) {
    assert.ok(
      lines.some((actual) => actual.startsWith(line)),
      `stderr should have a line ${line}:\n${run.stderr}`,
    );
  }
  assert.equal(run.stdout, "", "nothing on stdout");
}

Deno.test("check: a valid config exits 0 with a summary, binding and dialling nothing", async () => {
  const config = await validConfig();
  const [listenPort, adminPort] = [
    config.listen as string,
    (config.admin as { listen: string }).listen,
  ]
    .map((address) => Number(address.split(":")[1]));
  // The proxy's own ports stay taken, which a start would fail on, and the backend counts dials.
  const taken = [listenPort, adminPort].map((port) => Deno.listen({ hostname: "127.0.0.1", port }));
  let dials = 0;
  const backend = net.createServer((socket) => {
    dials++;
    socket.destroy();
  });
  await new Promise<void>((resolve) => backend.listen(0, "127.0.0.1", resolve));
  const backendAddress = `127.0.0.1:${(backend.address() as net.AddressInfo).port}`;
  try {
    config.clusters = {
      echo: { backends: [backendAddress] },
      other: { backends: [backendAddress] },
    };
    const run = await check(config);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(
      run.stdout,
      `config OK: ${run.file} — 2 clusters, 2 routes, 1 worker, listen ${config.listen}, ` +
        `admin 127.0.0.1:${adminPort}\n`,
    );
    assert.equal(run.stderr, "");
    assert.equal(dials, 0, "check connects to no backend");
  } finally {
    for (const listener of taken) listener.close();
    await new Promise((resolve) => backend.close(resolve));
  }
});

Deno.test("check: the embedded config and the run command's overrides", async () => {
  const embedded = await runSwitchyard(["check"]);
  assert.equal(embedded.code, 0, embedded.stderr);
  assert.match(embedded.stdout, /^config OK: \(embedded config\.json\) — 1 cluster, 2 routes, /);

  const run = await check(await validConfig(), {
    args: ["--listen", "127.0.0.1:18080", "--admin", "127.0.0.1:19901", "--log-level", "debug"],
  });
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stdout, /listen 127\.0\.0\.1:18080, admin 127\.0\.0\.1:19901\n$/);

  const badOverride = await check(await validConfig(), { args: ["--listen", "127.0.0.1"] });
  assertProblems(badOverride, ['listen: "127.0.0.1" is not host:port']);
});

Deno.test("check: TLS files that can be read pass and show in the summary", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const run = await check({
      ...await validConfig(),
      tls: await selfSigned(dir, "localhost", "/CN=localhost"),
    });
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /listen 127\.0\.0\.1:\d+ \(TLS\)/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

const BAD_CONFIGS: readonly {
  name: string;
  edit: (config: Record<string, unknown>, dir: string) => void;
  expected: string[];
}[] = [
  {
    name: "a duration with a space",
    edit: (c) => c.clusters = { echo: { backends: ["127.0.0.1:1"], connectTimeout: "5 s" } },
    expected: ['clusters.echo.connectTimeout: "5 s" is not a duration like "250ms" or "5s"'],
  },
  {
    name: "an unknown picker",
    edit: (c) => c.clusters = { echo: { picker: "fastest", backends: ["127.0.0.1:1"] } },
    expected: [
      'clusters.echo.picker: unknown picker "fastest" (known: pick_first, round_robin, ' +
      "ring_hash, least_request, weighted_round_robin)",
    ],
  },
  {
    name: "a duplicate route",
    edit: (c) =>
      c.routes = [
        { service: "test.Test", cluster: "echo" },
        { method: "/test.Test/Get", cluster: "echo" },
        { service: "test.Test", cluster: "echo", timeout: "1s" },
      ],
    expected: [
      'routes[2]: duplicates routes[0] (the same service "test.Test" and the same conditions)',
    ],
  },
  {
    name: "a certificate file that cannot be read",
    edit: (c, dir) => c.tls = { cert: `${dir}/absent.pem`, key: dir },
    expected: ["tls.cert: cannot read", "tls.key: cannot read"],
  },
  {
    name: "an environment variable that is not set",
    edit: (c) => {
      c.redis = { url: "${SWITCHYARD_TEST_UNSET_URL}" };
      c.clusters = { echo: { backends: ["127.0.0.1:1"], discovery: { redisSet: "s" } } };
    },
    expected: ["redis.url: environment variable SWITCHYARD_TEST_UNSET_URL is not set"],
  },
  {
    name: "an access log in a directory that does not exist",
    edit: (c, dir) => c.accessLog = { enabled: true, path: `${dir}/absent/access.log` },
    expected: ["accessLog.path: directory"],
  },
  {
    name: "an admin listener off loopback without a token",
    edit: (c) => c.admin = { listen: "0.0.0.0:9901" },
    expected: ["admin.token: required because admin.listen 0.0.0.0:9901 is not loopback"],
  },
];

for (const { name, edit, expected } of BAD_CONFIGS) {
  Deno.test(`check: exits 2 for ${name}`, async () => {
    const dir = await Deno.makeTempDir();
    try {
      const config = await validConfig();
      edit(config, dir);
      assertProblems(await check(config), expected);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("check: lists every problem at once, without echoes of a missing variable", async () => {
  const config = await validConfig();
  config.listen = "${SWITCHYARD_TEST_UNSET_LISTEN}";
  config.clusters = {
    echo: { picker: "fastest", backends: ["127.0.0.1"], waitForReadyTimeout: "soon" },
  };
  const run = await check(config);
  assertProblems(run, [
    "listen: environment variable SWITCHYARD_TEST_UNSET_LISTEN is not set",
    'clusters.echo.backends[0]: "127.0.0.1" is not host:port',
    'clusters.echo.waitForReadyTimeout: "soon" is not a duration',
    'clusters.echo.picker: unknown picker "fastest"',
  ]);
  assert.doesNotMatch(run.stderr, /listen: ".*" is not host:port/, "no schema echo for listen");
});

Deno.test("check --print: the effective config, secrets redacted, durations as written", async () => {
  const secrets = {
    token: "admin-token-0123456789",
    redisPassword: "hunter2-redis",
    apiKey: "api-key-value-42",
  };
  const config = await validConfig();
  config.admin = { ...(config.admin as object), token: "${SWITCHYARD_TEST_TOKEN}" };
  config.redis = { url: "redis://:${SWITCHYARD_TEST_REDIS_PASSWORD}@127.0.0.1:6379/0" };
  config.clusters = {
    echo: {
      backends: ["127.0.0.1:1"],
      discovery: { redisSet: "switchyard:echo" },
      healthCheck: { interval: "1.5s" },
    },
  };
  config.routes = [{
    cluster: "echo",
    requestHeaders: { set: { "x-api-key": secrets.apiKey, "x-template": "$${literal}" } },
  }];
  const run = await check(config, {
    args: ["--print"],
    env: {
      SWITCHYARD_TEST_TOKEN: secrets.token,
      SWITCHYARD_TEST_REDIS_PASSWORD: secrets.redisPassword,
    },
  });
  assert.equal(run.code, 0, run.stderr);
  for (const secret of Object.values(secrets)) {
    assert.ok(!run.stdout.includes(secret) && !run.stderr.includes(secret), `${secret} leaked`);
  }
  const printed = JSON.parse(run.stdout);
  assert.equal(printed.admin.token, "[redacted]");
  assert.equal(printed.redis.url, "redis://:%5Bredacted%5D@127.0.0.1:6379/0");
  assert.equal(printed.routes[0].requestHeaders.set["x-api-key"], "[redacted]");
  assert.equal(printed.routes[0].requestHeaders.set["x-template"], "${literal}", "the escape");
  assert.equal(printed.clusters.echo.healthCheck.interval, "1500ms");
  assert.equal(printed.clusters.echo.connectTimeout, "5s", "defaults filled in");
  assert.equal(printed.http2.idleTimeout, "3m");
  assert.equal(printed.http2.maxFrameSize, 16384, "numbers that are not durations stay numbers");
  assert.equal(printed.workers, 1);
  assert.equal(printed.redis.pollInterval, "5s");
  assert.match(run.stderr, /^config OK: /, "the summary goes to stderr, leaving stdout JSON");
  // The durations it shows load back to the same values.
  const clusters = (raw: Record<string, unknown>) =>
    parseConfig({ ...raw, admin: {}, routes: [{ cluster: "echo" }] }, "x", PICKERS).clusters;
  assert.deepEqual(clusters(printed), clusters({ ...config, redis: printed.redis }));
});

Deno.test("check: environment variables are substituted, with and without defaults", async () => {
  const config = await validConfig();
  const port = await freePort();
  config.listen = "${SWITCHYARD_TEST_HOST:-127.0.0.1}:${SWITCHYARD_TEST_PORT}";
  config.clusters = { echo: { backends: ["${SWITCHYARD_TEST_BACKEND:-127.0.0.1:50051}"] } };
  const run = await check(config, {
    args: ["--print"],
    env: { SWITCHYARD_TEST_PORT: String(port), SWITCHYARD_TEST_BACKEND: "" },
  });
  assert.equal(run.code, 0, run.stderr);
  const printed = JSON.parse(run.stdout);
  assert.equal(printed.listen, `127.0.0.1:${port}`);
  assert.deepEqual(printed.clusters.echo.backends, ["127.0.0.1:50051"], "empty takes the default");
});

Deno.test("substituteEnv: references, defaults, the escape, and problems by path", () => {
  const env: Record<string, string> = { HOST: "10.0.0.5", EMPTY: "", PORT: "50051" };
  const readEnv = (name: string) => env[name];
  const raw = {
    a: "${HOST}:${PORT}",
    b: ["${MISSING:-fallback}", "${EMPTY:-fallback}", "${EMPTY}", "${HOST:-}"],
    c: { d: "$${HOST} and $${ and $$ and $5 and ${HOST}" },
    n: 5,
    t: true,
    z: null,
    "${HOST}": "key untouched",
  };
  const { value, problems } = substituteEnv(raw, readEnv);
  assert.deepEqual(value, {
    a: "10.0.0.5:50051",
    b: ["fallback", "fallback", "", "10.0.0.5"],
    c: { d: "${HOST} and ${ and $$ and $5 and 10.0.0.5" },
    n: 5,
    t: true,
    z: null,
    "${HOST}": "key untouched",
  });
  assert.deepEqual(problems, []);
  assert.deepEqual(raw.a, "${HOST}:${PORT}", "the input is not changed");

  const failed = substituteEnv(
    { redis: { url: "redis://${NOPE}@x" }, list: ["ok", "${1BAD}", "${UNCLOSED", "${A}${B}"] },
    readEnv,
  );
  assert.deepEqual(failed.problems, [
    { path: ["redis", "url"], message: "environment variable NOPE is not set" },
    { path: ["list", 1], message: failed.problems[1].message },
    { path: ["list", 2], message: failed.problems[1].message },
    { path: ["list", 3], message: "environment variable A is not set" },
    { path: ["list", 3], message: "environment variable B is not set" },
  ]);
  assert.match(failed.problems[1].message, /^malformed "\$\{": write \$\{NAME\}/);
  assert.equal((failed.value as { redis: { url: string } }).redis.url, "redis://${NOPE}@x");
});

Deno.test("parseConfig: substitution runs before validation, for any source", () => {
  Deno.env.set("SWITCHYARD_TEST_WORKERS_PORT", "18088");
  try {
    const config = parseConfig(
      {
        listen: "127.0.0.1:${SWITCHYARD_TEST_WORKERS_PORT}",
        clusters: { a: { backends: ["127.0.0.1:1"] } },
        routes: [{ cluster: "a" }],
      },
      "test",
      PICKERS,
    );
    assert.equal(config.listen, "127.0.0.1:18088");
  } finally {
    Deno.env.delete("SWITCHYARD_TEST_WORKERS_PORT");
  }
});

/** The problems `parseConfig` finds in a config with `routes` to cluster `a`. */
function routeProblems(routes: unknown[]): string[] {
  try {
    parseConfig({ clusters: { a: { backends: ["127.0.0.1:1"] } }, routes }, "test", PICKERS);
    return [];
  } catch (error) {
    assert.ok(error instanceof ConfigError);
    return [...error.problems];
  }
}

Deno.test("duplicate routes: same path and conditions, in any order, are refused", () => {
  const canary = [{ name: "x-canary", exact: "1" }, { name: "x-debug", present: true }];
  assert.deepEqual(
    routeProblems([
      { service: "p.S", headers: canary, cluster: "a" },
      { service: "p.S", headers: [{ present: true, name: "x-debug" }, canary[0]], cluster: "a" },
    ]),
    [
      'routes[1]: duplicates routes[0] (the same service "p.S" and the same conditions), ' +
      "so it would never be used",
    ],
  );
  assert.deepEqual(
    routeProblems([
      { method: "/p.S/M", authority: { exact: "a:1" }, cluster: "a" },
      { method: "/p.S/M", authority: { exact: "a:1" }, cluster: "a", timeout: "1s" },
    ]),
    [
      'routes[1]: duplicates routes[0] (the same method "/p.S/M" and the same conditions), ' +
      "so it would never be used",
    ],
  );
  assert.deepEqual(routeProblems([{ cluster: "a" }, { cluster: "a" }]), [
    "routes[0]: a catch-all route must be the last one",
    "routes[1]: duplicates routes[0] (no service or method and the same conditions), " +
    "so it would never be used",
  ]);
});

Deno.test("duplicate routes: different conditions or paths are fine", () => {
  assert.deepEqual(
    routeProblems([
      { service: "p.S", headers: [{ name: "x-canary", exact: "1" }], cluster: "a" },
      { service: "p.S", headers: [{ name: "x-canary", exact: "2" }], cluster: "a" },
      { service: "p.S", headers: [{ name: "x-canary", prefix: "1" }], cluster: "a" },
      { service: "p.S", authority: { exact: "a:1" }, cluster: "a" },
      { service: "p.S", cluster: "a" },
      { method: "/p.S/M", cluster: "a" },
      { service: "p.T", cluster: "a" },
      { headers: [{ name: "x-canary", exact: "1" }], cluster: "a" },
      { cluster: "a" },
    ]),
    [],
  );
});

Deno.test("config.schema.json: patterns for durations and addresses, the pickers' enum", async () => {
  const text = await Deno.readTextFile(new URL("../config.schema.json", import.meta.url));
  assert.equal(
    text,
    renderConfigJsonSchema(PICKERS),
    "config.schema.json is stale: run `deno task schema`",
  );
  const schema = JSON.parse(text);
  const cluster = schema.properties.clusters.additionalProperties;
  const durationPattern = new RegExp(cluster.properties.connectTimeout.pattern);
  assert.equal(cluster.properties.connectTimeout.pattern, DURATION_PATTERN.source);
  assert.equal(cluster.properties.healthCheck.properties.interval.pattern, DURATION_PATTERN.source);
  for (const good of ["250ms", "5s", "1.5m", "2h"]) assert.ok(durationPattern.test(good), good);
  for (const bad of ["5 s", "5", "soon", "5sec"]) assert.ok(!durationPattern.test(bad), bad);

  const addressPattern = new RegExp(schema.properties.listen.pattern);
  assert.equal(cluster.properties.backends.items.pattern, schema.properties.listen.pattern);
  assert.equal(schema.properties.admin.properties.listen.pattern, schema.properties.listen.pattern);
  for (const good of ["0.0.0.0:8080", "[::1]:50051", "backend.internal:443"]) {
    assert.ok(addressPattern.test(good), good);
  }
  for (const bad of ["127.0.0.1", "host: 80", "http://host:80"]) {
    assert.ok(!addressPattern.test(bad), bad);
  }

  assert.deepEqual(cluster.properties.picker.enum, registeredPolicies());
});

Deno.test("config.json is valid", async () => {
  const raw = JSON.parse(await Deno.readTextFile(new URL("../config.json", import.meta.url)));
  const config = parseConfig(raw, "config.json", PICKERS);
  assert.ok(Object.keys(config.clusters).length > 0);
});

Deno.test("formatDuration writes ms back in the largest whole unit", () => {
  const cases: [number, string][] = [
    [0, "0ms"],
    [250, "250ms"],
    [1500, "1500ms"],
    [5000, "5s"],
    [90_000, "90s"],
    [300_000, "5m"],
    [7_200_000, "2h"],
  ];
  for (const [ms, text] of cases) {
    assert.equal(formatDuration(ms), text);
    assert.equal(parseDuration(text), ms, "round trip");
  }
  assert.equal(parseDuration(" 5s "), 5000, "surrounding whitespace is allowed, as before");
});

Deno.test("command line: check takes the config flags and --print, nothing else", () => {
  assert.deepEqual(parseCli(["check", "--config", "c.json", "--print", "--listen", "h:1"]), {
    command: "check",
    print: true,
    config: "c.json",
    listen: "h:1",
    admin: undefined,
    logLevel: undefined,
  });
  assert.deepEqual(parseCli(["check", "--help"]), { command: "help" });
  assert.throws(() => parseCli(["check", "extra"]), UsageError);
  assert.throws(() => parseCli(["check", "--version"]), UsageError);
  assert.throws(() => parseCli(["--print"]), UsageError, "--print belongs to check");
});
