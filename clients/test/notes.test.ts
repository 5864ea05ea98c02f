// Shared notes (Yjs) through PreauProvider against the real server.

import { test } from "node:test";
import assert from "node:assert/strict";
import * as Y from "yjs";
import * as encoding from "lib0/encoding";
import * as syncProtocol from "y-protocols/sync";
import { Awareness } from "y-protocols/awareness";
import { PreauError, type PreauClient } from "../src/client.js";
import { PreauProvider, type ResetEvent } from "../src/yjs-provider.js";
import { ALICE, BOB, CuttableProxy, TEACHER, TestServer, waitFor, type UserSpec } from "./harness.js";

const NOTE = "3B/notes/expose-volcans";

const opts = { timeout: 60_000 };

interface Peer {
  client: PreauClient;
  doc: Y.Doc;
  provider: PreauProvider;
  errors: PreauError[];
}

function peer(client: PreauClient, room = NOTE): Peer {
  const doc = new Y.Doc();
  const awareness = new Awareness(doc);
  const provider = new PreauProvider(client, room, doc, { awareness });
  const errors: PreauError[] = [];
  provider.on("error", (e) => errors.push(e));
  return { client, doc, provider, errors };
}

function close(...peers: Peer[]): void {
  for (const p of peers) {
    p.provider.destroy();
    p.provider.awareness.destroy();
  }
}

/** Waits for the initial sync, failing fast if the provider reported an error (a refused join). */
async function synced(...peers: Peer[]): Promise<void> {
  await waitFor(
    () => {
      for (const p of peers) if (p.errors.length) throw p.errors[0];
      return peers.every((p) => p.provider.synced && p.provider.pending === 0);
    },
    "the initial sync",
    10_000,
  );
}

/** The peer's text (its provider's current document: a refusal may replace it). */
function text(p: Peer): string {
  return p.provider.doc.getText("content").toString();
}

function sameState(a: Peer, b: Peer): boolean {
  return (
    Buffer.from(Y.encodeStateVector(a.provider.doc)).equals(Buffer.from(Y.encodeStateVector(b.provider.doc))) &&
    text(a) === text(b) &&
    a.provider.pending === 0 &&
    b.provider.pending === 0
  );
}

test("two providers edit concurrently and converge", opts, async () => {
  const srv = await TestServer.start();
  try {
    await srv.open(NOTE);
    const a = peer(await srv.client(ALICE));
    const b = peer(await srv.client(BOB));
    try {
      await synced(a, b);
      // Concurrent: neither has seen the other's change when making its own.
      a.doc.getText("content").insert(0, "Les volcans d'Auvergne. ");
      b.doc.getText("content").insert(0, "Plan : 1) formation 2) éruptions. ");
      a.doc.getText("content").insert(text(a).length, "Le puy de Dôme.");
      await waitFor(() => sameState(a, b), "convergence", 10_000);
      assert.ok(text(a).includes("Les volcans d'Auvergne. "));
      assert.ok(text(a).includes("Plan : 1) formation 2) éruptions. "));
      assert.equal(text(a).length, "Les volcans d'Auvergne. Plan : 1) formation 2) éruptions. Le puy de Dôme.".length);
      assert.deepEqual(a.errors, []);
      assert.deepEqual(b.errors, []);

      // A newcomer gets the stored state from the server alone.
      const c = peer(await srv.client(TEACHER));
      await synced(c);
      await waitFor(() => text(c) === text(a), "the newcomer's state", 10_000);
      const exp = await c.client.noteExport(NOTE, "text");
      assert.equal(exp.content, text(a));

      // Awareness: the server stamps the real user whatever the client claims.
      b.provider.awareness.setLocalStateField("user", { id: "mallory", name: "Faux nom" });
      await waitFor(
        () => [...a.provider.awareness.getStates().values()].some((s) => s.user?.id === "bob"),
        "bob's awareness state at alice",
      );
      const bobState = [...a.provider.awareness.getStates().values()].find((s) => s.user?.id === "bob");
      assert.equal(bobState!.user.name, "Bob Leroy");
      close(c);
    } finally {
      close(a, b);
    }
  } finally {
    await srv.stop();
  }
});

