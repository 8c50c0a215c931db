/**
 * The deployment files: the systemd unit passes systemd's own checks and covers a drain, the
 * Dockerfile ships what `deno task compile` builds, and that executable checks and runs a
 * config. A test whose tool cannot run on this machine is skipped, and its name says why.
 */
import assert from "node:assert/strict";
import denoJson from "../deno.json" with { type: "json" };
import { registeredPolicies } from "../src/balancer/registry.ts";
import { parseDuration } from "../src/config/duration.ts";
import { parseConfig } from "../src/config/load.ts";
import { freePort, waitFor } from "./support/harness.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const UNIT = `${ROOT}deploy/switchyard.service`;
const INSTALLED_BINARY = "/usr/local/bin/switchyard";

/** Runs `command args`; `undefined` when the program is not installed. */
async function output(
  command: string,
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string } | undefined> {
  try {
    const { code, stdout, stderr } = await new Deno.Command(command, { args, cwd: ROOT }).output();
    const decoder = new TextDecoder();
    return { code, stdout: decoder.decode(stdout), stderr: decoder.decode(stderr) };
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}

/** The `Key=value` settings of the unit, by key (a repeated key keeps its last value). */
function unitSettings(text: string): Map<string, string> {
  return new Map(
    text.split("\n")
      .filter((line) => /^[A-Za-z]+=/.test(line))
      .map((line) => [line.slice(0, line.indexOf("=")), line.slice(line.indexOf("=") + 1)]),
  );
}

const systemdAnalyze = await output("systemd-analyze", ["--version"]);

Deno.test({
  name: "deploy/switchyard.service: systemd-analyze verify and security" +
    (systemdAnalyze ? "" : " (skipped: systemd-analyze is not installed)"),
  ignore: systemdAnalyze === undefined,
  fn: async () => {
    // verify insists that the binary exists: a stub stands in for the installed one.
    const dir = await Deno.makeTempDir({ prefix: "switchyard-unit-" });
    try {
      await Deno.writeTextFile(`${dir}/switchyard`, "#!/bin/sh\n", { mode: 0o755 });
      const unit = `${dir}/switchyard.service`;
      const text = await Deno.readTextFile(UNIT);
      await Deno.writeTextFile(unit, text.replaceAll(INSTALLED_BINARY, `${dir}/switchyard`));
      const verify = (await output("systemd-analyze", ["verify", unit]))!;
      assert.equal(verify.code, 0, verify.stderr);
      assert.equal(verify.stderr, "", "no warnings (unknown keys are only warned about)");
      // The exposure score runs from 0 (locked down) to 10; the threshold is in tenths.
      const security = (await output("systemd-analyze", [
        ...["security", "--offline=yes", "--threshold=20", unit],
      ]))!;
      assert.equal(security.code, 0, `exposure above 2.0:\n${security.stdout}${security.stderr}`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("deploy/switchyard.service: checks before starting, reloads on HUP, outlasts a drain", async () => {
  const settings = unitSettings(await Deno.readTextFile(UNIT));
  const config = "--config /etc/switchyard/config.json";
  assert.equal(settings.get("ExecStartPre"), `${INSTALLED_BINARY} check ${config}`);
  assert.equal(settings.get("ExecStart"), `${INSTALLED_BINARY} ${config}`);
  assert.equal(settings.get("ExecReload"), "/bin/kill -HUP $MAINPID");
  assert.equal(settings.get("KillSignal"), "SIGTERM");
  assert.equal(settings.get("RestartPreventExitStatus"), "2", "a bad config is not restarted");
  const { drain } = parseConfig(
    { clusters: { a: { backends: ["127.0.0.1:1"] } }, routes: [{ cluster: "a" }] },
    "defaults",
    { pickers: registeredPolicies() },
  );
  const stopMs = parseDuration(settings.get("TimeoutStopSec") ?? "")!;
  assert.ok(
    stopMs >= drain.delay + drain.timeout + 5_000,
    `TimeoutStopSec ${stopMs}ms must outlast the default drain (${drain.delay} + ` +
      `${drain.timeout} ms) with a margin`,
  );
});

Deno.test("Dockerfile: builds with the compile task and ships its output", async () => {
  const dockerfile = await Deno.readTextFile(`${ROOT}Dockerfile`);
  const compileOutput = /--output (\S+)/.exec(denoJson.tasks.compile)![1];
  assert.match(dockerfile, /RUN deno task compile/);
  assert.ok(
    dockerfile.includes(`COPY --from=build /src/${compileOutput} ${INSTALLED_BINARY}`),
    `the runtime stage copies ${compileOutput}`,
  );
  assert.match(dockerfile, /^ENTRYPOINT \["\/usr\/local\/bin\/switchyard"\]$/m);
  assert.match(dockerfile, /^USER nonroot$/m);
  assert.match(dockerfile, /^EXPOSE 8080 9901$/m);
});

/**
 * Builds the executable with the `compile` task's own flags into `output`; the reason it could
 * not, or `undefined`. Without network access `deno compile` cannot fetch the runtime it embeds.
 */
async function compile(output: string): Promise<string | undefined> {
  const args = denoJson.tasks.compile.split(/\s+/).slice(1);
  args[args.indexOf("--output") + 1] = output;
  const result = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    signal: AbortSignal.timeout(300_000),
  }).output();
  if (result.success) return undefined;
  // The last of the error's causes is the root one ("failed to lookup address information").
  const lines = new TextDecoder().decode(result.stderr).split("Stack backtrace:")[0].split("\n");
  const cause = lines.findLast((line) => /^\s+\d+: /.test(line))?.replace(/^\s+\d+: /, "");
  return cause ?? lines.find((line) => line.startsWith("error:")) ?? `exit ${result.code}`;
}

const buildDir = await Deno.makeTempDir({ prefix: "switchyard-compile-" });
const binary = `${buildDir}/switchyard`;
const notCompiled = await compile(binary);
if (notCompiled !== undefined) await Deno.remove(buildDir, { recursive: true });

Deno.test({
  name: "deno task compile: the executable checks and serves a config" +
    (notCompiled === undefined ? "" : ` (skipped: deno compile cannot run here: ${notCompiled})`),
  ignore: notCompiled !== undefined,
  fn: async () => {
    const file = `${buildDir}/config.json`;
    try {
      const version = (await output(binary, ["--version"]))!;
      assert.match(version.stdout, new RegExp(`^switchyard ${denoJson.version} `));
      const embedded = (await output(binary, ["check"]))!;
      assert.equal(embedded.code, 0, embedded.stderr);
      assert.match(embedded.stdout, /^config OK: \(embedded config\.json\)/);

      // Two workers, so the embedded worker module (`--include`) is loaded too.
      await Deno.writeTextFile(
        file,
        JSON.stringify({
          listen: `127.0.0.1:${await freePort()}`,
          admin: { listen: `127.0.0.1:${await freePort()}` },
          workers: 2,
          clusters: { a: { backends: ["127.0.0.1:1"] } },
          routes: [{ cluster: "a" }],
        }),
      );
      const checked = (await output(binary, ["check", "--config", file]))!;
      assert.equal(checked.code, 0, checked.stderr);
      const child = new Deno.Command(binary, {
        args: ["--config", file],
        stdout: "null",
        stderr: "piped",
      }).spawn();
      let log = "";
      const reading = child.stderr.pipeThrough(new TextDecoderStream()).pipeTo(
        new WritableStream({ write: (chunk) => void (log += chunk) }),
      );
      await waitFor(() => log.includes("listening on"), { what: "the compiled proxy to listen" });
      child.kill("SIGTERM");
      assert.equal((await child.status).code, 0, log);
      await reading;
    } finally {
      await Deno.remove(buildDir, { recursive: true });
    }
  },
});
