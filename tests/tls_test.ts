import * as grpc from "@grpc/grpc-js";
import { equal as assertEquals } from "node:assert/strict";
import tls from "node:tls";
import { GreeterClient, startGreeterBackend } from "../examples/greeter_backend.ts";
import { startProxy } from "./support/harness.ts";
import { selfSigned } from "./support/pki.ts";

Deno.test({
  name: "TLS listener negotiates ALPN h2 and proxies gRPC",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir();
    const backend = await startGreeterBackend("tls-backend");
    const files = await selfSigned(dir, "localhost", "/CN=localhost", [
      "subjectAltName=DNS:localhost,IP:127.0.0.1",
    ]);
    const proxy = await startProxy({
      tls: files,
      clusters: { greeter: { backends: [backend.address] } },
      routes: [{ cluster: "greeter" }],
    });
    const certificate = await Deno.readTextFile(files.cert);
    const client = new GreeterClient(
      proxy.address,
      grpc.credentials.createSsl(Buffer.from(certificate)),
      { "grpc.ssl_target_name_override": "localhost" },
    );
    try {
      const [host, port] = proxy.address.split(":");
      const alpn = await new Promise<string | false>((resolve, reject) => {
        const socket = tls.connect({
          host,
          port: Number(port),
          servername: "localhost",
          ca: certificate,
          ALPNProtocols: ["h2", "http/1.1"],
        }, () => {
          resolve(socket.alpnProtocol ?? false);
          socket.end();
        });
        socket.once("error", reject);
      });
      assertEquals(alpn, "h2");

      const reply = await new Promise<{ backend: string }>((resolve, reject) =>
        // deno-lint-ignore no-explicit-any
        (client as any).SayHello({ name: "tls" }, (error: Error | null, value: any) =>
          error ? reject(error) : resolve(value))
      );
      assertEquals(reply.backend, "tls-backend");
    } finally {
      client.close();
      assertEquals(await proxy.stop(), 0);
      await backend.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
