/**
 * The status page in a real headless Chromium (playwright-core): backends appear with their
 * state, a drained backend shows as drained, and the page follows changes on its own; its
 * charts draw real traffic, and a backend's timeline shows its ejection.
 * Saves screenshots to tests/artifacts/status-page.png and status-page-charts.png; with
 * `UPDATE_DOCS_SCREENSHOT=1` the latter also replaces docs/status-page.png, which the README
 * shows (a plain test run leaves the tree clean).
 */
import assert from "node:assert/strict";
import type { Page } from "playwright-core";
import { adminRequest, adminUrl, startAdminProxy } from "./support/admin_client.ts";
import { hasChromium, launchChromium } from "./support/chromium.ts";
import { clusterConfig, waitFor } from "./support/harness.ts";
import { startHealthBackend } from "./support/health_backends.ts";
import { greeterClient, healthLogs, sayHello } from "./support/health_traffic.ts";
import { startTestBackend, testClient, TestMethod, unaryCall } from "./support/test_backend.ts";

const ARTIFACTS = new URL("./artifacts/", import.meta.url);
const DOCS = new URL("../docs/", import.meta.url);
const TOKEN = "status-page-token-0123456789";

Deno.test({
  name: "the status page shows backends, a drained one as drained, and refreshes itself",
  ignore: !hasChromium,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const b1 = await startTestBackend("b1");
    const b2 = await startTestBackend("b2");
    const proxy = await startAdminProxy({
      ...clusterConfig([b1.address, b2.address]),
      admin: { token: TOKEN },
    });
    const browser = await launchChromium();
    const client = testClient(proxy.address);
    try {
      const drained = await adminRequest(proxy, `/clusters/echo/backends/${b2.address}/drain`, {
        method: "POST",
        token: TOKEN,
      });
      assert.equal(drained.status, 200);
      for (let i = 0; i < 10; i++) await unaryCall(client, TestMethod.echo, Buffer.from("hi"));

      const page = await browser.newPage({ viewport: { width: 1280, height: 560 } });
      // The token travels in the fragment, which the browser never sends to the server.
      await page.goto(adminUrl(proxy, `/#token=${TOKEN}`));
      const row = (address: string) => page.locator(`tr[data-backend="${address}"]`);
      await row(b1.address).waitFor();
      await page.locator(`tr[data-backend="${b2.address}"][data-state="DRAINED"]`).waitFor();
      assert.match(await row(b2.address).innerText(), /DRAINED/);
      assert.match(await row(b1.address).innerText(), /READY/);
      assert.match(
        await page.locator('section[data-cluster="echo"] h2').innerText(),
        /round_robin/,
      );

      // Undrain through the API; the open page must follow without a reload.
      await adminRequest(proxy, `/clusters/echo/backends/${b2.address}/undrain`, {
        method: "POST",
        token: TOKEN,
      });
      await page.locator(`tr[data-backend="${b2.address}"][data-state="READY"]`).waitFor();
      await adminRequest(proxy, `/clusters/echo/backends/${b2.address}/drain`, {
        method: "POST",
        token: TOKEN,
      });
      await page.locator(`tr[data-backend="${b2.address}"][data-state="DRAINED"]`).waitFor();

      await Deno.mkdir(ARTIFACTS, { recursive: true });
      await page.screenshot({
        path: new URL("status-page.png", ARTIFACTS).pathname,
        fullPage: true,
      });
    } finally {
      client.close();
      await browser.close();
      await proxy.stop();
      await b1.stop();
      await b2.stop();
    }
  },
});

Deno.test({
  name: "without the token in the fragment, the status page reports the refusal",
  ignore: !hasChromium,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const b1 = await startTestBackend("b1");
    const proxy = await startAdminProxy({
      ...clusterConfig([b1.address]),
      admin: { token: TOKEN },
    });
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      await page.goto(adminUrl(proxy, "/"));
      await page.getByText("Update failed: HTTP 401").waitFor();
      assert.equal(await page.locator("tr[data-backend]").count(), 0);
    } finally {
      await browser.close();
      await proxy.stop();
      await b1.stop();
    }
  },
});

/** The values a chart's polylines of `series` draw, read back from their geometry (0 = axis). */
function drawnValues(page: Page, chart: string, series: string): Promise<number[]> {
  return page.locator(`svg[data-chart="${chart}"] polyline[data-series="${series}"]`).evaluateAll(
    (lines) =>
      lines.flatMap((line) => {
        // Value 0 is the bottom of the plot: the lowest y any axis or grid line starts at.
        const svg = line.closest("svg")!;
        const zero = Math.max(
          ...[...svg.querySelectorAll("line")].map((l) => Number(l.getAttribute("y1"))),
        );
        return (line.getAttribute("points") ?? "").trim().split(/\s+/).map((pair: string) =>
          zero - Number(pair.split(",")[1])
        );
      }),
  );
}

