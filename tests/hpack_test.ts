/**
 * HPACK (RFC 7541) codec tests: the http2jp/hpack-test-case stories in tests/fixtures/hpack,
 * the Appendix C examples, round trips through an independent decoder (hpack.js), malformed
 * input, and the encoder's indexing strategy.
 */
import assert from "node:assert/strict";
import hpack from "hpack.js";
import { ByteBuffer } from "../src/h2/bytes.ts";
import { HpackDecoder, HpackError } from "../src/h2/hpack/decoder.ts";
import { DynamicTable } from "../src/h2/hpack/dynamic_table.ts";
import { HpackEncoder } from "../src/h2/hpack/encoder.ts";
import {
  huffmanDecode,
  huffmanDecodedMaxLength,
  huffmanEncode,
  huffmanEncodedLength,
} from "../src/h2/hpack/huffman.ts";

// ---------------------------------------------------------------------------------------------
// Helpers

interface StoryCase {
  header_table_size?: number;
  wire?: string;
  headers: Record<string, string>[];
}

interface Story {
  cases: StoryCase[];
}

const FIXTURES = new URL("./fixtures/hpack/", import.meta.url);

/** The stories of one fixture folder, by file name, in name order. */
function loadStories(kind: string): [string, Story][] {
  const folder = new URL(`${kind}/`, FIXTURES);
  const names = [...Deno.readDirSync(folder)].map((entry) => entry.name)
    .filter((name) => name.endsWith(".json")).sort();
  assert.ok(names.length > 0, `no stories in ${kind}`);
  return names.map((name) => [name, JSON.parse(Deno.readTextFileSync(new URL(name, folder)))]);
}

/** A story case's header list as a flat name/value array. */
function flat(headers: Record<string, string>[]): string[] {
  const out: string[] = [];
  for (const header of headers) {
    for (const [name, value] of Object.entries(header)) out.push(name, value);
  }
  return out;
}

