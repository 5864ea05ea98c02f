// The school directory's admin API (`GET`/`PUT /admin/directory`) against
// its OpenAPI document, protocol/directory.openapi.yaml. First the document
// itself: valid OpenAPI 3.1, its schemas valid JSON Schema 2020-12 (Ajv,
// strict), its examples valid against them. Then the real server (no
// mocks): every answer must be a status the document lists for that
// operation, with the documented headers, media type and a body matching
// the documented schema; the document's examples are sent and compared with
// what the server answers; and every status the document lists must have
// been produced (but the few listed in NOT_EXERCISED, with the reason).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request, type IncomingMessage } from "node:http";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import SwaggerParser from "@apidevtools/swagger-parser";
import { Ajv2020, type ValidateFunction } from "ajv/dist/2020.js";
import { parse } from "yaml";
import { CLIENTS_DIR, TestServer } from "./harness.js";

const SPEC_FILE = resolve(CLIENTS_DIR, "../protocol/directory.openapi.yaml");
const spec: any = parse(readFileSync(SPEC_FILE, "utf8"));
const PATH = "/admin/directory";
const OPERATIONS = ["get", "put"] as const;
type Op = (typeof OPERATIONS)[number];
const ADMIN_KEY = "directory-api-test-key-0123456789abcdef";
/** src/admin.rs MAX_SYNC_BYTES. */
const MAX_SYNC_BYTES = 32 * 1024 * 1024;

/** Statuses the document lists that no test can cause, and why. */
const NOT_EXERCISED: Record<string, string> = {
  "put 500": "a storage failure cannot be caused from outside the process; its body is checked through the document's example",
};

// ---- The document as JSON Schema -------------------------------------------

// OpenAPI 3.1 schemas are JSON Schema 2020-12. The whole document is added
// to Ajv under the id "spec" (its top-level keys declared as keywords that
// validate nothing), and schemas are compiled from JSON pointers into it,
// so that their `$ref`s resolve as they do in the document.
const ajv = new Ajv2020({ allErrors: true, strict: true, allowUnionTypes: true });
for (const key of Object.keys(spec)) ajv.addKeyword(key);
ajv.addSchema(spec, "spec");

