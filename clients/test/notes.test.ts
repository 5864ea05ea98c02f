// Shared notes (Yjs) through PreauProvider against the real server.

import { test } from "node:test";
import assert from "node:assert/strict";
import * as Y from "yjs";
import { Awareness } from "y-protocols/awareness";
import { PreauError, type PreauClient } from "../src/client.js";
import { PreauProvider } from "../src/yjs-provider.js";
import { ALICE, BOB, CuttableProxy, TEACHER, TestServer, waitFor } from "./harness.js";

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

function text(p: Peer): string {
  return p.doc.getText("content").toString();
}

function sameState(a: Peer, b: Peer): boolean {
  return (
    Buffer.from(Y.encodeStateVector(a.doc)).equals(Buffer.from(Y.encodeStateVector(b.doc))) &&
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
