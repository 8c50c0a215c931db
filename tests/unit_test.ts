/**
 * Fast unit tests of pure data-plane helpers: routing, grpc-timeout, durations and
 * grpc-message encoding, grpc-status and content-type parsing, URL redaction.
 */
import assert from "node:assert/strict";
import { parseDuration } from "../src/config/duration.ts";
import { redactUrl } from "../src/log/redact.ts";
import { formatGrpcTimeout, parseGrpcTimeout } from "../src/proxy/deadline.ts";
import { durationBucket } from "../src/dataplane/stats.ts";
import { frameCountIndex, frameCountsOf } from "../src/h2/frame_counts.ts";
import {
  decodeGrpcMessage,
  encodeGrpcMessage,
  GrpcStatus,
  isGrpcContentType,
  parseGrpcStatus,
} from "../src/proxy/grpc_status.ts";

Deno.test("grpc-timeout: every unit parses to milliseconds", () => {
  assert.equal(parseGrpcTimeout("2H"), 7_200_000);
  assert.equal(parseGrpcTimeout("3M"), 180_000);
  assert.equal(parseGrpcTimeout("5S"), 5_000);
  assert.equal(parseGrpcTimeout("250m"), 250);
  assert.equal(parseGrpcTimeout("1500u"), 1.5);
  assert.equal(parseGrpcTimeout("2000000n"), 2);
  assert.equal(parseGrpcTimeout("99999999S"), 99_999_999_000);
});

Deno.test("grpc-timeout: malformed values are rejected", () => {
  for (const bad of ["", "5", "S", "5s", "-1S", "1.5S", "123456789S", " 5S", "5S "]) {
    assert.equal(parseGrpcTimeout(bad), undefined, JSON.stringify(bad));
  }
});

Deno.test("grpc-timeout: formatting rounds up, clamps at 0, fits 8 digits", () => {
  assert.equal(formatGrpcTimeout(250), "250m");
  assert.equal(formatGrpcTimeout(0.2), "1m");
  assert.equal(formatGrpcTimeout(-40), "0m");
  assert.equal(formatGrpcTimeout(99_999_999), "99999999m");
  assert.equal(formatGrpcTimeout(100_000_000), "100000S");
  assert.equal(formatGrpcTimeout(1e15), "99999999S");
  for (const ms of [1, 999, 12_345, 5e9]) {
    assert.ok(parseGrpcTimeout(formatGrpcTimeout(ms))! >= ms, `round trip of ${ms}`);
  }
});

Deno.test("durations: units, fractions and rejects", () => {
  assert.equal(parseDuration("250ms"), 250);
  assert.equal(parseDuration("5s"), 5_000);
  assert.equal(parseDuration("1.5s"), 1_500);
  assert.equal(parseDuration("2m"), 120_000);
  assert.equal(parseDuration("1h"), 3_600_000);
  for (const bad of ["", "5", "s", "-1s", "5 s", "5sec", "1e3ms"]) {
    assert.equal(parseDuration(bad), undefined, JSON.stringify(bad));
  }
});

Deno.test("grpc-message: only '%' and non-printable or non-ASCII bytes are escaped", () => {
  assert.equal(
    encodeGrpcMessage("no route for /a.B/C: 100% (x)"),
    "no route for /a.B/C: 100%25 (x)",
  );
  assert.equal(encodeGrpcMessage("ü\n"), "%C3%BC%0A");
  // What grpc-js clients do with it: decodeURI must restore the original exactly.
  const message = "cluster a/b: ünïcødé 100% & more\t!";
  assert.equal(decodeURI(encodeGrpcMessage(message)), message);
});

Deno.test("grpc-status: 1*DIGIT up to 16, anything else is UNKNOWN", () => {
  for (const [value, code] of [["0", 0], ["16", 16], ["13", 13], ["007", 7]] as const) {
    assert.equal(parseGrpcStatus(value), code, value);
  }
  for (const bad of [undefined, "", "17", "99", "-1", "+3", "1e1", "0x1", " 5", "abc", "NaN"]) {
    assert.equal(parseGrpcStatus(bad), GrpcStatus.UNKNOWN, JSON.stringify(bad));
  }
});

Deno.test("content-type: application/grpc, +subtype or ;params only", () => {
  for (const good of ["application/grpc", "application/grpc+proto", "application/grpc;x=y"]) {
    assert.ok(isGrpcContentType(good), good);
  }
  for (
    const bad of [
      "",
      "application/grpcfoo",
      "application/grpc-web",
      "application/grpc+",
      "text/plain",
    ]
  ) {
    assert.ok(!isGrpcContentType(bad), bad);
  }
});

Deno.test("redactUrl: the password, or a lone username, never shows", () => {
  const cases: [string, string][] = [
    // Redis reads a lone username as the password (AUTH <password>), so it is a secret too.
    ["redis://secret@127.0.0.1:6379", "redis://%5Bredacted%5D@127.0.0.1:6379"],
    ["redis://user:secret@127.0.0.1:6379/0", "redis://user:%5Bredacted%5D@127.0.0.1:6379/0"],
    ["redis://:secret@127.0.0.1:6379", "redis://:%5Bredacted%5D@127.0.0.1:6379"],
    ["rediss://redis.example:6380/2", "rediss://redis.example:6380/2"],
  ];
  for (const [url, redacted] of cases) assert.equal(redactUrl(url), redacted, url);
  assert.doesNotMatch(redactUrl("not a url: secret"), /secret/);
});

Deno.test("grpc-message: percent-decoding undoes encoding, and keeps malformed escapes", () => {
  const message = "100% ça va / done\n";
  assert.equal(decodeGrpcMessage(encodeGrpcMessage(message)), message);
  assert.equal(decodeGrpcMessage("plain"), "plain");
  assert.equal(decodeGrpcMessage("bad %zz escape"), "bad %zz escape");
});

Deno.test("duration buckets: a value on a bound falls in that bound's bucket", () => {
  assert.equal(durationBucket(0), 0);
  assert.equal(durationBucket(0.00005), 0);
  assert.equal(durationBucket(0.00006), 1);
  assert.equal(durationBucket(60), 18);
  assert.equal(durationBucket(61), 19);
});

Deno.test("HTTP/2 frame counts: slots by peer, direction and code; unknown codes are OTHER", () => {
  const counts = new Float64Array(64);
  counts[frameCountIndex(true, false, 0x8)] += 2; // CANCEL from a client
  counts[frameCountIndex(false, true, 0x8)]++; // CANCEL to a backend
  counts[frameCountIndex(false, false, 0xff)]++; // an undefined code from a backend
  counts[frameCountIndex(true, true, 0xe)]++; // the first code past HTTP_1_1_REQUIRED
  assert.deepEqual(frameCountsOf(counts), [
    { peer: "client", direction: "sent", code: "OTHER", count: 1 },
    { peer: "client", direction: "received", code: "CANCEL", count: 2 },
    { peer: "upstream", direction: "sent", code: "CANCEL", count: 1 },
    { peer: "upstream", direction: "received", code: "OTHER", count: 1 },
  ]);
});
