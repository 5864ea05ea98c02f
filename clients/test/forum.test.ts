// Forums through PreauClient (and the ThreadList / ThreadTimeline models
// the web app renders) against the real server.

import { test } from "node:test";
import assert from "node:assert/strict";
import { PreauError, type EventFrame, type PreauClient } from "../src/client.js";
import { ThreadList, ThreadTimeline, forumItem, isForumModerator } from "../src/forum.js";
import { ALICE, BOB, TEACHER, TestServer, waitFor, type UserSpec } from "./harness.js";

const FAST = ["--rate-per-sec", "1000", "--rate-burst", "1000"];
const HELP = "3B/forum/aide-maths";
const DEBATE = "3B/forum/debat-1789";

function collect(c: PreauClient, room: string): EventFrame[] {
  const seen: EventFrame[] = [];
  c.on("event", (ev) => {
    if (ev.room === room) seen.push(ev);
  });
  return seen;
}

function code(c: string) {
  return (e: unknown) => {
    assert.ok(e instanceof PreauError, `a PreauError, got ${String(e)}`);
    assert.equal(e.code, c, e.message);
    return true;
  };
}

/** The teacher opens `room`; the given users connect and join it. */
async function forum(srv: TestServer, room: string, flavour: string, users: UserSpec[]): Promise<PreauClient[]> {
  const teacher = await srv.client(TEACHER);
  await teacher.configureForum(room, { flavour });
  await teacher.join(room);
  const out = [teacher];
  for (const u of users) {
    const c = await srv.client(u);
    await c.join(room);
    out.push(c);
  }
  return out;
}

test("a forum exists once opened: unknown_room before, rooms lists it after, settings in threads", async () => {
  const srv = await TestServer.start(FAST);
  try {
    const alice = await srv.client(ALICE);
    const outsider = await srv.client({ user: "eve", name: "Eve", role: "student", classes: ["5C"] });
    await assert.rejects(alice.join(HELP), code("unknown_room"));
    await assert.rejects(alice.threads(HELP), code("unknown_room"));
    await assert.rejects(outsider.join(HELP), code("forbidden"));
    assert.deepEqual((await alice.rooms("3B", "forum")).rooms, []);

    const teacher = await srv.client(TEACHER);
    // Moderating a forum nobody opened: the room does not exist for a pupil.
    await assert.rejects(alice.configureForum(HELP, { flavour: "help" }), code("unknown_room"));
    await teacher.configureForum(HELP, { flavour: "interclass", classes: ["5C"], moderators: ["t-5c"] });
    await assert.rejects(alice.configureForum(HELP, { flavour: "help" }), code("forbidden"));
    assert.deepEqual((await alice.rooms("3B", "forum")).rooms, [HELP]);
    const list = await alice.threads(HELP);
    assert.deepEqual(list.settings, { flavour: "interclass", classes: ["5C"], moderators: ["t-5c"] });
    assert.deepEqual(list.threads, []);
    assert.equal(list.more, false);
    // The grant lets the other class in.
    await outsider.join(HELP);

    // Who the UI treats as moderators matches the server's matrix.
    assert.equal(isForumModerator(teacher.user, ["3B"], HELP, list.settings), true);
    assert.equal(isForumModerator({ id: "t-5c", name: "x", role: "teacher" }, ["5C"], HELP, list.settings), true);
    assert.equal(isForumModerator({ id: "t-6d", name: "x", role: "teacher" }, ["6D"], HELP, list.settings), false);
    assert.equal(isForumModerator(alice.user, ["3B"], HELP, list.settings), false);

    // Settings change live: members get the configure event.
    const seen = collect(alice, HELP);
    await alice.join(HELP);
    await teacher.configureForum(HELP, { flavour: "help" });
    await waitFor(() => seen.some((e) => forumItem(e)?.kind === "moderation"), "the configure event");
    const model = new ThreadList("alice");
    model.load(list);
    for (const e of seen) model.apply(e);
    assert.deepEqual(model.settings, { flavour: "help", classes: [], moderators: [] });
    await assert.rejects(outsider.threads(HELP), code("forbidden"));
  } finally {
    await srv.stop();
  }
});

