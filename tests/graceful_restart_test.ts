/**
 * Rolling restarts cost no call. A backend that shuts down gracefully (GOAWAY, then
 * listening again on the same port) must not fail calls: those above the GOAWAY's last
 * stream id, or queued while the backend reconnects, go to another backend or wait for this
 * one, because the backend never processed them (RFC 9113 §6.8, gRPC's transparent retry).
 * @module
 */
import assert from "node:assert/strict";
import { clusterConfig, GRPC_JS, startProxy, waitFor } from "./support/harness.ts";
import { closeRaw, connectRaw, rawCall, type RawCallResult } from "./support/raw_h2.ts";
import { startTestBackend, type TestBackend, TestMethod } from "./support/test_backend.ts";

const RESTARTS = 3;
const LANES = 8;

Deno.test({
  name: "three graceful restarts of one of two backends under steady load fail no call",
  ...GRPC_JS,
  fn: async () => {
    let restarting: TestBackend = await startTestBackend("b1");
    const steady = await startTestBackend("b2");
    const proxy = await startProxy(clusterConfig([restarting.address, steady.address]));
    const session = await connectRaw(proxy.address);
    const results: RawCallResult[] = [];
    let loading = true;
    try {
      // Sequential calls on several lanes of one client connection, until told to stop.
      const load = Promise.all(Array.from({ length: LANES }, async () => {
        while (loading) {
          results.push(
            await rawCall(session, TestMethod.echo, [new Uint8Array(16)], {
              "grpc-timeout": "10S",
            }),
          );
        }
      }));
      for (let round = 0; round < RESTARTS; round++) {
        const before = results.length;
        await waitFor(() => restarting.calls() > 0 && results.length > before + 50, {
          what: "traffic on both backends",
        });
        const port = restarting.port;
        await restarting.shutDownGracefully();
        const during = results.length;
        await waitFor(() => results.length > during + 50, { what: "calls while it is down" });
        restarting = await startTestBackend(`b1-${round}`, port);
        await waitFor(() => restarting.calls() > 0, {
          timeoutMs: 10_000,
          what: "the restarted backend to take calls",
        });
      }
      loading = false;
      await load;
      const failed = results.filter((result) => result.grpcStatus !== 0);
      console.log(
        `graceful restarts: ${results.length} calls, ${failed.length} failed, ` +
          `${restarting.calls()} on the last restarted backend`,
      );
      assert.equal(
        failed.length,
        0,
        `failed calls: ${
          JSON.stringify(failed.slice(0, 3).map((r) => [r.grpcStatus, r.rstCode, r.grpcMessage]))
        }`,
      );
    } finally {
      loading = false;
      await closeRaw(session);
      await proxy.stop();
      await restarting.stop();
      await steady.stop();
    }
  },
});
