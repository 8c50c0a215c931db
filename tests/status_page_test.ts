/**
 * The status page in a real headless Chromium (playwright-core): backends appear with their
 * state, a drained backend shows as drained, and the page follows changes on its own.
 * Saves a screenshot to tests/artifacts/status-page.png.
 */
import assert from "node:assert/strict";
import { adminRequest, adminUrl, startAdminProxy } from "./support/admin_client.ts";
import { hasChromium, launchChromium } from "./support/chromium.ts";
import { clusterConfig } from "./support/harness.ts";
import { startTestBackend, testClient, TestMethod, unaryCall } from "./support/test_backend.ts";

const ARTIFACTS = new URL("./artifacts/", import.meta.url);
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