test("a thread and its replies arrive live; the thread list is bumped, live and on the server", async () => {
  const srv = await TestServer.start(FAST);
  try {
    const [, alice, bob] = await forum(srv, HELP, "help", [ALICE, BOB]);
    const bobSeen = collect(bob, HELP);
    const aliceSeen = collect(alice, HELP);
    const bobList = new ThreadList("bob");
    bobList.load(await bob.threads(HELP));
    bob.on("event", (e) => {
      if (e.room === HELP) bobList.apply(e);
    });

    const t1 = await alice.newThread(HELP, "Exercice 4", "Je ne comprends pas la question b.");
    const t2 = await alice.newThread(HELP, "Exercice 5", "Et celle-ci ?");
    await waitFor(() => bobSeen.length === 2, "both threads at bob");
    const first = forumItem(bobSeen[0]);
    assert.deepEqual(first, {
      kind: "post",
      offset: t1.offset,
      thread: t1.offset,
      first: true,
      title: "Exercice 4",
      text: "Je ne comprends pas la question b.",
      replyTo: undefined,
      quote: undefined,
    });
    assert.deepEqual(bobList.list().map((t) => t.thread), [t2.offset, t1.offset]);

    // Bob answers the older thread, quoting it: it comes first again.
    const r = await bob.reply(HELP, t1.offset, "Il faut factoriser.", { replyTo: t1.offset, quote: "la question b" });
    await waitFor(() => aliceSeen.some((e) => e.offset === r.offset), "bob's reply at alice");
    const live = forumItem(aliceSeen.find((e) => e.offset === r.offset)!);
    assert.deepEqual(live, { kind: "post", offset: r.offset, thread: t1.offset, first: false, title: undefined, text: "Il faut factoriser.", replyTo: t1.offset, quote: "la question b" });
    await waitFor(() => bobList.get(t1.offset)?.replies === 1, "bob's own list bumped");
    assert.deepEqual(bobList.list().map((t) => t.thread), [t1.offset, t2.offset]);

    // The live model agrees with the server's list, field by field.
    const server = await bob.threads(HELP);
    assert.deepEqual(server.threads.map((t) => t.thread), [t1.offset, t2.offset]);
    for (const t of server.threads) assert.deepEqual(bobList.get(t.thread), t, `thread ${t.thread}`);

    // Replaying the same events changes nothing (events that came during a load).
    for (const e of bobSeen) assert.equal(bobList.apply(e), "none");
    assert.deepEqual(bobList.list(), server.threads);

    // threadHistory pages over one thread only.
    const page = await bob.threadHistory(HELP, t1.offset, { limit: 1 });
    assert.deepEqual(page.events.map((e) => e.offset), [r.offset]);
    assert.equal(page.more, true);
    const older = await bob.threadHistory(HELP, t1.offset, { before: r.offset });
    assert.deepEqual(older.events.map((e) => e.offset), [t1.offset]);
    assert.equal(older.more, false);
    const other = await bob.threadHistory(HELP, t2.offset);
    assert.deepEqual(other.events.map((e) => e.offset), [t2.offset]);
    await assert.rejects(bob.threadHistory(HELP, 9999), code("unknown_target"));
    await assert.rejects(bob.reply(HELP, 9999, "où ?"), code("unknown_target"));
    await assert.rejects(bob.reply(HELP, t1.offset, "x", { replyTo: t2.offset }), code("unknown_target"));
  } finally {
    await srv.stop();
  }
});