function hex(text: string): Uint8Array {
  const digits = text.replace(/\s+/g, "");
  const bytes = new Uint8Array(digits.length / 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(digits.slice(2 * i, 2 * i + 2), 16);
  return bytes;
}

function toHex(bytes: Uint8Array): string {
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Decodes a whole block with no list size limit. */
function decode(decoder: HpackDecoder, block: Uint8Array): string[] {
  const out: string[] = [];
  decoder.decode(block, 0, block.length, out, Infinity);
  return out;
}

function encode(encoder: HpackEncoder, headers: readonly string[]): Uint8Array {
  const out = new ByteBuffer(64);
  encoder.encode(headers, out);
  return out.bytes.slice(0, out.length);
}

/** The decoder's dynamic table, newest first, read through indexed fields from 62 on. */
function dynamicEntries(decoder: HpackDecoder): string[] {
  const entries: string[] = [];
  for (let index = 62;; index++) {
    // An indexed field (§6.1): 7-bit prefix, then one continuation octet up to index 254.
    const block = index < 127 ? [0x80 | index] : [0xff, index - 127];
    try {
      entries.push(...decode(decoder, Uint8Array.from(block)));
    } catch (error) {
      assert.ok(error instanceof HpackError);
      return entries;
    }
  }
}

/** The size of a table holding these flat name/value pairs (§4.1). */
function tableSize(entries: string[]): number {
  let size = 0;
  for (let i = 0; i < entries.length; i += 2) {
    size += entries[i].length + entries[i + 1].length + 32;
  }
  return size;
}

interface ReferenceField {
  name: string;
  value: string;
  neverIndex: boolean;
}

interface ReferenceDecompressor {
  write(chunk: Uint8Array): void;
  execute(): void;
  read(): ReferenceField | null;
}

/** A decoder from hpack.js, an independent implementation, for one compression context. */
function referenceDecoder(): (block: Uint8Array) => ReferenceField[] {
  const decompressor: ReferenceDecompressor = hpack.decompressor.create({
    table: { maxSize: 4096 },
  });
  return (block) => {
    decompressor.write(block.slice());
    decompressor.execute();
    const fields: ReferenceField[] = [];
    for (let field = decompressor.read(); field !== null; field = decompressor.read()) {
      fields.push(field);
    }
    return fields;
  };
}

function referenceFlat(fields: ReferenceField[]): string[] {
  return fields.flatMap((field) => [field.name, field.value]);
}

/** A string with every octet 0x00–0xff. */
const ALL_OCTETS = String.fromCharCode(...Array.from({ length: 256 }, (_, i) => i));

/** One literal field without indexing, both strings literal (§6.2.2), Huffman-coded or not. */
function literalBlock(name: string, value: string, huffman: boolean): Uint8Array {
  const out = new ByteBuffer();
  out.pushByte(0x00);
  for (const text of [name, value]) {
    if (huffman) {
      const length = huffmanEncodedLength(text);
      assert.ok(length < 127);
      out.pushByte(0x80 | length);
      out.reserve(length);
      out.length = huffmanEncode(text, out.bytes, out.length);
    } else {
      assert.ok(text.length < 127);
      out.pushByte(text.length);
      out.pushLatin1(text);
    }
  }
  return out.bytes.slice(0, out.length);
}

// Registered first, while this test module's literal cache is still empty.
Deno.test("cache: never-indexed values stay out of it (§7.1.3)", () => {
  const decoder = new HpackDecoder();
  const secret = `Bearer ${crypto.randomUUID()}`;
  // Name index 23 (authorization) in a 4-bit prefix: 15, then 8.
  const block = (first: number) =>
    Uint8Array.from([first, 23 - 15, secret.length, ...new TextEncoder().encode(secret)]);
  const before = HpackDecoder.cacheSize;
  assert.deepEqual(decode(decoder, block(0x1f)), ["authorization", secret]);
  assert.equal(HpackDecoder.cacheSize, before, "a never-indexed value was cached");
  // The same value without indexing (§6.2.2) is cached.
  assert.deepEqual(decode(decoder, block(0x0f)), ["authorization", secret]);
  assert.equal(HpackDecoder.cacheSize, before + 1);
});

// ---------------------------------------------------------------------------------------------
// Huffman code (§5.2, Appendix B)

Deno.test("huffman: every octet round-trips, alone and in sequence", () => {
  const dst = new Uint8Array(huffmanDecodedMaxLength(4 * 256));
  for (let octet = 0; octet < 256; octet++) {
    const text = String.fromCharCode(octet);
    const encoded = new Uint8Array(huffmanEncodedLength(text));
    assert.equal(huffmanEncode(text, encoded, 0), encoded.length);
    const length = huffmanDecode(encoded, 0, encoded.length, dst);
    assert.deepEqual([...dst.subarray(0, length)], [octet]);
  }
  const text = ALL_OCTETS + [...ALL_OCTETS].reverse().join("");
  const encoded = new Uint8Array(huffmanEncodedLength(text));
  assert.equal(huffmanEncode(text, encoded, 0), encoded.length);
  const length = huffmanDecode(encoded, 0, encoded.length, dst);
  assert.equal(String.fromCharCode(...dst.subarray(0, length)), text);
});

Deno.test("huffman: codes agree with an independent decoder", () => {
  // hpack.js decodes with its own tree: an indexed-name literal whose value is every octet.
  const value = ALL_OCTETS;
  const length = huffmanEncodedLength(value);
  const out = new ByteBuffer();
  out.pushByte(0x01); // literal without indexing, name index 1 (:authority)
  out.pushByte(0xff); // Huffman, length over the 7-bit prefix
  let rest = length - 127;
  while (rest >= 128) {
    out.pushByte((rest & 0x7f) | 0x80);
    rest >>>= 7;
  }
  out.pushByte(rest);
  out.reserve(length);
  out.length = huffmanEncode(value, out.bytes, out.length);
  const fields = referenceDecoder()(out.bytes.slice(0, out.length));
  assert.deepEqual(referenceFlat(fields), [":authority", value]);
});

Deno.test("huffman: Appendix C.4 strings encode to the RFC's octets", () => {
  const cases: [string, string][] = [
    ["www.example.com", "f1e3c2e5f23a6ba0ab90f4ff"],
    ["no-cache", "a8eb10649cbf"],
    ["custom-key", "25a849e95ba97d7f"],
    ["custom-value", "25a849e95bb8e8b4bf"],
    ["302", "6402"],
    ["private", "aec3771a4b"],
    ["Mon, 21 Oct 2013 20:13:21 GMT", "d07abe941054d444a8200595040b8166e082a62d1bff"],
    ["https://www.example.com", "9d29ad171863c78f0b97c8e9ae82ae43d3"],
  ];
  const dst = new Uint8Array(64);
  for (const [text, wire] of cases) {
    const encoded = new Uint8Array(huffmanEncodedLength(text));
    huffmanEncode(text, encoded, 0);
    assert.equal(toHex(encoded), wire, text);
    const length = huffmanDecode(encoded, 0, encoded.length, dst);
    assert.equal(String.fromCharCode(...dst.subarray(0, length)), text);
  }
});

Deno.test("huffman: EOS and bad padding are rejected (§5.2)", () => {
  const dst = new Uint8Array(16);
  const invalid: [string, number[]][] = [
    ["EOS inside the string", [0xff, 0xff, 0xff, 0xff]],
    ["EOS after a symbol", [0x07, 0xff, 0xff, 0xff, 0xfc]],
    ["padding of zeros", [0x00]], // "0" (00000) then 000
    ["padding of 8 ones", [0xf8, 0xff]], // "&" (11111000) then a whole octet of ones
    ["padding of 11 ones", [0x1f, 0xff]], // "a" (00011) then 11 ones
  ];
  for (const [what, bytes] of invalid) {
    assert.equal(huffmanDecode(Uint8Array.from(bytes), 0, bytes.length, dst), -1, what);
  }
  // Valid padding of 3, 6 and 7 ones after one, two and five "0" (00000) symbols.
  assert.equal(huffmanDecode(Uint8Array.from([0x07]), 0, 1, dst), 1);
  assert.equal(huffmanDecode(Uint8Array.from([0x00, 0x3f]), 0, 2, dst), 2);
  assert.equal(huffmanDecode(Uint8Array.from([0x00, 0x00, 0x00, 0x7f]), 0, 4, dst), 5);
  assert.equal(huffmanEncodedLength("\u0100"), -1);
});

// ---------------------------------------------------------------------------------------------
// Fixture stories: every case of every story decodes to its headers.

for (const kind of ["nghttp2", "go-hpack", "nghttp2-change-table-size"]) {
  Deno.test(`stories: ${kind} decodes every case`, () => {
    for (const [file, story] of loadStories(kind)) {
      // The decoder's limit is the largest size the story ever advertised; the encoder signals
      // each change with a size update, which the decoder applies.
      const sizes = story.cases.map((c) => c.header_table_size ?? 4096);
      const decoder = new HpackDecoder(Math.max(4096, ...sizes));
      story.cases.forEach((c, seqno) => {
        assert.deepEqual(
          decode(decoder, hex(c.wire!)),
          flat(c.headers),
          `${kind}/${file}#${seqno}`,
        );
      });
    }
  });
}

// ---------------------------------------------------------------------------------------------
// RFC 7541 Appendix C

Deno.test("RFC 7541 C.1: integers in a 5-bit prefix, as table size updates", () => {
  // C.1.1: 10 fits the prefix. C.1.2: 1337 is 31 in the prefix, then 1306 in two octets.
  const decoder = new HpackDecoder();
  decode(decoder, hex("2a"));
  decode(decoder, hex("3f9a0a"));
  // 1337 octets hold 38 entries of 35 octets: the 39th and 40th evict the first two.
  const entries = Array.from({ length: 40 }, (_, i) => [`k${i % 10}`, String.fromCharCode(65 + i)]);
  const wire = entries.map(([name, value]) =>
    "4002" + toHex(new TextEncoder().encode(name)) + "01" +
    value.charCodeAt(0).toString(16)
  ).join("");
  decode(decoder, hex(wire));
  assert.equal(dynamicEntries(decoder).length, 2 * 38);

  const encoder = new HpackEncoder();
  encoder.setMaxTableSize(10);
  assert.equal(toHex(encode(encoder, [])), "2a");
  encoder.setMaxTableSize(1337);
  assert.equal(toHex(encode(encoder, [])), "3f9a0a");
});

Deno.test("RFC 7541 C.2: literal and indexed representations", () => {
  let decoder = new HpackDecoder();
  assert.deepEqual(
    decode(decoder, hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572")),
    ["custom-key", "custom-header"],
  );
  assert.deepEqual(dynamicEntries(decoder), ["custom-key", "custom-header"]);
  assert.equal(tableSize(dynamicEntries(decoder)), 55);

  decoder = new HpackDecoder();
  assert.deepEqual(decode(decoder, hex("040c 2f73 616d 706c 652f 7061 7468")), [
    ":path",
    "/sample/path",
  ]);
  assert.deepEqual(dynamicEntries(decoder), []);

  decoder = new HpackDecoder();
  assert.deepEqual(decode(decoder, hex("1008 7061 7373 776f 7264 0673 6563 7265 74")), [
    "password",
    "secret",
  ]);
  assert.deepEqual(dynamicEntries(decoder), []);

  decoder = new HpackDecoder();
  assert.deepEqual(decode(decoder, hex("82")), [":method", "GET"]);
  assert.deepEqual(dynamicEntries(decoder), []);
});

const REQUESTS = [
  [":method", "GET", ":scheme", "http", ":path", "/", ":authority", "www.example.com"],
  [
    ":method",
    "GET",
    ":scheme",
    "http",
    ":path",
    "/",
    ":authority",
    "www.example.com",
    "cache-control",
    "no-cache",
  ],
  [
    ":method",
    "GET",
    ":scheme",
    "https",
    ":path",
    "/index.html",
    ":authority",
    "www.example.com",
    "custom-key",
    "custom-value",
  ],
];

const REQUEST_TABLES: [string[], number][] = [
  [[":authority", "www.example.com"], 57],
  [["cache-control", "no-cache", ":authority", "www.example.com"], 110],
  [
    ["custom-key", "custom-value", "cache-control", "no-cache", ":authority", "www.example.com"],
    164,
  ],
];

const C3 = [
  "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
  "8286 84be 5808 6e6f 2d63 6163 6865",
  "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
];

const C4 = [
  "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
  "8286 84be 5886 a8eb 1064 9cbf",
  "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
];

const DATE1 = "Mon, 21 Oct 2013 20:13:21 GMT";
const DATE2 = "Mon, 21 Oct 2013 20:13:22 GMT";
const LOCATION = "https://www.example.com";
const COOKIE = "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1";

const RESPONSES = [
  [":status", "302", "cache-control", "private", "date", DATE1, "location", LOCATION],
  [":status", "307", "cache-control", "private", "date", DATE1, "location", LOCATION],
  [
    ":status",
    "200",
    "cache-control",
    "private",
    "date",
    DATE2,
    "location",
    LOCATION,
    "content-encoding",
    "gzip",
    "set-cookie",
    COOKIE,
  ],
];

const RESPONSE_TABLES: [string[], number][] = [
  [["location", LOCATION, "date", DATE1, "cache-control", "private", ":status", "302"], 222],
  [[":status", "307", "location", LOCATION, "date", DATE1, "cache-control", "private"], 222],
  [["set-cookie", COOKIE, "content-encoding", "gzip", "date", DATE2], 215],
];

const C5 = [
  "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a" +
  "3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
  "4803 3330 37c1 c0bf",
  "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d 54c0 5a04" +
  "677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049 5541 5851 5745 4f49" +
  "553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e 3d31",
];

const C6 = [
  "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e" +
  "919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
  "4883 640e ffc1 c0bf",
  "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab 77ad 94e7" +
  "821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed" +
  "4ee5 b106 3d50 07",
];

/** The size update to 256 octets that C.5 and C.6 assume happened (§6.3, 5-bit prefix). */
const RESIZE_256 = "3fe101";

/**
 * Decodes an Appendix C sequence, checking headers, table entries and table size after each
 * block, then round-trips the headers through a fresh encoder and both decoders.
 */
function checkSequence(
  blocks: string[],
  headers: string[][],
  tables: [string[], number][],
  tableSize256: boolean,
): void {
  const decoder = new HpackDecoder();
  blocks.forEach((block, i) => {
    const wire = hex((tableSize256 && i === 0 ? RESIZE_256 : "") + block);
    assert.deepEqual(decode(decoder, wire), headers[i], `block ${i + 1}`);
    const entries = dynamicEntries(decoder);
    assert.deepEqual(entries, tables[i][0], `table after block ${i + 1}`);
    assert.equal(tableSize(entries), tables[i][1], `table size after block ${i + 1}`);
  });

  const encoder = new HpackEncoder();
  if (tableSize256) encoder.setMaxTableSize(256);
  const ours = new HpackDecoder();
  const reference = referenceDecoder();
  for (const list of headers) {
    const wire = encode(encoder, list);
    assert.deepEqual(decode(ours, wire), list);
    assert.deepEqual(referenceFlat(reference(wire)), list);
  }
}

Deno.test("RFC 7541 C.3: requests without Huffman coding", () => {
  checkSequence(C3, REQUESTS, REQUEST_TABLES, false);
});

Deno.test("RFC 7541 C.4: requests with Huffman coding; the encoder emits the same octets", () => {
  checkSequence(C4, REQUESTS, REQUEST_TABLES, false);
  const encoder = new HpackEncoder();
  REQUESTS.forEach((list, i) => assert.equal(toHex(encode(encoder, list)), toHex(hex(C4[i]))));
});

Deno.test("RFC 7541 C.5: responses without Huffman coding, evicting at 256 octets", () => {
  checkSequence(C5, RESPONSES, RESPONSE_TABLES, true);
});

Deno.test("RFC 7541 C.6: responses with Huffman coding; the encoder emits the same octets", () => {
  checkSequence(C6, RESPONSES, RESPONSE_TABLES, true);
  // Same strategy as the RFC's encoder, except that a string stays raw when Huffman coding does
  // not make it shorter: "307" is 3 octets either way (C.6.2 has it Huffman-coded as 640eff).
  const expected = [RESIZE_256 + C6[0], "4803 333037 c1c0bf", C6[2]];
  const encoder = new HpackEncoder();
  encoder.setMaxTableSize(256);
  RESPONSES.forEach((list, i) => {
    assert.equal(toHex(encode(encoder, list)), toHex(hex(expected[i])), `C.6.${i + 1}`);
  });
});

// ---------------------------------------------------------------------------------------------
// Encoder round trips over the raw-data stories

/**
 * Encodes every case of every raw-data story with one encoder per story, calling `adjust`
 * before each case, and checks that hpack.js and our decoder both reproduce the headers.
 */
function roundTripStories(adjust: (encoder: HpackEncoder, seqno: number, cases: number) => void) {
  for (const [file, story] of loadStories("raw-data")) {
    const encoder = new HpackEncoder();
    const ours = new HpackDecoder();
    const reference = referenceDecoder();
    story.cases.forEach((c, seqno) => {
      adjust(encoder, seqno, story.cases.length);
      const headers = flat(c.headers);
      const wire = encode(encoder, headers);
      const where = `raw-data/${file}#${seqno}`;
      assert.deepEqual(decode(ours, wire), headers, where);
      const fields = reference(wire);
      assert.deepEqual(referenceFlat(fields), headers, where);
      for (const field of fields) {
        // Credentials must reach the peer as never-indexed literals (§6.2.3).
        if (field.name === "cookie" || field.name === "authorization") {
          assert.ok(field.neverIndex, `${where}: ${field.name} is not never-indexed`);
        }
      }
    });
  }
}

Deno.test("round trip: raw-data stories through hpack.js and our decoder", () => {
  roundTripStories(() => {});
});

Deno.test("round trip: raw-data stories with the table set to 0 mid-story", () => {
  roundTripStories((encoder, seqno, cases) => {
    if (seqno === cases >> 1) encoder.setMaxTableSize(0);
  });
});

Deno.test("round trip: raw-data stories with the table set to 256 mid-story", () => {
  roundTripStories((encoder, seqno, cases) => {
    if (seqno === cases >> 1) encoder.setMaxTableSize(256);
  });
});

Deno.test("round trip: raw-data stories with the table at 0 and back, between two blocks", () => {
  roundTripStories((encoder, seqno, cases) => {
    if (seqno === cases >> 1) {
      encoder.setMaxTableSize(0);
      encoder.setMaxTableSize(65536);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Malformed input

Deno.test("errors: every malformed block throws HpackError", () => {
  const invalid: [string, string][] = [
    ["indexed field with index 0", "80"],
    ["index past the static table with an empty dynamic table", "be"],
    ["index far past the table", "ff80 01"],
    ["literal name index past the table", "0f2f 0161"],
    ["truncated integer: prefix full, no continuation", "ff"],
    ["truncated integer: continuation bit on the last octet", "ff80"],
    ["integer overflow: above 2^32 - 1", "ffff ffff ff0f"],
    ["integer overflow: too many continuation octets", "ff80 8080 8080 00"],
    ["truncated string: length past the end", "4005 6162"],
    ["truncated string: value missing", "4001 61"],
    ["truncated string: Huffman length past the end", "4185 ff"],
    ["Huffman string containing EOS", "4084 ffff ffff 00"],
    ["Huffman padding not all ones", "4081 0000"],
    ["Huffman padding longer than 7 bits", "4082 1fff 00"],
    ["size update above the advertised maximum", "3fe2 1f"],
    ["size update after a header field", "8220"],
    ["size update after a literal field", "4001 6101 6220"],
  ];
  for (const [what, wire] of invalid) {
    assert.throws(() => decode(new HpackDecoder(), hex(wire)), HpackError, what);
  }
});

Deno.test("decode: a literal may name the entry its own insertion evicts (§4.4)", () => {
  const decoder = new HpackDecoder();
  // Table size 64, then aaaa: b (37 octets).
  decode(decoder, hex("3f21 4004 6161 6161 0162"));
  // Incremental indexing, name index 62 (aaaa), value cc: 38 more octets evict aaaa first.
  assert.deepEqual(decode(decoder, hex("7e02 6363")), ["aaaa", "cc"]);
  assert.deepEqual(dynamicEntries(decoder), ["aaaa", "cc"]);
});

Deno.test("errors: size updates at the start of a block are accepted, in sequence", () => {
  const decoder = new HpackDecoder(4096);
  // Two updates (to 0 then to 4096, §4.2) then :method GET.
  assert.deepEqual(decode(decoder, hex("20 3fe1 1f 82")), [":method", "GET"]);
  // Up to the advertised size, which can be above 4096.
  assert.deepEqual(decode(new HpackDecoder(8192), hex("3fe1 3f 82")), [":method", "GET"]);
  assert.throws(() => decode(new HpackDecoder(4096), hex("3fe1 3f")), HpackError);
  // A size update to 0 empties the table.
  decode(decoder, hex("4001 6101 62"));
  assert.deepEqual(dynamicEntries(decoder), ["a", "b"]);
  decode(decoder, hex("20"));
  assert.deepEqual(dynamicEntries(decoder), []);
});

// ---------------------------------------------------------------------------------------------
// Header list size limit

Deno.test("max list size: stops appending, returns the full size, keeps the table in sync", () => {
  const encoder = new HpackEncoder();
  const decoder = new HpackDecoder();
  const first = [":method", "POST", "x-big", "v".repeat(100), "x-new", "indexed", "x-tail", "t"];
  const wire = encode(encoder, first);
  const out: string[] = [];
  const size = decoder.decode(wire, 0, wire.length, out, 100);
  const expected = (7 + 4 + 32) + (5 + 100 + 32) + (5 + 7 + 32) + (6 + 1 + 32);
  assert.equal(size, expected);
  assert.deepEqual(out, [":method", "POST"]);

  // The next block refers to x-new (and x-big, if indexed) through the dynamic table.
  const second = ["x-new", "indexed", "x-big", "v".repeat(100), "x-tail", "t"];
  const again = encode(encoder, second);
  assert.ok(again.length < 10, "the repeated fields were not indexed");
  assert.deepEqual(decode(decoder, again), second);

  // Exactly at the limit still appends.
  const exact: string[] = [];
  const one = encode(new HpackEncoder(), [":method", "GET"]);
  assert.equal(new HpackDecoder().decode(one, 0, one.length, exact, 42), 42);
  assert.deepEqual(exact, [":method", "GET"]);
});

Deno.test("decode: reads only bytes[start..end) and handles an empty block", () => {
  const encoder = new HpackEncoder();
  const block = encode(encoder, [":path", "/a", "x", "y"]);
  const framed = new Uint8Array(block.length + 6).fill(0x80); // 0x80 would be an invalid index
  framed.set(block, 3);
  const out: string[] = [];
  assert.equal(new HpackDecoder().decode(framed, 3, 3 + block.length, out, Infinity), 73);
  assert.deepEqual(out, [":path", "/a", "x", "y"]);
  assert.equal(new HpackDecoder().decode(framed, 3, 3, out, Infinity), 0);
});

// ---------------------------------------------------------------------------------------------
// Binary values

Deno.test("binary: every octet survives encode → decode byte-exactly", () => {
  const values = [
    ALL_OCTETS,
    [...ALL_OCTETS].reverse().join(""),
    "\x00",
    "\xff\xfe\x80",
    "caf\xe9 \x80\x81\x9f", // windows-1252 would map 0x80–0x9f to other characters
    ...Array.from({ length: 16 }, (_, i) => ALL_OCTETS.slice(16 * i, 16 * i + 16)),
  ];
  const encoder = new HpackEncoder();
  const ours = new HpackDecoder();
  const reference = referenceDecoder();
  for (let pass = 0; pass < 2; pass++) { // the second pass meets indexed entries
    const headers = values.flatMap((value, i) => [`x-data-${i}-bin`, value]);
    const wire = encode(encoder, headers);
    const decoded = decode(ours, wire);
    assert.deepEqual(decoded, headers);
    for (let i = 1; i < decoded.length; i += 2) {
      const codes = [...decoded[i]].map((c) => c.charCodeAt(0));
      assert.deepEqual(codes, [...headers[i]].map((c) => c.charCodeAt(0)));
    }
    assert.deepEqual(referenceFlat(reference(wire)), headers);
  }
  // Huffman-coded literals with high octets decode byte-exactly too (through the cache and not).
  for (const value of values.filter((v) => huffmanEncodedLength(v) < 127)) {
    const block = literalBlock("x-bin", value, true);
    assert.deepEqual(decode(new HpackDecoder(), block), ["x-bin", value]);
  }
  const long = ALL_OCTETS.repeat(40); // 10 KiB, past the cache and into chunked conversion
  const out = new ByteBuffer();
  new HpackEncoder().encode(["x-long-bin", long], out);
  assert.deepEqual(decode(new HpackDecoder(), out.bytes.subarray(0, out.length)), [
    "x-long-bin",
    long,
  ]);
});

Deno.test("encode: a character above 255 is a RangeError", () => {
  assert.throws(() => encode(new HpackEncoder(), ["x-name", "caf\u00e9 \u20ac"]), RangeError);
});

// ---------------------------------------------------------------------------------------------
// Literal cache

Deno.test("cache: repeated literals decode equal, and the cache stays bounded", () => {
  const block = literalBlock("user-agent", "grpc-node-js/1.14.7", true);
  const first = decode(new HpackDecoder(), block);
  const second = decode(new HpackDecoder(), block);
  assert.deepEqual(first, ["user-agent", "grpc-node-js/1.14.7"]);
  assert.deepEqual(second, first);
  const raw = literalBlock("user-agent", "grpc-node-js/1.14.7", false);
  assert.deepEqual(decode(new HpackDecoder(), raw), first);

  // Many distinct strings: each decodes right although they replace each other in the slots.
  const decoder = new HpackDecoder();
  for (let i = 0; i < 100_000; i++) {
    const value = `v${i.toString(36)}`;
    const wire = literalBlock("x-key", value, (i & 1) === 0);
    const out: string[] = [];
    decoder.decode(wire, 0, wire.length, out, Infinity);
    if (out[1] !== value) assert.fail(`decoded ${out[1]} for ${value}`);
  }
  assert.ok(HpackDecoder.cacheSize > 0);
  assert.ok(HpackDecoder.cacheSize <= 1024, `cache holds ${HpackDecoder.cacheSize} strings`);
});

// ---------------------------------------------------------------------------------------------
// Encoder strategy

const GRPC_REQUEST = [
  ":method",
  "POST",
  ":scheme",
  "http",
  ":path",
  "/helloworld.Greeter/SayHello",
  ":authority",
  "127.0.0.1:8080",
  "content-type",
  "application/grpc",
  "te",
  "trailers",
  "user-agent",
  "grpc-node-js/1.14.7",
  "grpc-accept-encoding",
  "identity,deflate,gzip",
  "grpc-timeout",
  "99m",
];

Deno.test("encoder: a repeated gRPC request becomes one-octet indices, except grpc-timeout", () => {
  const encoder = new HpackEncoder();
  const decoder = new HpackDecoder();
  const first = encode(encoder, GRPC_REQUEST);
  assert.deepEqual(decode(decoder, first), GRPC_REQUEST);
  const next = GRPC_REQUEST.slice();
  next[next.length - 1] = "98m";
  const second = encode(encoder, next);
  assert.deepEqual(decode(decoder, second), next);
  // 8 indexed fields, then grpc-timeout as a literal without indexing with a literal name.
  for (let i = 0; i < 8; i++) assert.ok(second[i] >= 0x80, `field ${i} is not indexed`);
  assert.equal(second[8], 0x00);
  assert.equal(second.length, 8 + 1 + 1 + huffmanEncodedLength("grpc-timeout") + 1 + 3);
});

Deno.test("encoder: credentials are never indexed, short set-cookie too (§6.2.3)", () => {
  const encoder = new HpackEncoder();
  const reference = referenceDecoder();
  const headers = [
    "authorization",
    "Bearer abc",
    "proxy-authorization",
    "Basic Zm9vOmJhcg==",
    "cookie",
    "a=b",
    "set-cookie",
    "id=1",
    "set-cookie",
    COOKIE,
  ];
  for (let pass = 0; pass < 2; pass++) {
    const fields = reference(encode(encoder, headers));
    assert.deepEqual(referenceFlat(fields), headers);
    assert.deepEqual(fields.map((f) => f.neverIndex), [true, true, true, true, false]);
  }
  // The long set-cookie was indexed by the first pass, so the second sends one octet for it.
  const wire = encode(encoder, ["set-cookie", COOKIE]);
  assert.deepEqual([...wire], [0x80 | 62]);
});

Deno.test("encoder: large and per-call values are not indexed", () => {
  const encoder = new HpackEncoder();
  const big = "x".repeat(300);
  for (const headers of [["x-big", big], ["grpc-timeout", "5S"], ["content-length", "12"]]) {
    const first = encode(encoder, headers);
    assert.equal(first[0] & 0xf0, 0x00, `${headers[0]} is not a literal without indexing`);
    assert.deepEqual([...encode(encoder, headers)], [...first], `${headers[0]} was indexed`);
  }
});

Deno.test("encoder: a table size change is signalled at the next block's start (§4.2)", () => {
  const encoder = new HpackEncoder();
  const decoder = new HpackDecoder();
  const headers = ["x-key", "value"];
  decode(decoder, encode(encoder, headers));
  assert.deepEqual([...encode(encoder, headers)], [0x80 | 62]);

  // Larger than 4096 is capped to it: nothing to signal.
  encoder.setMaxTableSize(65536);
  assert.deepEqual([...encode(encoder, headers)], [0x80 | 62]);

  // Down to 0 and back up: the lowest is signalled first, and the table was emptied.
  encoder.setMaxTableSize(0);
  encoder.setMaxTableSize(4096);
  const wire = encode(encoder, headers);
  assert.equal(toHex(wire.subarray(0, 4)), "203fe11f");
  assert.equal(wire[4], 0x40);
  assert.deepEqual(decode(decoder, wire), headers);
  assert.deepEqual(dynamicEntries(decoder), headers);

  // At 0 nothing is indexed, and the size update comes once.
  encoder.setMaxTableSize(0);
  const zero = encode(encoder, headers);
  assert.equal(zero[0], 0x20);
  assert.equal(zero[1], 0x00);
  assert.deepEqual(decode(decoder, zero), headers);
  assert.equal(encode(encoder, headers)[0], 0x00);
  assert.deepEqual(dynamicEntries(decoder), []);
});

// ---------------------------------------------------------------------------------------------
// Dynamic table

Deno.test("dynamic table: ring growth, FIFO eviction, oversized entries (§4.4)", () => {
  const evicted: string[] = [];
  const table = new DynamicTable(97 * 40, (name, value, insertion) => {
    evicted.push(`${insertion}:${name}=${value}`);
  });
  // 100 entries of 40 octets, more than the ring's initial capacity; 97 fit.
  for (let i = 0; i < 100; i++) table.add(`k${i % 10}`, `v${String(i).padStart(5, "0")}`);
  assert.equal(table.length, 97);
  assert.equal(table.size, 97 * 40);
  assert.equal(table.inserted, 100);
  assert.deepEqual(evicted, ["0:k0=v00000", "1:k1=v00001", "2:k2=v00002"]);
  assert.equal(table.name(0), "k9");
  assert.equal(table.value(0), "v00099");
  assert.equal(table.value(96), "v00003");

  table.setMaxSize(40 * 10);
  assert.equal(table.length, 10);
  assert.equal(table.value(9), "v00090");

  // An entry larger than the table empties it and is not added.
  evicted.length = 0;
  table.add("huge", "x".repeat(400));
  assert.equal(table.length, 0);
  assert.equal(table.size, 0);
  assert.equal(evicted.length, 10);
  table.add("a", "b");
  assert.equal(table.length, 1);
  assert.equal(table.name(0), "a");
});