test("offline edits on both sides merge after reconnection", opts, async () => {
  const srv = await TestServer.start();
  const proxy = await CuttableProxy.start(srv.port);
  try {
    await srv.open(NOTE);
    const a = peer(await srv.client(ALICE, proxy.wsUrl));
    const b = peer(await srv.client(BOB));
    try {
      await synced(a, b);
      a.doc.getText("content").insert(0, "milieu");
      await waitFor(() => sameState(a, b), "the first sync", 10_000);

      proxy.blocked = true;
      proxy.cut();
      await waitFor(() => !a.provider.synced, "alice going offline");
      a.doc.getText("content").insert(text(a).length, " fin-alice");
      b.doc.getText("content").insert(0, "début-bob ");
      await waitFor(() => b.provider.pending === 0, "bob's update acked");
      assert.equal(text(a), "milieu fin-alice");

      proxy.blocked = false;
      await waitFor(() => sameState(a, b) && a.provider.synced, "the merge", 15_000);
      assert.equal(text(a), "début-bob milieu fin-alice");

      // And the server kept the merged state.
      const c = peer(await srv.client(TEACHER));
      await synced(c);
      await waitFor(() => text(c) === text(a), "the stored merge", 10_000);
      close(c);
    } finally {
      close(a, b);
    }
  } finally {
    await proxy.close();
    await srv.stop();
  }
});

test("a pupil's update to a locked note (read_only) is refused, and reaches nobody", opts, async () => {
  const srv = await TestServer.start();
  try {
    const t = peer(await srv.client(TEACHER));
    // The teacher's join opens the note: pupils join once it exists.
    await synced(t);
    const a = peer(await srv.client(ALICE));
    const b = peer(await srv.client(BOB));
    try {
      await synced(t, a, b);
      t.doc.getText("content").insert(0, "Version du professeur.");
      await waitFor(() => sameState(t, a) && sameState(t, b), "the teacher's text everywhere", 10_000);

      await assert.rejects(a.client.moderate(NOTE, { kind: "read_only", on: true }), (e: PreauError) => e.code === "forbidden");
      await t.client.moderate(NOTE, { kind: "read_only", on: true });
      a.doc.getText("content").insert(0, "Vandalisme ! ");
      await waitFor(() => a.errors.length > 0, "the refusal");
      assert.equal(a.errors[0].code, "read_only");
      assert.equal(a.provider.pending, 0);

      // Moderators are exempt; the refused update reached nobody.
      t.doc.getText("content").insert(text(t).length, " Corrigée.");
      await waitFor(() => text(b) === "Version du professeur. Corrigée.", "the teacher's edit at bob", 10_000);
      assert.equal(text(t), "Version du professeur. Corrigée.");
      const exported = await b.client.noteExport(NOTE, "text");
      assert.equal(exported.content, "Version du professeur. Corrigée.");
    } finally {
      close(t, a, b);
    }
  } finally {
    await srv.stop();
  }
});

test("validate with lock: a version is kept, the note refuses pupils' updates", opts, async () => {
  const srv = await TestServer.start();
  try {
    const t = peer(await srv.client(TEACHER));
    // The teacher's join opens the note: pupils join once it exists.
    await synced(t);
    const a = peer(await srv.client(ALICE));
    try {
      await synced(t, a);
      a.doc.getText("content").insert(0, "Brouillon d'Alice.");
      await waitFor(() => sameState(t, a), "alice's draft at the teacher", 10_000);

      await assert.rejects(a.client.noteValidate(NOTE, "moi aussi"), (e: PreauError) => e.code === "forbidden");
      const v = await t.client.noteValidate(NOTE, "Version finale", true);
      assert.equal(typeof v.offset, "number");

      a.doc.getText("content").insert(0, "Trop tard. ");
      await waitFor(() => a.errors.length > 0, "the refusal");
      assert.equal(a.errors[0].code, "read_only");

      t.doc.getText("content").insert(text(t).length, " Relu.");
      await waitFor(() => t.provider.pending === 0, "the teacher's edit acked");
      const versions = await t.client.noteVersions(NOTE);
      assert.deepEqual(
        versions.versions.map((x) => [x.version, x.label, x.by.id, x.offset]),
        [[1, "Version finale", "t-durand", v.offset]],
      );
      assert.equal((await t.client.noteExport(NOTE, "text", 1)).content, "Brouillon d'Alice.");
      assert.equal((await t.client.noteExport(NOTE, "text")).content, "Brouillon d'Alice. Relu.");
    } finally {
      close(t, a);
    }
  } finally {
    await srv.stop();
  }
});

// ---- integrity: what an outside review broke with stock Yjs clients --------

const MALLORY: UserSpec = { user: "mallory", name: "Mallory Faux", role: "student", classes: ["3B"] };
const CARL: UserSpec = { user: "carl", name: "Carl Petit", role: "student", classes: ["3B"] };

/** A y-protocols update message (`0, 2, varbytes(update)`). */
function updateMessage(update: Uint8Array): Uint8Array {
  const enc = encoding.createEncoder();
  encoding.writeVarUint(enc, 0);
  syncProtocol.writeUpdate(enc, update);
  return encoding.toUint8Array(enc);
}