test("unread counts: threads counts others' posts after the read mark; markRead moves it", async () => {
  const srv = await TestServer.start(FAST);
  try {
    const [, alice, bob] = await forum(srv, HELP, "help", [ALICE, BOB]);
    const t = await alice.newThread(HELP, "Fractions", "Comment on simplifie ?");
    const unread = async (c: PreauClient) => (await c.threads(HELP)).threads.find((x) => x.thread === t.offset)!.unread;
    assert.equal(await unread(alice), 0, "one's own posts are read");
    assert.equal(await unread(bob), 1, "the first post is unread for bob");
    const r1 = await bob.reply(HELP, t.offset, "On divise par le PGCD.");
    await bob.reply(HELP, t.offset, "Par exemple 6/8 = 3/4.");
    assert.equal(await unread(alice), 2);
    assert.equal(await unread(bob), 1);

    await alice.markRead(HELP, t.offset, r1.offset);
    assert.equal(await unread(alice), 1, "only the second reply is left");
    // The mark never moves back.
    await alice.markRead(HELP, t.offset, t.offset);
    assert.equal(await unread(alice), 1);

    // Live: the model counts unread posts except in the open thread.
    const list = new ThreadList("alice");
    list.load(await alice.threads(HELP));
    const seen = collect(alice, HELP);
    const r3 = await bob.reply(HELP, t.offset, "Compris ?");
    await waitFor(() => seen.some((e) => e.offset === r3.offset), "r3 at alice");
    list.apply(seen.find((e) => e.offset === r3.offset)!);
    assert.equal(list.get(t.offset)!.unread, 2);
    assert.equal(await unread(alice), 2, "the server agrees");
    await alice.markRead(HELP, t.offset, r3.offset);
    list.markRead(t.offset);
    assert.equal(await unread(alice), 0);
    const r4 = await bob.reply(HELP, t.offset, "Bon courage.");
    await waitFor(() => seen.some((e) => e.offset === r4.offset), "r4 at alice");
    list.apply(seen.find((e) => e.offset === r4.offset)!, t.offset); // alice is reading that thread
    assert.equal(list.get(t.offset)!.unread, 0);
    await assert.rejects(alice.markRead(HELP, 9999, 1), code("unknown_target"));
  } finally {
    await srv.stop();
  }
});

