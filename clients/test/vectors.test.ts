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

/** A socket that authenticates any hello and records what the client sends. */
class RecordingSocket {
  static last: RecordingSocket | null = null;
  binaryType = "arraybuffer";
  readyState = 0;
  sent: Array<Record<string, unknown>> = [];
  onopen: ((ev: any) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: ((ev: any) => void) | null = null;
  constructor() {
    RecordingSocket.last = this;
    setTimeout(() => {
      this.readyState = 1;
      this.onopen?.({});
    }, 0);
  }
  send(data: Uint8Array): void {
    const frame = decode(data) as Record<string, unknown>;
    this.sent.push(frame);
    if (frame.type === "hello") {
      const hello = { user: { id: "ana", name: "Ana", role: "student" }, classes: ["3B"], node: "t", version: "0", limits: { max_frame_bytes: 65536, max_message_len: 4000, max_rooms: 32, history_page_max: 200, ping_interval_ms: 25000 } };
      this.reply({ type: "ok", id: frame.id, data: hello });
    }
  }
  reply(frame: unknown): void {
    setTimeout(() => this.onmessage?.({ data: encode(frame) }), 0);
  }
  close(): void {
    this.readyState = 3;
  }
}

test("forum vectors: the typed helpers send exactly the documented frames; replies and events decode", async () => {
  const { PreauClient, decodeThreadsOk } = await import("../src/client.js");
  const { forumItem } = await import("../src/forum.js");
  const client = new PreauClient({ url: "ws://test/ws", token: "t", WebSocket: RecordingSocket as any, requestTimeoutMs: 200 });
  await client.connect();
  const sock = RecordingSocket.last!;
  const byName = (n: string) => vectors.find((v) => v.name === n)!;
  const room = "3B/forum/debat-1789";
  // Each helper's frame (ids aside, which the vectors fix) must be the vector's bytes, keys in the same order.
  const cases: Array<[string, () => Promise<unknown>]> = [
    ["post.forum.reply", () => client.reply(room, 3, "Pas d'accord : tout ne change pas.", { replyTo: 5, quote: "tout change" })],
    ["history.thread", () => client.threadHistory(room, 3, { limit: 50 })],
    ["edit", () => client.edit(room, 3, "Qu'est-ce qui change, et pour qui, en 1789 ?", "La Révolution française")],
    ["answer", () => client.answer(room, 3, 5)],
    ["answer.unmark", () => client.answer(room, 3, null)],
    ["threads", () => client.threads(room, { limit: 30 })],
    ["mark_read", () => client.markRead(room, 3, 6)],
    ["rooms", () => client.rooms("3B", "forum")],
    ["moderate.configure", () => client.configureForum(room, { flavour: "interclass", classes: ["5C"], moderators: ["prof-5c"] })],
    ["moderate.read_only.thread", () => client.lockThread(room, 3)],
  ];
  try {
    for (const [name, send] of cases) {
      const v = byName(name);
      const before = sock.sent.length;
      void send().catch(() => {}); // no reply comes: only the frame matters here
      const frame = sock.sent[before];
      assert.ok(frame, `${name}: a frame was sent`);
      frame.id = (v.json as { id: number }).id;
      assert.equal(Buffer.from(encode(frame)).toString("hex"), v.hex, name);
    }
  } finally {
    // A failed assertion must not leave the client reconnecting forever
    // (the test process would never exit).
    client.close();
  }

  const threads = decodeThreadsOk((decode(Buffer.from(byName("ok.threads").hex, "hex")) as { data: unknown }).data);
  assert.equal(threads.settings.flavour, "help");
  assert.equal(threads.threads[0].thread, 3);
  assert.equal(threads.threads[0].answer, 5);
  assert.equal(threads.threads[0].pinned, true);
  // Lenient: unknown keys ignored, missing ones defaulted, entries without a thread id dropped.
  const odd = decodeThreadsOk({ threads: [{ thread: 9, future: 1 }, { title: "no id" }], extra: true }, "3B/forum/x");
  assert.deepEqual(odd.settings, { flavour: "debate", classes: [], moderators: [] });
  assert.equal(odd.room, "3B/forum/x");
  assert.deepEqual(odd.threads.map((t) => [t.thread, t.last_offset, t.locked]), [[9, 9, false]]);

  const ev = (n: string) => forumItem(decode(Buffer.from(byName(n).hex, "hex")) as any);
  assert.deepEqual(ev("event.forum.reply"), { kind: "post", offset: 5, thread: 3, first: false, title: undefined, text: "Pas d'accord : tout ne change pas.", replyTo: 4, quote: "tout change" });
  assert.deepEqual(ev("event.forum.edit"), { kind: "edit", offset: 6, target: 3, thread: 3, text: "Qu'est-ce qui change, et pour qui, en 1789 ?", title: "La Révolution française" });
  assert.deepEqual(ev("event.forum.answer"), { kind: "answer", offset: 7, thread: 3, answer: 5 });
});

test("agenda vectors: the helpers send exactly the documented frames; replies and events decode", async () => {
  const { PreauClient } = await import("../src/client.js");
  const { agendaAdd, agendaChange, agendaCancel, agendaList, decodeAgendaOk, AgendaView } = await import("../src/agenda.js");
  const client = new PreauClient({ url: "ws://test/ws", token: "t", WebSocket: RecordingSocket as any, requestTimeoutMs: 200 });
  await client.connect();
  const sock = RecordingSocket.last!;
  const byName = (n: string) => vectors.find((v) => v.name === n)!;
  const room = "3B/agenda/classe";
  const monday = 1_764_572_400_000;
  const hour = 3_600_000;
  const day = 24 * hour;
  const cases: Array<[string, () => Promise<unknown>]> = [
    ["agenda_add", () => agendaAdd(client, room, { title: "Contrôle de maths", starts: monday, ends: monday + hour, place: "Salle 12", details: "Calculatrice autorisée." }, "c1f0-agenda-1")],
    ["agenda_change", () => agendaChange(client, room, 1, { title: "Contrôle de maths (chapitre 4)", starts: monday + day, ends: monday + day + hour, place: "Salle 12" })],
    ["agenda_cancel", () => agendaCancel(client, room, 1, "Grève des transports")],
    ["agenda", () => agendaList(client, room, monday, monday + 7 * day)],
  ];
  try {
    for (const [name, send] of cases) {
      const v = byName(name);
      const before = sock.sent.length;
      void send().catch(() => {});
      const frame = sock.sent[before];
      assert.ok(frame, `${name}: a frame was sent`);
      frame.id = (v.json as { id: number }).id;
      assert.equal(Buffer.from(encode(frame)).toString("hex"), v.hex, name);
    }
  } finally {
    client.close();
  }
  const ok = decodeAgendaOk((decode(Buffer.from(byName("ok.agenda").hex, "hex")) as { data: unknown }).data);
  assert.deepEqual(
    ok.items.map((i) => [i.item, i.version, i.cancelled, i.reason, i.allDay]),
    [[1, 2, true, "Grève des transports", false]],
  );
  // The three events, fed to a view of the week, give what `ok.agenda` says.
  const view = new AgendaView(room, monday, monday + 7 * day);
  for (const n of ["event.agenda_item", "event.agenda_item.change", "event.agenda_cancel"]) {
    assert.ok(view.apply(decode(Buffer.from(byName(n).hex, "hex")) as any), n);
  }
  const [item] = view.list();
  assert.deepEqual(
    [item.item, item.title, item.starts, item.ends, item.version, item.cancelled, item.reason],
    [ok.items[0].item, ok.items[0].title, ok.items[0].starts, ok.items[0].ends, ok.items[0].version, true, "Grève des transports"],
  );
});

test("hand-in vectors: the helpers send exactly the documented frames; replies and events decode", async () => {
  const { PreauClient } = await import("../src/client.js");
  const { handinOpen, handinChange, handinSubmit, handinReturn, handins, handinStatus, decodeHandinsOk, decodeHandinStatusOk, handinEventOf } = await import("../src/handin.js");
  const client = new PreauClient({ url: "ws://test/ws", token: "t", WebSocket: RecordingSocket as any, requestTimeoutMs: 200 });
  await client.connect();
  const sock = RecordingSocket.last!;
  const byName = (n: string) => vectors.find((v) => v.name === n)!;
  const room = "3B/handin/main";
  const due = 1_796_979_600_000;
  const cases: Array<[string, () => Promise<unknown>]> = [
    ["handin_open", () => handinOpen(client, room, { title: "Exposé : la Révolution", instructions: "Un PDF ou un enregistrement de 3 minutes.", due, accepts: ["document", "audio"], late: true, entry: 12 })],
    ["handin_open.some_pupils", () => handinOpen(client, room, { title: "Rattrapage", instructions: "", due, pupils: ["ana", "bob"], late: false })],
    ["handin_change", () => handinChange(client, room, 3, { due: 1_797_066_000_000 })],
    ["handin_submit", () => handinSubmit(client, room, 3, "5d41402abc4b2a76b9719d911017c592")],
    ["handin_return", () => handinReturn(client, room, 3, "ana", { file: "7d793037a0760186574b0282f2f435e7", comment: "Très bien, 16/20." })],
    ["handins", () => handins(client, room)],
    ["handin_status", () => handinStatus(client, room, 3)],
  ];
  try {
    for (const [name, send] of cases) {
      const v = byName(name);
      const before = sock.sent.length;
      void send().catch(() => {});
      const frame = sock.sent[before];
      assert.ok(frame, `${name}: a frame was sent`);
      frame.id = (v.json as { id: number }).id;
      assert.equal(Buffer.from(encode(frame)).toString("hex"), v.hex, name);
    }
  } finally {
    client.close();
  }
  const data = (n: string) => (decode(Buffer.from(byName(n).hex, "hex")) as { data: unknown }).data;
  const [h] = decodeHandinsOk(data("ok.handins"));
  assert.deepEqual([h.handin, h.title, h.due, h.late, h.accepts, h.to, h.by.name, h.entry, h.counts], [3, "Exposé : la Révolution", due, true, ["document", "audio"], "class:3B", "M. Durand", 12, undefined]);
  assert.deepEqual([h.mine[0].pupil.id, h.mine[0].status, h.mine[0].replaced, h.mine[0].file?.name, h.mine[0].returned?.comment, h.mine[0].returned?.file?.name], ["ana", "returned", 1, "exposé ana.pdf", "Très bien, 16/20.", "corrigé ana.pdf"]);
  const st = decodeHandinStatusOk(data("ok.handin_status"));
  assert.deepEqual(st.handin.counts, { pupils: 2, handedIn: 1, late: 0, returned: 1 });
  assert.deepEqual(st.pupils.map((p) => [p.pupil.id, p.status]), [["ana", "returned"]]);
  const ev = (n: string) => handinEventOf(decode(Buffer.from(byName(n).hex, "hex")) as any);
  assert.deepEqual(ev("event.handin_open"), { kind: "handin_open", handin: 3, title: "Exposé : la Révolution", due, pupils: ["ana", "bob"], accepts: ["document", "audio"], late: true });
  const sub = ev("event.handin_submit");
  assert.equal(sub?.kind === "handin_submit" && sub.file?.name, "exposé ana.pdf");
  assert.equal(sub?.kind === "handin_submit" && sub.pupil.id, "ana");
  assert.deepEqual(ev("event.handin_change"), { kind: "handin_change", handin: 3, due: 1_797_066_000_000 });
  // Lenient: unknown statuses and families fall back, missing fields take defaults.
  const odd = decodeHandinsOk({ handins: [{ handin: 9, accepts: ["document", "hologram"], mine: [{ status: "lost" }], future: 1 }] });
  assert.deepEqual([odd[0].accepts, odd[0].mine[0].status, odd[0].title, odd[0].late], [["document"], "todo", "", false]);
});

test("document space and blog vectors: the helpers send exactly the documented frames; replies and events decode", async () => {
  const { PreauClient } = await import("../src/client.js");
  const { docs, docFolder, docAdd, docRemove, docsConfig, decodeDocsOk, docsEventOf } = await import("../src/docs.js");
  const { blog, blogWrite, blogApprove, blogUnpublish, blogDelete, blogComment, blogConfig, decodeBlogOk, blogEventOf } = await import("../src/blog.js");
  const client = new PreauClient({ url: "ws://test/ws", token: "t", WebSocket: RecordingSocket as any, requestTimeoutMs: 200 });
  await client.connect();
  const sock = RecordingSocket.last!;
  const byName = (n: string) => vectors.find((v) => v.name === n)!;
  const room = "3B/docs/main";
  const broom = "3B/blog/main";
  const cases: Array<[string, () => Promise<unknown>]> = [
    ["docs", () => docs(client, room)],
    ["doc_folder", () => docFolder(client, room, "maths-chap-4", "Chapitre 4 : fonctions")],
    ["doc_add", () => docAdd(client, room, { file: "4f1c2a9e7b3d5f60a8c1e2d3b4a59687", folder: "maths-chap-4", title: "Fiche d'exercices", entry: 12, lesson: "Fonctions affines", key: "c1f0-doc-1" })],
    ["doc_add.pupil", () => docAdd(client, room, { file: "9a8b7c6d5e4f30211203f4e5d6c7b8a9", folder: "eleves" })],
    ["doc_remove", () => docRemove(client, room, 4)],
    ["docs_config", () => docsConfig(client, room, true)],
    ["blog", () => blog(client, broom)],
    ["blog_write", () => blogWrite(client, broom, { title: "Sortie au musée", text: "Nous avons vu les impressionnistes.", files: ["0123456789abcdef0123456789abcdef"], key: "c1f0-blog-1" })],
    ["blog_approve", () => blogApprove(client, broom, 1)],
    ["blog_unpublish", () => blogUnpublish(client, broom, 1)],
    ["blog_delete", () => blogDelete(client, broom, 1)],
    ["blog_comment", () => blogComment(client, broom, 1, "Trop bien !")],
    ["blog_config", () => blogConfig(client, broom, { circuit: "approve", public: false })],
  ];
  try {
    for (const [name, send] of cases) {
      const v = byName(name);
      const before = sock.sent.length;
      void send().catch(() => {});
      const frame = sock.sent[before];
      assert.ok(frame, `${name}: a frame was sent`);
      frame.id = (v.json as { id: number }).id;
      assert.equal(Buffer.from(encode(frame)).toString("hex"), v.hex, name);
    }
  } finally {
    client.close();
  }
  const data = (n: string) => (decode(Buffer.from(byName(n).hex, "hex")) as { data: unknown }).data;
  const space = decodeDocsOk(data("ok.docs"));
  assert.equal(space.pupilsShare, true);
  assert.deepEqual(space.folders, [{ folder: "eleves", title: "Travaux des élèves" }, { folder: "maths-chap-4", title: "Chapitre 4 : fonctions" }]);
  assert.deepEqual([space.docs[0].doc, space.docs[0].title, space.docs[0].file.name, space.docs[0].by.name, space.docs[0].entry, space.docs[0].lesson], [3, "Fiche d'exercices", "fiche-exercices.pdf", "M. Durand", 12, "Fonctions affines"]);
  const dev = (n: string) => docsEventOf(decode(Buffer.from(byName(n).hex, "hex")) as any);
  assert.deepEqual(dev("event.doc_folder"), { kind: "doc_folder", folder: "maths-chap-4", title: "Chapitre 4 : fonctions" });
  assert.deepEqual(dev("event.docs_config"), { kind: "docs_config", pupilsShare: true });
  const add = dev("event.doc_add.pupil");
  assert.deepEqual(add?.kind === "doc_add" && [add.doc, add.folder, add.title, add.file?.name, add.by.id], [4, "eleves", "exposé.pdf", "exposé.pdf", "ana"]);
  assert.deepEqual(dev("event.doc_remove"), { kind: "doc_remove", doc: 4, folder: "eleves" });
  const b = decodeBlogOk(data("ok.blog"));
  assert.deepEqual(b.config, { circuit: "approve", public: false });
  assert.deepEqual([b.posts[0].post, b.posts[0].author.name, b.posts[0].title, b.posts[0].files[0].type, b.posts[0].status, b.posts[0].published, b.posts[0].comments], [2, "Ana Martin", "Sortie au musée", "image/jpeg", "published", 3, 1]);
  const bev = (n: string) => blogEventOf(decode(Buffer.from(byName(n).hex, "hex")) as any);
  assert.deepEqual(bev("event.blog_config"), { kind: "blog_config", circuit: "approve", public: false });
  const post = bev("event.blog_post");
  assert.deepEqual(post?.kind === "blog_post" && [post.post, post.author.id, post.title, post.files[0].name], [2, "ana", "Sortie au musée", "musee.jpg"]);
  const pub = bev("event.blog_publish");
  assert.deepEqual(pub?.kind === "blog_publish" && [pub.offset, pub.post, pub.text], [3, 2, "Nous avons vu les impressionnistes."]);
  const com = bev("event.blog_comment");
  assert.deepEqual(com?.kind === "blog_comment" && [com.offset, com.post, com.from.name, com.text], [4, 2, "M. Durand", "Bravo !"]);
  // Lenient: an unknown circuit is « approve », a status unknown is pending, a doc without a file is left out.
  assert.deepEqual(decodeBlogOk({ config: { circuit: "chaos" }, posts: [{ post: 7, status: "lost" }] }).posts[0].status, "pending");
  assert.equal(decodeDocsOk({ docs: [{ doc: 1 }], folders: [{ folder: "x" }] }).docs.length, 0);
});
