// Moderation basics through PreauClient against the real server.

import { test } from "node:test";
import assert from "node:assert/strict";
import { PreauError, type EventFrame } from "../src/client.js";
import { ALICE, BOB, TEACHER, TestServer, waitFor } from "./harness.js";

const FAST = ["--rate-per-sec", "1000", "--rate-burst", "1000"];
const ROOM = "3B/chat/general";
const AUDIT = "3B/audit/log";

test("mute: the pupil's post is refused with muted and retryAfterMs; room_view shows it", async () => {
  const srv = await TestServer.start(FAST);
  try {
    await srv.open(ROOM);
    const alice = await srv.client(ALICE);
    const teacher = await srv.client(TEACHER);
    const aliceSeen: EventFrame[] = [];
    alice.on("event", (e) => aliceSeen.push(e));
    await alice.join(ROOM);
    await alice.post(ROOM, "bla bla");

    // A pupil may not moderate.
    await assert.rejects(alice.moderate(ROOM, { kind: "mute", user: "bob", seconds: 60 }), (e: PreauError) => e.code === "forbidden");

    const ok = await teacher.moderate(ROOM, { kind: "mute", user: "alice", seconds: 600, reason: "Hors sujet" });
    assert.equal(ok.offset, 2);
    await waitFor(() => aliceSeen.some((e) => e.body.kind === "moderation"), "the moderation event");
    const mod = aliceSeen.find((e) => e.body.kind === "moderation")!;
    assert.deepEqual(mod.body.action, { kind: "mute", user: "alice", seconds: 600, reason: "Hors sujet" });
    assert.equal(typeof mod.body.until, "number");

    await assert.rejects(alice.post(ROOM, "encore"), (e: PreauError) => {
      assert.equal(e.code, "muted");
      assert.ok(e.retryAfterMs! > 590_000 && e.retryAfterMs! <= 600_000, `retryAfterMs ${e.retryAfterMs}`);
      return true;
    });
    await assert.rejects(alice.typing(ROOM), (e: PreauError) => e.code === "muted");

    const view = await teacher.roomView(ROOM);
    const member = view.members.find((m) => m.user.id === "alice");
    assert.ok(member, "alice is listed as present");
    assert.equal(member!.muted_until, mod.body.until);
    assert.equal(view.muted.alice, mod.body.until);
    await assert.rejects(alice.roomView(ROOM), (e: PreauError) => e.code === "forbidden");

    await teacher.moderate(ROOM, { kind: "unmute", user: "alice" });
    await waitFor(() => aliceSeen.filter((e) => e.body.kind === "moderation").length === 2, "the unmute");
    await alice.post(ROOM, "merci");
  } finally {
    await srv.stop();
  }
});

test("report reaches the audit log live and room_view; resolve closes it", async () => {
  const srv = await TestServer.start(FAST);
  try {
    await srv.open(ROOM);
    const alice = await srv.client(ALICE);
    const bob = await srv.client(BOB);
    const teacher = await srv.client(TEACHER);
    const audit: EventFrame[] = [];
    teacher.on("event", (e) => {
      if (e.room === AUDIT) audit.push(e);
    });
    await teacher.join(AUDIT);
    await assert.rejects(alice.join(AUDIT), (e: PreauError) => e.code === "forbidden");
    await alice.join(ROOM);
    await bob.join(ROOM);
    const msg = await bob.post(ROOM, "tu es nul");

    const rep = await alice.report(ROOM, msg.offset, "moquerie");
    await waitFor(() => audit.length === 1, "the report in the audit log");
    assert.equal(audit[0].offset, rep.offset);
    assert.deepEqual(
      { kind: audit[0].body.kind, room: audit[0].body.room, offset: audit[0].body.offset, reason: audit[0].body.reason },
      { kind: "report", room: ROOM, offset: msg.offset, reason: "moquerie" },
    );
    assert.equal(audit[0].from.id, "alice");

    let view = await teacher.roomView(ROOM);
    assert.deepEqual(view.open_reports.map((r) => r.offset), [rep.offset]);
    assert.equal(view.recent_messages, 1);

    await teacher.moderate(ROOM, { kind: "redact", offset: msg.offset, reason: "Propos déplacés" });
    await teacher.moderate(ROOM, { kind: "resolve", report: rep.offset, dismissed: false });
    view = await teacher.roomView(ROOM);
    assert.deepEqual(view.open_reports, []);
    await waitFor(() => audit.length === 3, "the redact and resolve audit entries");
    assert.deepEqual(audit.map((e) => (e.body.action as { kind: string } | undefined)?.kind ?? e.body.kind), ["report", "redact", "resolve"]);

    // The message is a tombstone in history now.
    const page = await alice.history(ROOM);
    const tomb = page.events.find((e) => e.offset === msg.offset)!;
    assert.equal(tomb.body.kind, "redacted");
    assert.equal((tomb.body.by as { id: string }).id, "t-durand");
    assert.equal(tomb.body.reason, "Propos déplacés");
    assert.equal(tomb.body.text, undefined);
  } finally {
    await srv.stop();
  }
});

test("kick and ban: the client drops the room and does not re-join it", async () => {
  const srv = await TestServer.start(FAST);
  try {
    await srv.open(ROOM);
    const alice = await srv.client(ALICE);
    const teacher = await srv.client(TEACHER);
    const removed: string[] = [];
    alice.on("removed", (r) => removed.push(`${r.room}:${r.reason}`));
    await alice.join(ROOM);
    await teacher.moderate(ROOM, { kind: "kick", user: "alice" });
    await waitFor(() => removed.length === 1, "the kick");
    assert.deepEqual(removed, [`${ROOM}:kick`]);
    assert.equal(alice.isJoined(ROOM), false);
    await assert.rejects(alice.post(ROOM, "x"), (e: PreauError) => e.code === "not_joined");

    await alice.join(ROOM); // allowed after a kick
    await teacher.moderate(ROOM, { kind: "ban", user: "alice", reason: "Insultes" });
    await waitFor(() => removed.length === 2, "the ban");
    await assert.rejects(alice.join(ROOM), (e: PreauError) => e.code === "banned");
    await assert.rejects(alice.history(ROOM), (e: PreauError) => e.code === "banned");
    const view = await teacher.roomView(ROOM);
    assert.deepEqual(view.banned, ["alice"]);
    await teacher.moderate(ROOM, { kind: "unban", user: "alice" });
    await alice.join(ROOM);
  } finally {
    await srv.stop();
  }
});

test("slow mode and read-only refuse pupils, not the teacher", async () => {
  const srv = await TestServer.start(FAST);
  try {
    const alice = await srv.client(ALICE);
    const teacher = await srv.client(TEACHER);
    await teacher.join(ROOM); // the teacher opens the room
    await alice.join(ROOM);
    await teacher.moderate(ROOM, { kind: "slow_mode", seconds: 30 });
    await alice.post(ROOM, "un");
    await assert.rejects(alice.post(ROOM, "deux"), (e: PreauError) => e.code === "slow_mode" && e.retryAfterMs! > 0);
    await teacher.moderate(ROOM, { kind: "slow_mode", seconds: 0 });
    await teacher.moderate(ROOM, { kind: "read_only", on: true });
    await assert.rejects(alice.post(ROOM, "trois"), (e: PreauError) => e.code === "read_only");
    await teacher.post(ROOM, "Seul le professeur parle.");
    const view = await teacher.roomView(ROOM);
    assert.equal(view.read_only, true);
    assert.equal(view.slow_mode, 0);
  } finally {
    await srv.stop();
  }
});