Deno.test({
  name: "the status page charts real traffic, backend shares, and an ejection on the timeline",
  ignore: !hasChromium,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const steady = await startHealthBackend("b1", "none");
    const flaky = await startHealthBackend("b2", "none");
    const proxy = await startAdminProxy({
      drain: { timeout: "5s" },
      // The shortest interval, so the window (180 samples: 18 s) mostly fills within the test.
      admin: { token: TOKEN, seriesInterval: "100ms" },
      clusters: {
        echo: {
          backends: [steady.address, flaky.address],
          outlierDetection: {
            consecutiveFailures: 5,
            baseEjectionTime: "60s",
            maxEjectionPercent: 50,
          },
          panicThreshold: 0,
        },
      },
      routes: [{ cluster: "echo" }],
    });
    const client = greeterClient(proxy.address);
    // Sequential calls, paced so the proxy, the client and Chromium share two busy cores.
    let running = true;
    const traffic = (async () => {
      while (running) {
        await sayHello(client);
        await new Promise((resolve) => setTimeout(resolve, 4));
      }
    })();
    const browser = await launchChromium();
    const series = async () =>
      (await adminRequest(proxy, "/clusters/echo/series", { token: TOKEN })).body;
    try {
      const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
      await page.goto(adminUrl(proxy, `/#token=${TOKEN}`));
      // Some healthy history first, on both backends.
      await waitFor(
        async () =>
          (await series()).points.filter((p: { calls: number }) => p.calls > 0).length >= 60,
        {
          what: "60 samples with calls",
          intervalMs: 250,
          timeoutMs: 30_000,
        },
      );
      flaky.failCalls(true);
      await waitFor(() => healthLogs(proxy, flaky.address, "ejected").length > 0, {
        what: "the failing backend's ejection",
      });
      // The page follows on its own: the flaky backend's timeline turns EJECTED, and stays.
      const ejected = page.locator(
        `svg[data-timeline="${flaky.address}"] rect[data-state="EJECTED"]`,
      );
      await waitFor(
        async () => Number(await ejected.getAttribute("data-samples", { timeout: 1_000 })) >= 50,
        {
          what: "50 EJECTED samples on the timeline",
          timeoutMs: 30_000,
        },
      );

      const calls = await drawnValues(page, "calls", "callsPerSecond");
      assert.ok(calls.length >= 20, `calls/s points: ${calls.length}`);
      assert.ok(calls.some((value) => value > 1), "calls/s above zero");
      const errors = await drawnValues(page, "errors", "errorRate");
      assert.ok(errors.some((value) => value > 1), "the failed calls show in the error rate");
      assert.ok((await drawnValues(page, "latency", "p50Seconds")).length > 0, "a p50 line");
      const p99 = await drawnValues(page, "latency", "p99Seconds");
      assert.ok(p99.some((value) => value > 1), "a p99 line above zero");
      assert.match(
        (await page.locator('svg[data-chart="calls"]').getAttribute("aria-label"))!,
        /^Calls\/s, last 18 seconds: latest [\d.k]+, peak [\d.k]+$/,
      );

      const shares = await page.locator("tr[data-series-backend]").evaluateAll((rows) =>
        rows.map((row) => Number(row.getAttribute("data-share")))
      );
      assert.equal(shares.length, 2);
      assert.ok(Math.abs(shares[0] + shares[1] - 1) < 1e-9, `shares ${shares} sum to 100%`);
      assert.ok(shares.every((share) => share > 0.05), `both backends took calls: ${shares}`);
      const steadyStates = await page.locator(
        `svg[data-timeline="${steady.address}"] rect[data-state]`,
      )
        .evaluateAll((rects) => rects.map((rect) => rect.getAttribute("data-state")));
      // (Samples taken before the first connection was up may show CONNECTING or IDLE.)
      assert.equal(steadyStates.at(-1), "READY");
      assert.ok(!steadyStates.includes("EJECTED"), `steady backend: ${steadyStates}`);
      const flakyStates = await page.locator(
        `svg[data-timeline="${flaky.address}"] rect[data-state]`,
      )
        .evaluateAll((rects) => rects.map((rect) => rect.getAttribute("data-state")));
      assert.deepEqual(flakyStates.slice(-2), ["READY", "EJECTED"]);

      await Deno.mkdir(ARTIFACTS, { recursive: true });
      const screenshot = new URL("status-page-charts.png", ARTIFACTS).pathname;
      await page.screenshot({ path: screenshot });
      if (Deno.env.get("UPDATE_DOCS_SCREENSHOT") === "1") {
        await Deno.copyFile(screenshot, new URL("status-page.png", DOCS).pathname);
      }
    } finally {
      running = false;
      await traffic;
      client.close();
      await browser.close();
      steady.stop();
      flaky.stop();
      await proxy.stop();
    }
  },
});
