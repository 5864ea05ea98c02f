// The file routes (src/files.ts) and the hand-in requests (src/handin.ts)
// against the real server, with small chunks (`--files-chunk-bytes 65536`):
// an upload in several chunks with its progress; resumed after a lost
// answer, a request that never reached the server and a chunk sent twice
// (409 offset_mismatch); a program refused (415 unsupported_type) and other
// typed refusals; a pupil hands in, the teacher follows, downloads the zip
// and returns a correction, the pupil downloads it: every byte equal.

import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { TestServer, ALICE, BOB, TEACHER, type UserSpec } from "./harness.js";
import { FileError, bundleUrl, downloadBundle, downloadFile, fetchFile, httpBase, uploadFile, uploadState } from "../src/files.js";
import { handinEventOf, handinOpen, handinReturn, handinRoom, handinStatus, handinSubmit, handins } from "../src/handin.js";
import type { EventFrame } from "../src/client.js";

const CHUNK = 65536;
const ROOM = handinRoom("3B");
const PARENT: UserSpec = { user: "p-alice", name: "M. Martin", role: "parent", classes: ["3B"], children: ["alice"] };

/** UTF-8 text (a document to the server): printable ASCII and some accents, no NUL. */
function text(bytes: number): Buffer {
  const alphabet = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 .,;:\n";
  const r = randomBytes(bytes);
  const out = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i++) out[i] = alphabet.charCodeAt(r[i] % alphabet.length);
  return out;
}

const blob = (b: Buffer) => new Blob([new Uint8Array(b)]);
const sha = (b: Buffer | Uint8Array) => createHash("sha256").update(b).digest("hex");

async function start(): Promise<TestServer> {
  return TestServer.start(["--files-chunk-bytes", String(CHUNK), "--rate-per-sec", "1000", "--rate-burst", "1000", "--request-rate-per-sec", "1000", "--request-burst", "1000"]);
}

test("files: an upload in several chunks, resumed after a lost answer, a lost request and a chunk sent twice; the download equals it", { timeout: 60_000 }, async () => {
  const srv = await start();
  try {
    assert.equal(httpBase(srv.wsUrl), srv.httpUrl);
    const token = await srv.token(ALICE);
    const bytes = text(5 * CHUNK + 1234);

    // Plain: six chunks, progress after each.
    const progress: number[] = [];
    const plain = await uploadFile(srv.httpUrl, token, blob(bytes), "exposé alice.txt", { onProgress: (sent) => progress.push(sent) });
    assert.equal(plain.size, bytes.length);
    assert.equal(plain.sha256, sha(bytes));
    assert.equal(plain.name, "exposé alice.txt");
    assert.match(plain.type, /^text\/plain/);
    assert.match(plain.file, /^[0-9a-f]{32}$/);
    assert.deepEqual(progress, [0, CHUNK, 2 * CHUNK, 3 * CHUNK, 4 * CHUNK, 5 * CHUNK, bytes.length]);

    // Failures injected through `fetch`: the 2nd PATCH reaches the server but
    // its answer is lost; the 4th never leaves; after the 5th, the same chunk
    // is sent again (409 offset_mismatch, the reply's Upload-Offset says where).
    let patches = 0;
    const seen: string[] = [];
    const flaky: typeof fetch = async (input, init) => {
      const method = init?.method ?? "GET";
      seen.push(method);
      if (method !== "PATCH") return fetch(input, init);
      patches += 1;
      if (patches === 2) {
        await fetch(input, init);
        throw new TypeError("fetch failed (answer lost)");
      }
      if (patches === 4) throw new TypeError("fetch failed (no network)");
      if (patches === 5) {
        const first = await fetch(input, init);
        assert.equal(first.status, 200);
        const again = await fetch(input, init);
        assert.equal(again.status, 409);
        return again;
      }
      return fetch(input, init);
    };
    const states: number[] = [];
    const resumed = await uploadFile(srv.httpUrl, token, blob(bytes), "reprise.txt", { fetch: flaky, backoffMs: 10, onProgress: (s) => states.push(s) });
    assert.equal(resumed.sha256, sha(bytes), "the resumed upload holds the same bytes, nothing twice");
    assert.equal(resumed.size, bytes.length);
    assert.ok(seen.filter((m) => m === "GET").length >= 2, `asked where the upload stands after each failure: ${seen.join(" ")}`);
    assert.deepEqual([...states].sort((a, b) => a - b), states, "progress never goes back");
    assert.equal(states.at(-1), bytes.length);

    // Too many failures in a row: a typed network error.
    const dead: typeof fetch = async (input, init) => ((init?.method ?? "GET") === "POST" ? fetch(input, init) : Promise.reject(new TypeError("fetch failed")));
    await assert.rejects(uploadFile(srv.httpUrl, token, blob(bytes), "x.txt", { fetch: dead, retries: 2, backoffMs: 5 }), (e: unknown) => e instanceof FileError && e.code === "network" && e.status === 0);

    // Aborted by the user: the signal's reason.
    const ctl = new AbortController();
    const slow = uploadFile(srv.httpUrl, token, blob(bytes), "stop.txt", { signal: ctl.signal, onProgress: (s) => s >= CHUNK && ctl.abort() });
    await assert.rejects(slow, (e: unknown) => (e as Error).name === "AbortError");

    // A teacher opens a hand-in; Alice hands in the resumed file; it comes back byte for byte.
    const teacher = await srv.client(TEACHER);
    const alice = await srv.client(ALICE);
    const opened = await handinOpen(teacher, ROOM, { title: "Exposé", due: Date.now() + 3600_000, pupils: ["alice", "bob"], accepts: ["document"] });
    await handinSubmit(alice, ROOM, opened.offset, resumed.file);
    const back = await downloadFile(srv.httpUrl, token, resumed.file, ROOM);
    assert.equal(sha(Buffer.from(await back.arrayBuffer())), sha(bytes));
    const named = await fetchFile(srv.httpUrl, token, resumed.file, ROOM);
    assert.equal(named.name, "reprise.txt");
    // Not attached: not readable, even by its uploader, and never a hint which.
    await assert.rejects(downloadFile(srv.httpUrl, token, plain.file, ROOM), (e: unknown) => e instanceof FileError && e.status === 404 && e.code === "not_found");
    // Another pupil cannot read Alice's.
    await assert.rejects(downloadFile(srv.httpUrl, await srv.token(BOB), resumed.file, ROOM), (e: unknown) => e instanceof FileError && e.status === 404);
  } finally {
    await srv.stop();
  }
});