test("edit: a new version everyone sees, the history keeps both; not_editable once someone replied", async () => {
  const srv = await TestServer.start(FAST);
  try {
    const [teacher, alice, bob] = await forum(srv, HELP, "help", [ALICE, BOB]);
    const bobSeen = collect(bob, HELP);
    const t = await alice.newThread(HELP, "Titre provisoire", "Premier jet");
    const e1 = await alice.edit(HELP, t.offset, "Second jet", "Pythagore");
    await waitFor(() => bobSeen.some((e) => e.offset === e1.offset), "the edit at bob");
    assert.deepEqual(forumItem(bobSeen.find((e) => e.offset === e1.offset)!), { kind: "edit", offset: e1.offset, target: t.offset, thread: t.offset, text: "Second jet", title: "Pythagore" });
    assert.equal((await bob.threads(HELP)).threads[0].title, "Pythagore");

    // The timeline built from the thread's history shows the current version and the earlier one.
    const timeline = new ThreadTimeline(t.offset);
    for (const e of (await bob.threadHistory(HELP, t.offset)).events) timeline.add(e);
    let [post] = timeline.posts();
    assert.equal(post.text, "Second jet");
    assert.equal(post.title, "Pythagore");
    assert.deepEqual(post.versions.map((v) => [v.text, v.title]), [["Premier jet", "Titre provisoire"], ["Second jet", "Pythagore"]]);

    // Only the author edits; nobody rewrites a pupil's words.
    await assert.rejects(bob.edit(HELP, t.offset, "pirate"), code("forbidden"));
    await assert.rejects(teacher.edit(HELP, t.offset, "corrigé"), code("forbidden"));
    await assert.rejects(alice.edit(HELP, 9999, "x"), code("unknown_target"));

    const r = await bob.reply(HELP, t.offset, "a² + b² = c²");
    await assert.rejects(alice.edit(HELP, t.offset, "Troisième jet"), code("not_editable"));
    // Bob's reply is still his to fix, until someone answers it.
    await bob.edit(HELP, r.offset, "a² + b² = c² (triangle rectangle)");
    await alice.reply(HELP, t.offset, "Merci !", { replyTo: r.offset });
    await assert.rejects(bob.edit(HELP, r.offset, "encore"), code("not_editable"));
    // A moderator is bound by neither rule for their own posts.
    const tp = await teacher.reply(HELP, t.offset, "Attention au signe");
    await alice.reply(HELP, t.offset, "D'accord", { replyTo: tp.offset });
    await teacher.edit(HELP, tp.offset, "Attention au carré");

    // Live edits land in the same timeline.
    for (const e of bobSeen) timeline.add(e);
    const posts = timeline.posts();
    const bobs = posts.find((p) => p.offset === r.offset)!;
    assert.equal(bobs.text, "a² + b² = c² (triangle rectangle)");
    assert.equal(bobs.versions.length, 2);
    [post] = posts;
    assert.equal(post.versions.length, 2, "the refused edit left no version");

    // Deleting one's own post (moderate redact): live it becomes a deletion, in history a tombstone.
    await waitFor(() => bobSeen.some((e) => forumItem(e)?.kind === "edit" && e.from.id === "t-durand"), "the teacher's edit at bob");
    await alice.moderate(HELP, { kind: "redact", offset: t.offset });
    await waitFor(() => bobSeen.some((e) => forumItem(e)?.kind === "moderation"), "the deletion at bob");
    for (const e of bobSeen) timeline.add(e);
    assert.equal(timeline.posts()[0].deleted?.by?.id, "alice");
    assert.equal(timeline.posts()[0].text, "");
    const fresh = new ThreadTimeline(t.offset);
    for (const e of (await bob.threadHistory(HELP, t.offset)).events) fresh.add(e);
    const first = fresh.posts()[0];
    assert.equal(first.deleted?.by?.id, "alice");
    assert.equal(first.versions.length, 0, "the earlier versions are gone too");
    assert.ok(!JSON.stringify((await bob.threadHistory(HELP, t.offset)).events).includes("Premier jet"));
    const info = (await bob.threads(HELP)).threads[0];
    assert.equal(info.deleted, true);
    assert.equal(info.title, undefined);
    await assert.rejects(bob.moderate(HELP, { kind: "redact", offset: tp.offset }), code("forbidden"));
  } finally {
    await srv.stop();
  }
});

test("help forum: the asker (or a moderator) marks the answer, live for everyone", async () => {
  const srv = await TestServer.start(FAST);
  try {
    const [teacher, alice, bob] = await forum(srv, HELP, "help", [ALICE, BOB]);
    const bobSeen = collect(bob, HELP);
    const q = await alice.newThread(HELP, "Exercice 4", "Question b ?");
    const a = await bob.reply(HELP, q.offset, "Il faut factoriser.");
    await assert.rejects(bob.answer(HELP, q.offset, a.offset), code("forbidden"));
    await assert.rejects(alice.answer(HELP, q.offset, q.offset), code("unknown_target"));
    await alice.answer(HELP, q.offset, a.offset);
    await waitFor(() => bobSeen.some((e) => forumItem(e)?.kind === "answer"), "the answer event");
    assert.deepEqual(forumItem(bobSeen.find((e) => forumItem(e)?.kind === "answer")!), { kind: "answer", offset: a.offset + 1, thread: q.offset, answer: a.offset });
    assert.equal((await bob.threads(HELP)).threads[0].answer, a.offset);

    const timeline = new ThreadTimeline(q.offset);
    for (const e of (await bob.threadHistory(HELP, q.offset)).events) timeline.add(e);
    assert.equal(timeline.answer(), a.offset);

    // The teacher unmarks it (nil on the wire).
    await teacher.answer(HELP, q.offset, null);
    await waitFor(() => bobSeen.filter((e) => forumItem(e)?.kind === "answer").length === 2, "the unmark");
    for (const e of bobSeen) timeline.add(e);
    assert.equal(timeline.answer(), undefined);
    assert.equal((await bob.threads(HELP)).threads[0].answer, undefined);

    // Answers are for help forums only.
    await teacher.configureForum(DEBATE, { flavour: "debate" });
    await teacher.join(DEBATE);
    const d = await teacher.newThread(DEBATE, "Débat", "?");
    await assert.rejects(teacher.answer(DEBATE, d.offset, null), code("forbidden"));
  } finally {
    await srv.stop();
  }
});