/** A Yjs v1 update with no structs and these deletions (client, clock, len). */
function deleteOnly(ranges: Array<[number, number, number]>): Uint8Array {
  const enc = encoding.createEncoder();
  encoding.writeVarUint(enc, 0);
  encoding.writeVarUint(enc, ranges.length);
  for (const [client, clock, len] of ranges) {
    encoding.writeVarUint(enc, client);
    encoding.writeVarUint(enc, 1);
    encoding.writeVarUint(enc, clock);
    encoding.writeVarUint(enc, len);
  }
  return encoding.toUint8Array(enc);
}

/** One character of `client` at clock 0, right after `origin` (client, clock). */
function itemAfter(client: number, origin: [number, number]): Uint8Array {
  const enc = encoding.createEncoder();
  encoding.writeVarUint(enc, 1);
  encoding.writeVarUint(enc, 1);
  encoding.writeVarUint(enc, client);
  encoding.writeVarUint(enc, 0);
  encoding.writeUint8(enc, 0x84); // has an origin, string content
  encoding.writeVarUint(enc, origin[0]);
  encoding.writeVarUint(enc, origin[1]);
  encoding.writeVarString(enc, "x");
  encoding.writeVarUint(enc, 0);
  return encoding.toUint8Array(enc);
}

function hasPending(doc: Y.Doc): boolean {
  return doc.store.pendingStructs !== null || doc.store.pendingDs !== null;
}

/** Every text a peer's editor ever showed (across resets). */
function watchTexts(p: Peer): string[] {
  const seen: string[] = [];
  const watch = (doc: Y.Doc) => doc.getText("content").observe(() => seen.push(doc.getText("content").toString()));
  watch(p.provider.doc);
  p.provider.on("reset", ({ doc }) => watch(doc));
  return seen;
}

test("a hostile client's updates are refused; editors stay in sync; a refused editor converges back", opts, async () => {
  const srv = await TestServer.start();
  try {
    // The teacher opens the note first (only a class's teacher creates a room).
    const t = peer(await srv.client(TEACHER));
    await synced(t);
    const a = peer(await srv.client(ALICE));
    const b = peer(await srv.client(BOB));
    const resets: ResetEvent[] = [];
    a.provider.on("reset", (r) => resets.push(r));
    try {
      await synced(a, b);
      const seenByBob = watchTexts(b);
      const seenByTeacher = watchTexts(t);
      a.doc.getText("content").insert(0, "Alice écrit. ");
      b.doc.getText("content").insert(0, "Bob aussi. ");
      await waitFor(() => sameState(a, b) && sameState(a, t), "the first edits everywhere", 10_000);

      // The hostile third speaks y-protocols through the plain client.
      const m = await srv.client(MALLORY);
      await m.join(NOTE);
      const outOfSync = (e: PreauError) => e.code === "out_of_sync";
      // Two ~45 KB delete sets over 4,000 client ids nobody has.
      for (const batch of [0, 1]) {
        const ranges: Array<[number, number, number]> = [];
        for (let i = 0; i < 4_000; i++) ranges.push([1_000_000 + batch * 4_000 + i, 0, 2 ** 32 - 1]);
        await assert.rejects(m.yjs(NOTE, updateMessage(deleteOnly(ranges))), outOfSync);
      }
      // Bob's future typing: from his next clock, 10^9 of them.
      const bobClock = Y.getState(b.doc.store, b.doc.clientID);
      await assert.rejects(m.yjs(NOTE, updateMessage(deleteOnly([[b.doc.clientID, bobClock, 1e9]]))), outOfSync);
      // Content whose origin was never sent.
      await assert.rejects(m.yjs(NOTE, updateMessage(itemAfter(4242, [4343, 7]))), outOfSync);

      // Fresh joiners always sync (they were closed with 1009 before), with nothing pending.
      const c = peer(await srv.client(CARL));
      await synced(c);
      await waitFor(() => text(c) === text(a), "the fresh joiner's text", 10_000);
      assert.ok(!hasPending(c.doc));

      // The victim's later typing survives, everywhere.
      b.doc.getText("content").insert(text(b).length, "Bob continue.");
      await waitFor(() => sameState(a, b) && sameState(b, c) && sameState(b, t), "bob's typing everywhere", 10_000);
      assert.ok(text(a).endsWith("Bob continue."));
      assert.equal((await t.client.noteExport(NOTE, "text")).content, text(b));
      for (const p of [a, b, c, t]) assert.ok(!hasPending(p.provider.doc));
      close(c);

      // The teacher locks the note; Alice types anyway.
      await t.client.moderate(NOTE, { kind: "read_only", on: true });
      await waitFor(() => a.errors.length === 0, "no refusal yet");
      const before = text(t);
      a.doc.getText("content").insert(0, "VANDALE ");
      a.doc.getText("content").insert(8, "ENCORE ");
      await waitFor(() => resets.length === 1, "alice's reset");
      assert.equal(resets[0].error.code, "read_only");
      assert.equal(a.errors[0].code, "read_only");
      // Her editor is given the server's text again, under a new clientID.
      assert.notEqual(resets[0].doc.clientID, a.doc.clientID);
      await waitFor(() => a.provider.synced && text(a) === before, "alice back on the server's text", 10_000);
      assert.ok(!text(a).includes("VANDALE"));
      // The refused text never reached anyone, nor the stored note.
      assert.equal((await t.client.noteExport(NOTE, "text")).content, before);
      assert.ok(!seenByBob.some((s) => s.includes("VANDALE") || s.includes("ENCORE")), seenByBob.join(" | "));
      assert.ok(!seenByTeacher.some((s) => s.includes("VANDALE") || s.includes("ENCORE")));

      // Unlocked, her new document edits like any.
      await t.client.moderate(NOTE, { kind: "read_only", on: false });
      a.provider.doc.getText("content").insert(0, "Alice revient. ");
      await waitFor(() => sameState(a, b) && sameState(a, t), "alice's edit everywhere", 10_000);
      assert.ok(text(b).startsWith("Alice revient. "));
      assert.equal(resets.length, 1);
      for (const p of [a, b, t]) assert.ok(!hasPending(p.provider.doc));
    } finally {
      close(t, a, b);
    }
  } finally {
    await srv.stop();
  }
});