test("files: a program is refused with 415 unsupported_type, other refusals are typed", { timeout: 30_000 }, async () => {
  const srv = await start();
  try {
    const token = await srv.token(ALICE);
    // A Windows program: "MZ", then a PE header.
    const exe = Buffer.concat([Buffer.from("MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00", "latin1"), Buffer.alloc(0x30), Buffer.from("PE\x00\x00", "latin1"), randomBytes(2000)]);
    await assert.rejects(uploadFile(srv.httpUrl, token, blob(exe), "jeu.exe"), (e: unknown) => {
      assert.ok(e instanceof FileError, String(e));
      assert.equal(e.status, 415);
      assert.equal(e.code, "unsupported_type");
      assert.ok(e.message.length > 0);
      return true;
    });
    // A bad token: 401 unauthorized.
    await assert.rejects(uploadFile(srv.httpUrl, "not-a-token", blob(text(10)), "a.txt"), (e: unknown) => e instanceof FileError && e.status === 401 && e.code === "unauthorized");
    // A class that is not hers: 403 forbidden.
    await assert.rejects(uploadFile(srv.httpUrl, token, blob(text(10)), "a.txt", { class: "4A" }), (e: unknown) => e instanceof FileError && e.status === 403 && e.code === "forbidden");
    // An empty file: 400 bad_request.
    await assert.rejects(uploadFile(srv.httpUrl, token, new Blob([]), "vide.txt"), (e: unknown) => e instanceof FileError && e.status === 400);
    // Another user's upload: 404, as if it did not exist.
    const r = await fetch(`${srv.httpUrl}/files/uploads`, { method: "POST", headers: { authorization: `Bearer ${token}`, "content-type": "application/json" }, body: JSON.stringify({ name: "a.txt", size: 10 }) });
    const { upload } = (await r.json()) as { upload: string };
    assert.equal((await uploadState(srv.httpUrl, token, upload)).offset, 0);
    await assert.rejects(uploadState(srv.httpUrl, await srv.token(BOB), upload), (e: unknown) => e instanceof FileError && e.status === 404 && e.code === "not_found");
  } finally {
    await srv.stop();
  }
});