const escape = (part: string) => part.replace(/~/g, "~0").replace(/\//g, "~1");
const unescape = (part: string) => part.replace(/~1/g, "/").replace(/~0/g, "~");

/** The node at a JSON pointer into the document. */
function at(pointer: string): any {
  return pointer
    .split("/")
    .slice(1)
    .reduce((node, part) => node?.[unescape(part)], spec);
}

/** The node at `pointer`, following `$ref`s, with the pointer it ends at. */
function follow(pointer: string): [any, string] {
  let node = at(pointer);
  while (node && typeof node.$ref === "string") {
    assert.ok(node.$ref.startsWith("#/"), `only local $refs: ${node.$ref}`);
    pointer = node.$ref.slice(1);
    node = at(pointer);
  }
  assert.ok(node !== undefined, `nothing at ${pointer}`);
  return [node, pointer];
}

const compiled = new Map<string, ValidateFunction>();
function schemaAt(pointer: string): ValidateFunction {
  let validate = compiled.get(pointer);
  if (!validate) {
    validate = ajv.compile({ $ref: `spec#${pointer}` });
    compiled.set(pointer, validate);
  }
  return validate;
}

function matches(pointer: string, value: unknown): boolean {
  return schemaAt(pointer)(value);
}

function assertMatches(pointer: string, value: unknown, what: string): void {
  const validate = schemaAt(pointer);
  assert.ok(
    validate(value),
    `${what} does not match the schema at ${pointer}: ${ajv.errorsText(validate.errors)}\n${JSON.stringify(value)?.slice(0, 2000)}`,
  );
}

const OP_POINTER = (op: Op) => `/paths/${escape(PATH)}/${op}`;
const SYNC_SCHEMA = `${OP_POINTER("put")}/requestBody/content/application~1json/schema`;

/** Every media type of the document's operations: [pointer, media type object]. */
function mediaTypes(): Array<[string, any]> {
  const found: Array<[string, any]> = [];
  for (const [path, item] of Object.entries<any>(spec.paths)) {
    for (const op of Object.keys(item)) {
      const opPointer = `/paths/${escape(path)}/${op}`;
      if (item[op].requestBody) {
        const [body, bodyPointer] = follow(`${opPointer}/requestBody`);
        for (const type of Object.keys(body.content)) found.push([`${bodyPointer}/content/${escape(type)}`, body.content[type]]);
      }
      for (const status of Object.keys(item[op].responses)) {
        const [response, responsePointer] = follow(`${opPointer}/responses/${status}`);
        for (const type of Object.keys(response.content ?? {})) {
          found.push([`${responsePointer}/content/${escape(type)}`, response.content[type]]);
        }
      }
    }
  }
  return found;
}

/** The document's example `name` of a media type, by pointer. */
function example(mediaPointer: string, name: string): any {
  const [value] = follow(`${mediaPointer}/examples/${name}`);
  return structuredClone(value.value);
}

const FULL_SYNC = () => example(`${OP_POINTER("put")}/requestBody/content/application~1json`, "full");
const DELTA_SYNC = () => example(`${OP_POINTER("put")}/requestBody/content/application~1json`, "delta");
const APPLIED = (name: string) => example(`${OP_POINTER("put")}/responses/200/content/application~1json`, name);
const STORED = (name: string) => example(`${OP_POINTER("get")}/responses/200/content/application~1json`, name);
/** The document's example `name` of the PUT's `status` answer. */
const ANSWER = (status: number, name: string) => {
  const [, pointer] = follow(`${OP_POINTER("put")}/responses/${status}`);
  return example(`${pointer}/content/application~1json`, name);
};

// ---- Calls checked against the document ------------------------------------

/** Operation and status pairs the server produced, as "put 409". */
const exercised = new Set<string>();

interface Answer {
  status: number;
  headers: Headers;
  text: string;
  /** The JSON body, if JSON. */
  body: any;
}

interface CallOptions {
  /** The admin key to send as a bearer token; null: no Authorization. */
  key?: string | null;
  /** The whole Authorization header, instead of `Bearer key`. */
  authorization?: string;
  /** A JSON body (serialized), or raw bytes / text as they are. */
  json?: unknown;
  raw?: string | Uint8Array<ArrayBuffer>;
}

/**
 * Calls `op` on `server` and checks the answer against the document: a
 * status listed for the operation, its required headers (matching their
 * schemas), no body where none is documented, otherwise a documented media
 * type and a body matching its schema.
 */
async function call(server: TestServer, op: Op, options: CallOptions = {}): Promise<Answer> {
  const headers: Record<string, string> = {};
  const key = options.key === undefined ? ADMIN_KEY : options.key;
  if (options.authorization !== undefined) headers.authorization = options.authorization;
  else if (key !== null) headers.authorization = `Bearer ${key}`;
  let body: string | Uint8Array<ArrayBuffer> | undefined = options.raw;
  if (options.json !== undefined) {
    body = JSON.stringify(options.json);
    headers["content-type"] = "application/json";
  }
  const res = await fetch(server.httpUrl + PATH, { method: op.toUpperCase(), headers, body });
  return checked(op, res.status, res.headers, await res.text());
}

/** An answer to `op`, checked against the document as `call` says. */
function checked(op: Op, status: number, resHeaders: Headers, text: string): Answer {
  const res = { status, headers: resHeaders };
  const what = `${op.toUpperCase()} ${PATH} → ${res.status}`;

  const operation = at(OP_POINTER(op));
  assert.ok(operation, `${op.toUpperCase()} ${PATH} is not in the document`);
  assert.ok(
    Object.hasOwn(operation.responses, String(res.status)),
    `${what}: the document lists only ${Object.keys(operation.responses).join(", ")} for this operation (body: ${text.slice(0, 300)})`,
  );
  exercised.add(`${op} ${res.status}`);
  const [response, pointer] = follow(`${OP_POINTER(op)}/responses/${res.status}`);

  for (const name of Object.keys(response.headers ?? {})) {
    const [header, headerPointer] = follow(`${pointer}/headers/${escape(name)}`);
    const value = res.headers.get(name);
    if (header.required) assert.ok(value !== null, `${what}: no ${name} header`);
    if (value !== null && header.schema) assertMatches(`${headerPointer}/schema`, value, `${what}: header ${name}`);
  }

  let json: any;
  if (!response.content) {
    assert.equal(text, "", `${what}: the document says no body`);
  } else {
    const type = res.headers.get("content-type");
    assert.ok(type, `${what}: no Content-Type`);
    const mediaType = type.split(";")[0].trim().toLowerCase();
    assert.ok(
      Object.hasOwn(response.content, mediaType),
      `${what}: ${mediaType}, documented: ${Object.keys(response.content).join(", ")}`,
    );
    const value = mediaType === "application/json" ? (json = JSON.parse(text)) : text;
    assertMatches(`${pointer}/content/${escape(mediaType)}/schema`, value, `${what}: body`);
  }
  return { status: res.status, headers: res.headers, text, body: json };
}

/**
 * A PUT of `body` with `Expect: 100-continue`: the body is sent only if
 * the server asks for it (`100 Continue`, which it does when it starts
 * reading the body). The answer is checked as `call` checks it.
 */
async function putExpecting(server: TestServer, key: string | null, body: Uint8Array): Promise<Answer & { bodyAsked: boolean }> {
  const headers: Record<string, string> = { "content-length": String(body.length), expect: "100-continue" };
  if (key !== null) headers.authorization = `Bearer ${key}`;
  const req = request(server.httpUrl + PATH, { method: "PUT", headers, agent: false });
  let bodyAsked = false;
  req.on("continue", () => {
    bodyAsked = true;
    req.end(body);
  });
  const res = await new Promise<IncomingMessage>((resolve, reject) => {
    req.on("response", resolve);
    req.on("error", reject);
    req.flushHeaders();
  });
  let text = "";
  res.setEncoding("utf8");
  for await (const chunk of res) text += chunk;
  // A body never asked for is never sent: the request is dropped.
  req.on("error", () => {});
  req.destroy();
  const resHeaders = new Headers();
  for (const [name, value] of Object.entries(res.headers)) {
    if (value !== undefined) resHeaders.set(name, Array.isArray(value) ? value.join(", ") : value);
  }
  return { ...checked("put", res.statusCode ?? 0, resHeaders, text), bodyAsked };
}

/** A sync the document's schema accepts (`valid`) or refuses, sent to the server. */
async function put(server: TestServer, sync: unknown, valid: boolean): Promise<Answer> {
  assert.equal(
    matches(SYNC_SCHEMA, sync),
    valid,
    `the Sync schema should ${valid ? "accept" : "refuse"} ${JSON.stringify(sync).slice(0, 500)}`,
  );
  return call(server, "put", { json: sync });
}

// ---- Servers ---------------------------------------------------------------

let admin: TestServer; // with an admin key
let plain: TestServer; // without
let web: TestServer; // without, serving a web app (web_dir)
let webDir = "";

before(async () => {
  webDir = mkdtempSync(join(tmpdir(), "preau-directory-web-"));
  writeFileSync(join(webDir, "index.html"), "<!doctype html><title>préau</title>\n");
  [admin, plain, web] = await Promise.all([
    TestServer.start(["--admin-key", ADMIN_KEY]),
    TestServer.start(),
    TestServer.start(["--web-dir", webDir]),
  ]);
});

after(async () => {
  await Promise.all([admin, plain, web].filter(Boolean).map((s) => s.stop()));
  if (webDir) rmSync(webDir, { recursive: true, force: true });
});

// ---- The document ----------------------------------------------------------

test("the document is valid OpenAPI 3.1, with strict JSON Schema 2020-12 schemas and valid examples", async () => {
  assert.equal(spec.openapi, "3.1.0");
  // Throws with the problems if the document is not valid OpenAPI
  // (it dereferences its argument in place: give it a copy).
  await SwaggerParser.validate(structuredClone(spec));
  assert.deepEqual(Object.keys(spec.paths), [PATH]);
  assert.deepEqual(Object.keys(spec.paths[PATH]).sort(), [...OPERATIONS]);

  // Each schema compiles under Ajv's strict mode (unknown keywords,
  // misplaced ones, bad patterns and unresolvable $refs all throw).
  for (const name of Object.keys(spec.components.schemas)) schemaAt(`/components/schemas/${escape(name)}`);
  for (const [pointer, media] of mediaTypes()) {
    assert.ok(media.schema, `${pointer}: no schema`);
    schemaAt(`${pointer}/schema`);
    const examples = Object.keys(media.examples ?? {});
    if (pointer.endsWith("/application~1json")) assert.ok(examples.length > 0, `${pointer}: no example`);
    for (const name of examples) {
      assertMatches(`${pointer}/schema`, example(pointer, name), `example ${name} of ${pointer}`);
    }
  }
  // The schemas are not vacuous: they refuse what they must.
  assert.equal(matches(`/components/schemas/Applied`, { ...APPLIED("applied"), extra: 1 }), false);
  assert.equal(matches(`/components/schemas/ClassId`, "_"), false);
  assert.equal(matches(`/components/schemas/ClassId`, "3e B"), false);
  assert.equal(matches(`/components/schemas/Text`, "   "), false);
  assert.equal(matches(`/components/schemas/PersonId`, "a\u0001"), false);
  assert.equal(matches(`/components/schemas/Person`, { id: "p", name: "P", role: "student" }), false);
  assert.equal(matches(`/components/schemas/Person`, { id: "p", name: "P", role: "parent", classes: ["3A"] }), false);
  assert.equal(matches(`/components/schemas/Person`, { id: "p", name: "P", role: "staff", children: ["e"] }), false);
  assert.equal(matches(`/components/schemas/Person`, { id: "p", name: "P", role: "parent", teaches: [{ class: "3A", subject: "Maths" }] }), false);
  assert.equal(matches(SYNC_SCHEMA, { version: 1, mode: "full", remove: { people: ["x"] } }), false);
  assert.equal(matches(SYNC_SCHEMA, { version: 0, mode: "full" }), false);
  // Unknown fields are refused everywhere in a sync.
  assert.equal(matches(`/components/schemas/Person`, { id: "p", name: "P", role: "staff", note: "x" }), false);
  assert.equal(matches(`/components/schemas/Teaching`, { class: "3A", subject: "Maths", hours: 2 }), false);
  assert.equal(matches(`/components/schemas/Class`, { id: "3A", colour: "red" }), false);
  const stored = STORED("school");
  stored.people[0].extra = true;
  assert.equal(matches(`/components/schemas/Directory`, stored), false, "a stored person has only the documented fields");
  // NOT_EXERCISED names statuses the document lists.
  for (const pair of Object.keys(NOT_EXERCISED)) {
    const [op, status] = pair.split(" ");
    assert.ok(at(OP_POINTER(op as Op))?.responses?.[status], `NOT_EXERCISED: ${pair} is not in the document`);
  }
});

// ---- The server ------------------------------------------------------------

test("without an admin key the routes do not exist: 404 (405 for a PUT when the web app is served)", async () => {
  const sync = FULL_SYNC();
  for (const op of OPERATIONS) {
    const res = await call(plain, op, op === "put" ? { json: sync } : {});
    assert.equal(res.status, 404);
  }
  assert.equal((await call(web, "get")).status, 404);
  const res = await call(web, "put", { json: sync });
  assert.equal(res.status, 405);
  assert.equal(res.headers.get("allow"), "GET,HEAD");
});

test("without the key, or with another: 401 with WWW-Authenticate: Bearer and a plain-text body, whatever the body's size", async () => {
  const refused = [{ key: null }, { key: "not-the-key-0123456789abcdef0123456789" }, { authorization: `bearer ${ADMIN_KEY}` }, { authorization: ADMIN_KEY }] as CallOptions[];
  for (const op of OPERATIONS) {
    const json = op === "put" ? FULL_SYNC() : undefined;
    for (const options of refused) {
      const res = await call(admin, op, { ...options, json });
      assert.equal(res.status, 401, JSON.stringify(options));
    }
  }
  // The key is checked before the body is read: a body over 32 MiB
  // without it is a 401, not a 413, and the server does not ask for it.
  const big = new Uint8Array(MAX_SYNC_BYTES + 1).fill(0x20);
  for (const key of [null, "not-the-key-0123456789abcdef0123456789"]) {
    const res = await putExpecting(admin, key, big);
    assert.equal(res.status, 401, String(key));
    assert.equal(res.bodyAsked, false, `${key}: the server asked for the body`);
  }
  // Nothing was applied by the refused PUTs.
  assert.equal((await call(admin, "get")).body.version, 0);
});

test("GET before any sync: version 0, no one", async () => {
  const res = await call(admin, "get");
  assert.equal(res.status, 200);
  assert.deepEqual(res.body, STORED("empty"));
});

test("a full sync (the document's example) applies; the same again is a no-op", async () => {
  let res = await put(admin, FULL_SYNC(), true);
  assert.equal(res.status, 200);
  assert.deepEqual(res.body, APPLIED("applied"));

  res = await put(admin, FULL_SYNC(), true);
  assert.equal(res.status, 200);
  assert.deepEqual(res.body, APPLIED("retry"));
  // The same content written otherwise (key order, explicit empty lists
  // and defaults, base null) is a retry.
  const same = FULL_SYNC();
  const reordered = {
    people: same.people.map((p: any) => ({ ...p, classes: p.classes ?? [], teaches: p.teaches ?? [], children: p.children ?? [] })),
    classes: same.classes.map((c: any) => ({ group: false, ...c })),
    remove: { people: [], classes: [] },
    base: null,
    mode: "full",
    version: 1,
  };
  res = await put(admin, reordered, true);
  assert.equal(res.status, 200);
  assert.equal(res.body.applied, false);

  res = await call(admin, "get");
  assert.equal(res.status, 200);
  assert.deepEqual(res.body, STORED("school"), "the directory as stored: sorted by id, empty lists left out");
});

test("version conflicts: 409 with the current version, nothing applied", async () => {
  // The same version with other content (fewer people, or another mode).
  const other = FULL_SYNC();
  other.people.pop();
  const delta = { ...FULL_SYNC(), mode: "delta" };
  // A delta computed against another version. (An older version is
  // tried once the directory is at version 2, below.)
  const base = { version: 7, mode: "delta", base: 3, remove: { people: ["hugo"] } };
  for (const [sync, why] of [
    [other, "that version was applied with other content"],
    [delta, "that version was applied with other content"],
    [base, "the sync was computed against another version (base)"],
  ] as const) {
    const res = await put(admin, sync, true);
    assert.equal(res.status, 409, JSON.stringify(sync));
    assert.equal(res.body.current, 1);
    assert.ok(res.body.message.endsWith(why), res.body.message);
  }
  assert.deepEqual((await call(admin, "get")).body, STORED("school"));
});

test("version 0: 422 with that problem alone, before the version is compared and the content checked", async () => {
  // The directory is at version 1: version 0 would otherwise be an older
  // version (409); its base and its remove in full mode are not looked at.
  for (const sync of [
    { version: 0, mode: "full" },
    { version: 0, mode: "delta", base: 5 },
    { version: 0, mode: "full", people: [{ id: "p", name: " ", role: "student" }], remove: { people: ["lea"] } },
  ]) {
    const res = await put(admin, sync, false);
    assert.equal(res.status, 422, JSON.stringify(sync));
    assert.deepEqual(res.body, ANSWER(422, "versionZero"));
  }
  // Its shape is checked before (400).
  assert.equal((await put(admin, { version: 0, mode: "full", pupils: [] }, false)).status, 400);
  assert.deepEqual((await call(admin, "get")).body, STORED("school"));
});

test("syncs with problems: 422 listing them (at most 50), nothing applied", async () => {
  let res = await put(
    admin,
    {
      version: 2,
      mode: "delta",
      people: [
        { id: "new", name: "Nouveau", role: "student", classes: ["5C"] },
        { id: "p2", name: "Parent", role: "parent", children: ["durand"] },
        { id: "nobody", name: "Sans classe", role: "student" },
      ],
    },
    false,
  );
  assert.equal(res.status, 422);
  const at = res.body.problems.map((p: any) => p.at);
  for (const where of ["people[2].classes", "people[id=new].classes[0]", "people[id=p2].children[0]"]) {
    assert.ok(at.includes(where), `${where} in ${JSON.stringify(at)}`);
  }

  // A full sync removes by leaving out; ids and names out of bounds; a
  // pupil's first class a group; a class listed twice.
  res = await put(
    admin,
    {
      version: 2,
      mode: "full",
      classes: [{ id: "_" }, { id: "G", group: true }, { id: "G", group: true }],
      people: [
        { id: "x".repeat(129), name: " ", role: "student", classes: ["G"] },
        { id: "t", name: "T", role: "staff", teaches: [{ class: "G", subject: "Maths" }] },
      ],
      remove: { people: ["lea"] },
    },
    false,
  );
  assert.equal(res.status, 422);
  const found = res.body.problems.map((p: any) => p.at).sort();
  for (const where of ["remove", "classes[0].id", "classes[2].id", "people[0].id", "people[0].name", "people[1].teaches", `people[id=${"x".repeat(129)}].classes[0]`]) {
    assert.ok(found.includes(where), `${where} in ${JSON.stringify(found)}`);
  }

  // A delta that removes a class pupils are still in: the problem is
  // found in the resulting directory, on people the sync does not list.
  res = await put(admin, { version: 2, mode: "delta", base: 1, remove: { classes: ["3A"] } }, true);
  assert.equal(res.status, 422);
  assert.deepEqual(
    res.body.problems.map((p: any) => p.at).sort(),
    ["people[id=durand].teaches[0].class", "people[id=hugo].classes[0]"],
  );

  // At most 50 problems.
  const many = Array.from({ length: 80 }, (_, i) => ({ id: `e${i}`, name: " ", role: "student", classes: ["3A"] }));
  res = await put(admin, { version: 2, mode: "delta", people: many }, false);
  assert.equal(res.status, 422);
  assert.equal(res.body.problems.length, 50);

  assert.deepEqual((await call(admin, "get")).body, STORED("school"));
});

test("not JSON, or not a sync (unknown fields refused): 400", async () => {
  let res = await call(admin, "put", { raw: '{"version":' });
  assert.equal(res.status, 400);
  assert.match(res.body.message, /^not a directory sync: /);
  res = await call(admin, "put", { raw: "version=2" });
  assert.equal(res.status, 400);
  for (const sync of [
    { version: 2, mode: "full", pupils: [] },
    { version: 2, mode: "delta", remove: { pupils: ["lea"] } },
    { version: 2, mode: "replace" },
    { version: -1, mode: "full" },
    { version: 2.5, mode: "full" },
    { mode: "full" },
    { version: 2, mode: "full", people: null },
    { version: 2, mode: "full", people: [{ id: "p", role: "staff" }] },
    { version: 2, mode: "full", people: [{ id: "p", name: "P", role: "pilot" }] },
  ]) {
    res = await put(admin, sync, false);
    assert.equal(res.status, 400, JSON.stringify(sync));
  }
  // Unknown fields inside people, teachings and classes are refused too.
  for (const sync of [
    { version: 2, mode: "delta", people: [{ id: "proviseur", name: "P", role: "staff", note: "x" }] },
    { version: 2, mode: "delta", people: [{ id: "durand", name: "D", role: "teacher", teaches: [{ class: "3A", subject: "Maths", hours: 4 }] }] },
    { version: 2, mode: "delta", classes: [{ id: "3C", colour: "red" }] },
  ]) {
    res = await put(admin, sync, false);
    assert.equal(res.status, 400, JSON.stringify(sync));
    assert.match(res.body.message, /unknown field `(note|hours|colour)`/);
  }
  res = await put(admin, { version: 1, mode: "full", people: [{ id: "p", name: "P", role: "staff", note: 1 }] }, false);
  assert.deepEqual(res.body, ANSWER(400, "unknownPersonField"));
  assert.equal((await call(admin, "get")).body.version, 1);
});

test("a body over 32 MiB with the key: 413 (JSON), nothing applied", async () => {
  const big = new Uint8Array(MAX_SYNC_BYTES + 1).fill(0x20);
  let res: Answer = await call(admin, "put", { raw: big });
  assert.equal(res.status, 413);
  assert.deepEqual(res.body, ANSWER(413, "tooLarge"));
  // With the key, the server asks for the body, then refuses it.
  const expecting = await putExpecting(admin, ADMIN_KEY, big);
  assert.equal(expecting.bodyAsked, true);
  assert.equal(expecting.status, 413);
  assert.deepEqual(expecting.body, ANSWER(413, "tooLarge"));
  assert.equal((await call(admin, "get")).body.version, 1);
  // Exactly 32 MiB is read (and is not JSON).
  res = await call(admin, "put", { raw: new Uint8Array(MAX_SYNC_BYTES).fill(0x20) });
  assert.equal(res.status, 400);
});

test("a delta (the document's example) applies on top of its base; then older versions, other content and another base conflict", async () => {
  let res = await put(admin, DELTA_SYNC(), true);
  assert.equal(res.status, 200);
  assert.deepEqual(res.body, APPLIED("delta"));

  res = await call(admin, "get");
  assert.equal(res.status, 200);
  const expected = STORED("school");
  expected.version = 2;
  expected.people = expected.people
    .filter((p: any) => p.id !== "lea")
    .map((p: any) => (p.id === "hugo" ? { ...p, classes: ["3A", "ESP-LV2"] } : p.id === "martin" ? { id: "martin", name: "M. Martin", role: "parent" } : p));
  assert.deepEqual(res.body, expected);

  // The document's 409 examples, at version 2: an older version (the
  // full example, version 1), version 2 with other content, a base that
  // is not 2.
  const otherContent = DELTA_SYNC();
  otherContent.remove.people = [];
  for (const [sync, name] of [
    [FULL_SYNC(), "older"],
    [otherContent, "otherContent"],
    [{ version: 3, mode: "delta", base: 1 }, "base"],
  ] as const) {
    res = await put(admin, sync, true);
    assert.equal(res.status, 409, JSON.stringify(sync));
    assert.deepEqual(res.body, ANSWER(409, name));
  }
  assert.deepEqual((await call(admin, "get")).body, expected);

  // Without base; a staff member renamed changes nobody's access.
  res = await put(admin, { version: 3, mode: "delta", people: [{ id: "proviseur", name: "Mme la proviseure", role: "staff" }] }, true);
  assert.equal(res.status, 200);
  assert.deepEqual(res.body, { version: 3, applied: true, people: 5, classes: 3, access_changed: 0 });
  res = await call(admin, "get");
  assert.deepEqual(res.body.people.find((p: any) => p.id === "proviseur"), { id: "proviseur", name: "Mme la proviseure", role: "staff" });
});

test("every status the document lists was produced by the server", () => {
  const missing: string[] = [];
  for (const op of OPERATIONS) {
    for (const status of Object.keys(spec.paths[PATH][op].responses)) {
      const pair = `${op} ${status}`;
      if (!exercised.has(pair) && !(pair in NOT_EXERCISED)) missing.push(pair);
    }
  }
  assert.deepEqual(missing, [], `documented but never produced: ${missing.join(", ")}`);
});