test("a locked thread refuses pupils' replies and edits with read_only; other threads stay open", async () => {
  const srv = await TestServer.start(FAST);
  try {
    const [teacher, alice] = await forum(srv, HELP, "help", [ALICE]);
    const aliceSeen = collect(alice, HELP);
    const list = new ThreadList("alice");
    alice.on("event", (e) => {
      if (e.room === HELP) list.apply(e);
    });
    const locked = await alice.newThread(HELP, "Un", "...");
    const open = await alice.newThread(HELP, "Deux", "...");
    await teacher.lockThread(HELP, locked.offset);
    await assert.rejects(alice.reply(HELP, locked.offset, "encore"), code("read_only"));
    await assert.rejects(alice.edit(HELP, locked.offset, "changé"), code("read_only"));
    await alice.reply(HELP, open.offset, "ici oui");
    await teacher.reply(HELP, locked.offset, "Sujet clos.");
    const server = await alice.threads(HELP);
    assert.equal(server.threads.find((t) => t.thread === locked.offset)!.locked, true);
    assert.equal(server.threads.find((t) => t.thread === open.offset)!.locked, false);

    // The live model saw the lock; a pin puts the thread first.
    await teacher.pinThread(HELP, open.offset);
    await waitFor(() => list.get(open.offset)?.pinned === true, "the pin, live");
    assert.equal(list.get(locked.offset)!.locked, true);
    const pinnedFirst = await alice.threads(HELP);
    assert.deepEqual(pinnedFirst.threads.map((t) => [t.thread, t.pinned]), [
      [open.offset, true],
      [locked.offset, false],
    ]);
    assert.deepEqual(list.list().map((t) => t.thread), pinnedFirst.threads.map((t) => t.thread));

    await teacher.lockThread(HELP, locked.offset, false);
    await waitFor(() => list.get(locked.offset)?.locked === false, "the unlock, live");
    await alice.reply(HELP, locked.offset, "merci");
    await assert.rejects(alice.lockThread(HELP, open.offset), code("forbidden"));
    await assert.rejects(teacher.lockThread(HELP, 9999), code("unknown_target"));
    assert.ok(aliceSeen.length > 0);
  } finally {
    await srv.stop();
  }
});

test("debate forum: a pupil may not open a thread (forbidden), but replies to the teacher's", async () => {
  const srv = await TestServer.start(FAST);
  try {
    const [teacher, alice] = await forum(srv, DEBATE, "debate", [ALICE]);
    await assert.rejects(alice.newThread(DEBATE, "Mon sujet", "..."), code("forbidden"));
    const t = await teacher.newThread(DEBATE, "La révolution de 1789", "Qu'en pensez-vous ?");
    await alice.reply(DEBATE, t.offset, "Une rupture.");
    const list = await alice.threads(DEBATE);
    assert.equal(list.settings.flavour, "debate");
    assert.deepEqual(list.threads.map((x) => [x.title, x.replies]), [["La révolution de 1789", 1]]);
    // Bad forum fields are invalid_field, not sent as something else.
    await assert.rejects(alice.newThread(DEBATE, "   ", "x"), code("invalid_field"));
    await assert.rejects(alice.reply(DEBATE, t.offset, "x", { quote: "sans reply_to" }), code("invalid_field"));
    // A never-configured forum opened by a teacher's use is a debate of its class.
    const fresh = "3B/forum/sans-reglages";
    await teacher.join(fresh);
    assert.equal((await teacher.threads(fresh)).settings.flavour, "debate");
  } finally {
    await srv.stop();
  }
});