test("hand-ins: a pupil hands in and replaces, the teacher follows live, downloads the zip and returns a correction; the pupil and her parent read it", { timeout: 60_000 }, async () => {
  const srv = await start();
  try {
    const teacher = await srv.client(TEACHER);
    const alice = await srv.client(ALICE);
    const parent = await srv.client(PARENT);
    const aliceToken = await srv.token(ALICE);
    const teacherToken = await srv.token(TEACHER);
    const due = Date.now() + 24 * 3600_000;
    const opened = await handinOpen(teacher, ROOM, { title: "Exposé : la Révolution", instructions: "Un texte d'une page.", due, pupils: ["alice", "bob"], accepts: ["document", "audio"], late: true });
    const id = opened.offset;
    const events: EventFrame[] = [];
    teacher.on("event", (ev) => ev.room === ROOM && events.push(ev));
    await teacher.join(ROOM);

    // Alice's view: one hand-in, to do.
    let mine = await handins(alice, ROOM);
    assert.equal(mine.length, 1);
    assert.equal(mine[0].handin, id);
    assert.equal(mine[0].title, "Exposé : la Révolution");
    assert.equal(mine[0].due, due);
    assert.deepEqual(mine[0].accepts, ["document", "audio"]);
    assert.equal(mine[0].mine[0].status, "todo");
    assert.equal(mine[0].counts, undefined);

    // She hands in, then replaces it.
    const first = await uploadFile(srv.httpUrl, aliceToken, blob(text(1000)), "brouillon.txt");
    await handinSubmit(alice, ROOM, id, first.file);
    const work = text(3 * CHUNK + 7);
    const final = await uploadFile(srv.httpUrl, aliceToken, blob(work), "exposé.txt");
    await handinSubmit(alice, ROOM, id, final.file);
    mine = await handins(alice, ROOM);
    assert.equal(mine[0].mine[0].status, "handed_in");
    assert.equal(mine[0].mine[0].file?.id, final.file);
    assert.equal(mine[0].mine[0].replaced, 1);

    // The teacher was told live; her list counts it; her follow view has a row per pupil.
    const deadline = Date.now() + 5000;
    while (events.filter((e) => handinEventOf(e)?.kind === "handin_submit").length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const submit = events.map(handinEventOf).filter((e) => e?.kind === "handin_submit");
    assert.equal(submit.length, 2);
    assert.equal(submit[1]?.kind === "handin_submit" && submit[1].file?.name, "exposé.txt");
    const list = await handins(teacher, ROOM);
    assert.deepEqual(list[0].counts, { pupils: 2, handedIn: 1, late: 0, returned: 0 });
    const status = await handinStatus(teacher, ROOM, id);
    assert.equal(status.handin.title, "Exposé : la Révolution");
    assert.deepEqual(status.pupils.map((p) => [p.pupil.id, p.status]), [["alice", "handed_in"], ["bob", "todo"]]);

    // The zip: one entry, named after the pupil.
    assert.equal(bundleUrl(srv.httpUrl, ROOM, id), `${srv.httpUrl}/files/bundle?room=3B%2Fhandin%2Fmain&key=${id}`);
    const zip = await downloadBundle(srv.httpUrl, teacherToken, ROOM, id);
    const zipBytes = Buffer.from(await zip.blob.arrayBuffer());
    assert.equal(zipBytes.subarray(0, 2).toString("latin1"), "PK");
    assert.ok(zipBytes.includes(work), "the zip stores the submission uncompressed");
    assert.ok(zipBytes.includes(Buffer.from("Alice Martin")), "its entry is named after the pupil");
    // A pupil may not have it.
    await assert.rejects(downloadBundle(srv.httpUrl, aliceToken, ROOM, id), (e: unknown) => e instanceof FileError && (e.status === 404 || e.status === 403));

    // A correction: a file and a comment.
    const corrected = text(2 * CHUNK);
    const up = await uploadFile(srv.httpUrl, teacherToken, blob(corrected), "corrigé alice.txt");
    await handinReturn(teacher, ROOM, id, "alice", { file: up.file, comment: "Très bien, 16/20." });
    mine = await handins(alice, ROOM);
    const row = mine[0].mine[0];
    assert.equal(row.status, "returned");
    assert.equal(row.returned?.comment, "Très bien, 16/20.");
    assert.equal(row.returned?.file?.name, "corrigé alice.txt");
    const got = await downloadFile(srv.httpUrl, aliceToken, row.returned!.file!.id, ROOM);
    assert.equal(sha(Buffer.from(await got.arrayBuffer())), sha(corrected));

    // Her parent reads it too, read-only.
    const theirs = await handins(parent, ROOM);
    assert.equal(theirs[0].mine.length, 1);
    assert.equal(theirs[0].mine[0].pupil.id, "alice");
    assert.equal(theirs[0].mine[0].status, "returned");
    const parentGot = await downloadFile(srv.httpUrl, await srv.token(PARENT), row.returned!.file!.id, ROOM);
    assert.equal(sha(Buffer.from(await parentGot.arrayBuffer())), sha(corrected));
  } finally {
    await srv.stop();
  }
});
