// The protocol's byte-exact sample frames (protocol/vectors.json), as the
// protocol README asks client libraries to check them. No server needed.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { decode, encode } from "@msgpack/msgpack";
import { CLIENTS_DIR } from "./harness.js";

interface Vector {
  name: string;
  direction: "client" | "server" | "client-invalid";
  json?: unknown;
  hex: string;
}

const vectors: Vector[] = JSON.parse(readFileSync(resolve(CLIENTS_DIR, "../protocol/vectors.json"), "utf8"));

// The vectors' JSON writes a `bin` (Yjs payloads) as an array of bytes.
function plain(v: unknown): unknown {
  if (v instanceof Uint8Array) return Array.from(v);
  if (Array.isArray(v)) return v.map(plain);
  if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  return v;
}

// The reverse, for the one `bin` a client sends: `yjs.data`.
function withBin(frame: any): unknown {
  return frame.type === "yjs" ? { ...frame, data: Uint8Array.from(frame.data) } : frame;
}

test("client vectors: our encoding (as the client sends it) is byte-identical", () => {
  const client = vectors.filter((v) => v.direction === "client");
  assert.ok(client.length > 20);
  for (const v of client) {
    const bytes = encode(withBin(v.json), { ignoreUndefined: true });
    assert.equal(Buffer.from(bytes).toString("hex"), v.hex, v.name);
  }
});

test("server vectors decode to their JSON, u64 timestamps as exact numbers", () => {
  const server = vectors.filter((v) => v.direction === "server");
  assert.ok(server.length > 20);
  for (const v of server) {
    const frame = decode(Buffer.from(v.hex, "hex"));
    assert.deepEqual(plain(frame), v.json, v.name);
  }
  const ev = decode(Buffer.from(vectors.find((v) => v.name === "event")!.hex, "hex")) as { ts: unknown };
  assert.equal(typeof ev.ts, "number");
  assert.ok(Number.isSafeInteger(ev.ts));
});