test("offline work larger than a frame is sent in parts", opts, async () => {
  const srv = await TestServer.start();
  const proxy = await CuttableProxy.start(srv.port);
  try {
    const t = peer(await srv.client(TEACHER));
    // The teacher's join opens the note: pupils join once it exists.
    await synced(t);
    const a = peer(await srv.client(ALICE, proxy.wsUrl));
    try {
      await synced(t, a);
      t.doc.getText("content").insert(0, "Plan.\n");
      await waitFor(() => sameState(a, t), "the first sync", 10_000);
      proxy.blocked = true;
      proxy.cut();
      await waitFor(() => !a.provider.synced, "alice going offline");
      // ~150 KB typed offline: many edits and a long paste.
      const content = a.doc.getText("content");
      for (let i = 0; i < 800; i++) content.insert((i * 7_919) % (content.length + 1), `phrase ${i}. `);
      content.insert(0, "Lorem ipsum dolor sit amet, é😀. ".repeat(4_000));
      assert.ok(Y.encodeStateAsUpdate(a.doc).length > 100_000);
      proxy.blocked = false;
      await waitFor(() => a.provider.synced && sameState(a, t), "the offline work at the teacher", 30_000);
      assert.deepEqual(a.errors, []);
      assert.equal((await t.client.noteExport(NOTE, "text")).content, text(a));
      // And a fresh joiner gets it from the server.
      const b = peer(await srv.client(BOB));
      await synced(b);
      await waitFor(() => text(b) === text(a), "the fresh joiner's text", 10_000);
      close(b);
    } finally {
      close(t, a);
    }
  } finally {
    await proxy.close();
    await srv.stop();
  }
});

test("after a transient refusal the local changes are kept and sent by a resync", opts, async () => {
  // The join and a few updates, then about one request a second.
  const srv = await TestServer.start(["--request-burst", "4", "--request-rate-per-sec", "2"]);
  try {
    const t = peer(await srv.client(TEACHER));
    await synced(t);
    const a = peer(await srv.client(ALICE));
    try {
      await synced(a);
      const content = a.doc.getText("content");
      for (const word of ["un ", "deux ", "trois ", "quatre ", "cinq ", "six ", "sept "]) content.insert(content.length, word);
      await waitFor(() => a.errors.some((e) => e.code === "rate_limited"), "a rate_limited refusal");
      await waitFor(() => a.provider.synced && a.provider.pending === 0 && sameState(a, t), "the resync", 15_000);
      assert.equal(text(t), "un deux trois quatre cinq six sept ");
      assert.ok(a.errors.every((e) => e.code === "rate_limited" || e.code === "out_of_sync"), a.errors.map((e) => e.code).join());
    } finally {
      close(t, a);
    }
  } finally {
    await srv.stop();
  }
});
