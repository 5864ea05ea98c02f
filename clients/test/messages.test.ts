// Direct messages and the notification feed through the TS client
// (PreauClient's dm and feed methods, FeedState) against the real server,
// its school directory synced first: contacts searched as people type
// them, a conversation started and written in, the teacher's feed told
// live, unread counts (FeedState, `feed` and `conversations` agree),
// `feed_read` for one room and for all, an idempotent resend, quiet hours
// read, set, holding a notification and back to the school's, a pupil's
// name preference and a question shared with the class.

import { test } from "node:test";
import assert from "node:assert/strict";
import { PreauError, type EventFrame, type PreauClient } from "../src/client.js";
import { FeedState, isForever, type FeedChange, type NotificationsOk } from "../src/messages.js";
import { ADMIN_KEY, TestServer, sleep, waitFor, type DirectorySync, type UserSpec } from "./harness.js";

const ARGS = [
  "--rate-per-sec", "1000", "--rate-burst", "1000", "--request-rate-per-sec", "1000", "--request-burst", "1000",
  "--admin-key", ADMIN_KEY,
  // Nobody is quiet unless the test says so: the school's defaults
  // (20:00–07:00 and Sundays) would make the outcome depend on the hour.
  "--quiet-hours-teacher", "off", "--quiet-hours-student", "off", "--quiet-hours-parent", "off",
];

const DURAND: UserSpec = { user: "durand", name: "Mme Durand", role: "teacher", classes: ["3B"] };
const LEA: UserSpec = { user: "lea", name: "Léa Moreau", role: "student", classes: ["3B"] };
const INES: UserSpec = { user: "ines", name: "Inès Benali", role: "student", classes: ["3B"] };
const PARENT: UserSpec = { user: "p-lea", name: "M. Moreau", role: "parent", children: ["lea"] };

const SCHOOL: DirectorySync = {
  version: 1,
  classes: [{ id: "3B", level: "3e" }],
  people: [
    { id: "durand", name: "Mme Durand", role: "teacher", teaches: [{ class: "3B", subject: "Mathématiques" }] },
    { id: "lea", name: "Léa Moreau", role: "student", classes: ["3B"] },
    { id: "ines", name: "Inès Benali", role: "student", classes: ["3B"] },
    { id: "p-lea", name: "M. Moreau", role: "parent", children: ["lea"] },
    // Opens rooms for the tests (harness OPENER).
    { id: "opener", name: "Ouverture des salons", role: "staff" },
  ],
};

function code(c: string) {
  return (e: unknown) => {
    assert.ok(e instanceof PreauError, `a PreauError, got ${String(e)}`);
    assert.equal(e.code, c, e.message);
    return true;
  };
}

/** A client following its own feed: joined to its inbox, a FeedState fed by every event, what each event changed. */
async function followFeed(client: PreauClient) {
  const state = new FeedState();
  const changes: FeedChange[] = [];
  const buffered: EventFrame[] = [];
  let loading = true;
  client.on("event", (ev) => {
    if (loading) buffered.push(ev);
    const change = state.apply(ev);
    if (change) changes.push(change);
  });
  const first = await client.feed();
  await client.join(first.room);
  // Read again once joined: nothing falls between the reply and the join.
  state.load(await client.feed());
  loading = false;
  for (const ev of buffered) state.apply(ev);
  return { state, changes, reload: async () => state.load(await client.feed()) };
}

/** `HH:MM` in Paris, `minutes` from now. */
function parisTime(minutes: number): string {
  const parts = new Intl.DateTimeFormat("en-GB", { timeZone: "Europe/Paris", hour: "2-digit", minute: "2-digit", hourCycle: "h23" }).formatToParts(new Date(Date.now() + minutes * 60_000));
  const get = (t: string) => parts.find((p) => p.type === t)!.value;
  return `${get("hour")}:${get("minute")}`;
}

async function schoolServer(): Promise<TestServer> {
  const srv = await TestServer.start(ARGS);
  await srv.syncDirectory(SCHOOL);
  return srv;
}

test("messages: contacts, a conversation, the teacher told live, unread counts and read marks", async () => {
  const srv = await schoolServer();
  try {
    const durand = await srv.client(DURAND);
    const lea = await srv.client(LEA);

    // Whom Léa may write to: her teacher (what she teaches in 3B) and her
    // parent, not a classmate (the school's option is off); searched
    // without case or accents.
    const all = await lea.contacts();
    assert.deepEqual(all.contacts.map((c) => c.id).sort(), ["durand", "opener", "p-lea"]);
    const teacher = all.contacts.find((c) => c.id === "durand")!;
    assert.deepEqual(teacher, { id: "durand", name: "Mme Durand", role: "teacher", about: ["3B · Mathématiques"] });
    assert.deepEqual(all.contacts.find((c) => c.id === "p-lea")!.about, ["Léa Moreau"]);
    assert.deepEqual((await lea.contacts({ query: "DUR" })).contacts.map((c) => c.id), ["durand"]);
    assert.deepEqual((await lea.contacts({ query: "ines" })).contacts, []);
    const one = await lea.contacts({ limit: 1 });
    assert.equal(one.contacts.length, 1);
    assert.equal(one.more, true);
    // The teacher sees her pupils with their class, and the parent with his child's name.
    const mine = await durand.contacts({ query: "  moreau " });
    assert.deepEqual(mine.contacts.map((c) => [c.id, c.about]), [["lea", ["3B"]], ["p-lea", ["Léa Moreau"]]]);

    // The teacher follows her feed.
    const feed = await followFeed(durand);
    assert.match(feed.state.room, /^_\/inbox\/[0-9a-f]{32}$/);
    assert.equal(feed.state.total, 0);
    assert.deepEqual(feed.state.quiet, { hours: { start: "00:00", end: "00:00", days: [] }, own: false });

    // Léa starts a conversation; writing again to her teacher reopens it.
    const started = await lea.dmStart(["durand"]);
    assert.equal(started.created, true);
    assert.match(started.room, /^_\/dm\/[0-9a-f]{32}$/);
    assert.deepEqual(started.members.map((m) => m.id).sort(), ["durand", "lea"]);
    assert.deepEqual(started.quiet, []);
    const again = await lea.dmStart(["durand"]);
    assert.deepEqual([again.room, again.created], [started.room, false]);
    const room = started.room;
    // The teacher's feed says she is in it.
    await waitFor(() => feed.changes.some((c) => c.kind === "joined" && c.room === room), "dm_joined");
    // Nobody else reads it.
    const ines = await srv.client(INES);
    await assert.rejects(ines.join(room), code("forbidden"));
    await assert.rejects(ines.contacts({ query: "x".repeat(101) }), code("invalid_field"));

    const sent = await lea.dmSend(room, "Bonjour Madame, je n'ai pas compris l'exercice 3.");
    assert.equal(sent.room, room);
    assert.deepEqual(sent.held, []);
    // Told live, once.
    await waitFor(() => feed.state.total === 1, "the notification, live");
    const [item] = feed.state.items();
    assert.equal(item.what, "dm");
    assert.equal(item.room, room);
    assert.equal(item.at, sent.offset);
    assert.equal(item.by?.id, "lea");
    assert.equal(item.read, false);
    assert.equal(item.holdUntil, undefined);

    // A resend with the same key is the same message, notified once.
    const key = "cle-de-test-0001";
    const a = await lea.dmSend(room, "Et la question b ?", { key });
    const b = await lea.dmSend(room, "Et la question b ?", { key });
    assert.equal(a.offset, b.offset);
    await waitFor(() => feed.state.total === 2, "the second notification");
    await sleep(300);
    assert.equal(feed.state.total, 2, "one notification per message");

    // Every count agrees: the live state, the feed, the conversation list.
    const fresh = await durand.feed();
    assert.equal(fresh.totalUnread, 2);
    assert.deepEqual(fresh.unread, { [room]: 2 });
    const conversations = await durand.conversations();
    assert.equal(conversations.length, 1);
    assert.equal(conversations[0].room, room);
    assert.equal(conversations[0].unread, 2);
    assert.ok(conversations[0].last >= sent.ts);
    assert.deepEqual(conversations[0].members.map((m) => m.name).sort(), ["Léa Moreau", "Mme Durand"]);
    assert.equal(feed.state.unread(room), 2);

    // The conversation's messages, in order, for its members.
    await durand.join(room);
    const history = await durand.history(room);
    const texts = history.events.filter((e) => e.body.kind === "message").map((e) => e.body.text);
    assert.deepEqual(texts, ["Bonjour Madame, je n'ai pas compris l'exercice 3.", "Et la question b ?"]);
    assert.equal(history.events[0].body.kind, "dm_members");
    // Messages go through dm_send (which notifies), not post.
    await assert.rejects(durand.post(room, "x"), code("invalid_field"));

    // She opens it: read, on every device (the mark is an event of her feed).
    await durand.feedRead({ room });
    await waitFor(() => feed.state.total === 0, "the read mark, live");
    assert.equal((await durand.feed()).totalUnread, 0);
    assert.equal((await durand.conversations())[0].unread, 0);
    assert.ok(feed.state.items().every((i) => i.read));

    // She answers; Léa's count, then « Tout marquer comme lu ».
    const leaFeed = await followFeed(lea);
    const answer = await durand.dmSend(room, "Bonjour Léa, regarde la page 54.");
    assert.deepEqual(answer.held, []);
    await waitFor(() => leaFeed.state.unread(room) === 1, "Léa's notification");
    assert.equal(leaFeed.state.items()[0].by?.name, "Mme Durand");
    await lea.feedRead();
    await waitFor(() => leaFeed.state.total === 0, "all read");
    assert.equal((await lea.feed()).totalUnread, 0);

    // The parent's conversation with the teacher is another room.
    const parent = await srv.client(PARENT);
    const other = await parent.dmStart(["durand"]);
    assert.notEqual(other.room, room);
    await parent.dmSend(other.room, "Bonjour, Léa sera absente demain.");
    await waitFor(() => feed.state.unread(other.room) === 1 && feed.state.total === 1, "the parent's message");
    assert.deepEqual((await durand.conversations()).map((c) => c.room), [other.room, room], "latest activity first");
  } finally {
    await srv.stop();
  }
});

test("messages: quiet hours read, set, holding a notification, every day, and back to the school's", async () => {
  const srv = await schoolServer();
  try {
    const durand = await srv.client(DURAND);
    const lea = await srv.client(LEA);
    const feed = await followFeed(durand);

    // The school's default for teachers here: none.
    const school = await durand.quietHours();
    assert.deepEqual(school, { hours: { start: "00:00", end: "00:00", days: [] }, own: false });

    // Quiet from an hour ago to an hour from now (Paris time).
    const hours = { start: parisTime(-60), end: parisTime(60), days: [] };
    await durand.setQuietHours(hours);
    const own = await durand.quietHours();
    assert.deepEqual(own.hours, hours);
    assert.equal(own.own, true);
    assert.ok(own.until !== undefined && own.until > Date.now() && own.until <= Date.now() + 61 * 60_000, `until ${own.until}`);
    // Her other devices hear of it, and read the feed again for `until`.
    await waitFor(() => feed.changes.some((c) => c.kind === "reload" && c.reason === "quiet"), "quiet_hours event");
    await feed.reload();
    assert.equal(feed.state.quiet.until, own.until);

    // Léa is told at once that her teacher is quiet, and until when.
    const started = await lea.dmStart(["durand"]);
    assert.deepEqual(started.quiet, [{ id: "durand", name: "Mme Durand", until: own.until }]);
    const sent = await lea.dmSend(started.room, "Madame, pour demain ?");
    assert.deepEqual(sent.held, [{ id: "durand", name: "Mme Durand", until: own.until }]);
    // Nothing is pushed to the teacher…
    await sleep(1500);
    assert.equal(feed.changes.filter((c) => c.kind === "notify").length, 0, "nothing pushed during quiet hours");
    assert.equal(feed.state.total, 0);
    // … it waits in her feed, marked held (and counted unread by the server).
    const held = await durand.feed();
    const dm = held.items.filter((i) => i.what === "dm");
    assert.equal(dm.length, 1);
    assert.equal(dm[0].holdUntil, own.until);
    assert.equal(held.totalUnread, 1);

    // Quiet every day: the sender is told it waits for the teacher to open her messages.
    await durand.setQuietHours({ start: "00:00", end: "00:00", days: ["mon", "tue", "wed", "thu", "fri", "sat", "sun"] });
    const always = await lea.dmSend(started.room, "Merci !");
    assert.equal(always.held.length, 1);
    assert.ok(isForever(always.held[0].until), `forever: ${always.held[0].until}`);

    // Back to the school's hours: pushed again.
    await durand.defaultQuietHours();
    assert.deepEqual(await durand.quietHours(), school);
    const pushed = await lea.dmSend(started.room, "Bonne soirée");
    assert.deepEqual(pushed.held, []);
    await waitFor(() => feed.changes.some((c) => c.kind === "notify"), "pushed once the quiet hours are gone");

    // Refused: bad times, both hours and default, an unknown day.
    await assert.rejects(durand.setQuietHours({ start: "25:00", end: "07:00", days: [] }), code("invalid_field"));
    await assert.rejects(durand.request("quiet_hours", { hours: { start: "20:00", end: "07:00", days: [] }, default: true }), code("invalid_field"));
    await assert.rejects(durand.request("quiet_hours", { hours: { start: "20:00", end: "07:00", days: ["someday"] } }), code("invalid_field"));
  } finally {
    await srv.stop();
  }
});

test("messages: a pupil's name preference, and a question shared with the class", async () => {
  const srv = await schoolServer();
  try {
    const durand = await srv.client(DURAND);
    const lea = await srv.client(LEA);
    const forum = "3B/forum/aide";
    await durand.join(forum);
    await durand.configureForum(forum, { flavour: "help" });

    const { room } = await lea.dmStart(["durand"]);
    await lea.join(room);
    const events: EventFrame[] = [];
    lea.on("event", (ev) => ev.room === room && events.push(ev));
    const question = await lea.dmSend(room, "Comment factoriser x² - 9 ?");

    // Anonymous unless she agreed.
    const shared = await durand.dmShare(room, question.offset, forum);
    assert.equal(shared.forum, forum);
    assert.equal(shared.anonymous, true);
    const thread = (await durand.threadHistory(forum, shared.thread)).events.find((e) => e.offset === shared.thread)!;
    assert.equal(thread.body.text, "Comment factoriser x² - 9 ?");
    assert.equal(thread.body.title, "Question d'un élève");
    assert.equal(thread.from.id, "durand");
    await waitFor(() => events.some((e) => e.body.kind === "dm_shared"), "dm_shared in the conversation");
    const note = events.find((e) => e.body.kind === "dm_shared")!;
    assert.deepEqual([note.body.at, note.body.forum, note.body.thread, note.body.anonymous], [question.offset, forum, shared.thread, true]);

    // She agrees: her name, and the preference is an event of the conversation.
    await lea.dmPrefs(room, true);
    await waitFor(() => events.some((e) => e.body.kind === "dm_prefs" && e.body.named === true && e.from.id === "lea"), "dm_prefs");
    const second = await lea.dmSend(room, "Et x² + 6x + 9 ?");
    const named = await durand.dmShare(room, second.offset, forum, "Identités remarquables");
    assert.equal(named.anonymous, false);
    const titled = (await durand.threadHistory(forum, named.thread)).events.find((e) => e.offset === named.thread)!;
    assert.equal(titled.body.title, "Identités remarquables");

    // Only pupils set the preference, only teachers share, only pupils' messages.
    await assert.rejects(durand.dmPrefs(room, true), code("forbidden"));
    await assert.rejects(lea.dmShare(room, second.offset, forum), code("forbidden"));
    const own = await durand.dmSend(room, "Bonne question.");
    await assert.rejects(durand.dmShare(room, own.offset, forum), code("unknown_target"));
  } finally {
    await srv.stop();
  }
});

test("FeedState: counts beyond the loaded page, read marks, replays and reloads", () => {
  const room = "_/inbox/00000000000000000000000000000000";
  const dm = "_/dm/11111111111111111111111111111111";
  const other = "_/dm/22222222222222222222222222222222";
  const item = (offset: number, about: string, read = false) => ({ offset, ts: offset * 1000, what: "dm", room: about, title: "", urgent: false, read, by: { id: "lea", name: "Léa", role: "student" } });
  const ok: NotificationsOk = {
    room,
    // The page holds offsets 10 and 12; 3 more unread about `dm` are older.
    items: [item(12, dm), item(10, other, true)],
    more: true,
    unread: { [dm]: 4 },
    totalUnread: 4,
    quiet: { hours: { start: "20:00", end: "07:00", days: ["sun"] }, own: false },
  };
  const ev = (offset: number, body: Record<string, unknown>): EventFrame => ({ type: "event", room, epoch: "e", offset, ts: offset * 1000, from: { id: "preau", name: "préau", role: "staff" }, body: body as EventFrame["body"] });
  const state = new FeedState();
  assert.equal(state.apply(ev(13, { kind: "notify", what: "dm", room: dm, title: "" })), null, "nothing before load");
  state.load(ok);
  assert.equal(state.total, 4);
  assert.equal(state.unread(dm), 4);
  assert.equal(state.before, 10);

  // A live notification; the same event again changes nothing.
  const change = state.apply(ev(13, { kind: "notify", what: "dm", room: other, title: "", by: { id: "ines", name: "Inès", role: "student" } }));
  assert.equal(change?.kind, "notify");
  assert.equal(state.apply(ev(13, { kind: "notify", what: "dm", room: other, title: "" })), null);
  assert.equal(state.total, 5);
  assert.equal(state.items()[0].by?.name, "Inès");

  // A mark older than the page cannot be counted here: reload.
  assert.deepEqual(state.apply(ev(14, { kind: "feed_seen", room: dm, through: 5 })), { kind: "reload", reason: "gap" });
  // A mark through the page covers the older ones too.
  assert.deepEqual(state.apply(ev(15, { kind: "feed_seen", room: dm, through: 13 })), { kind: "read" });
  assert.equal(state.unread(dm), 0);
  assert.equal(state.unread(other), 1);
  assert.deepEqual(state.apply(ev(16, { kind: "feed_seen", through: 13 })), { kind: "read" });
  assert.equal(state.total, 0);

  // Quiet hours changed, a release, a conversation joined.
  assert.deepEqual(state.apply(ev(17, { kind: "quiet_hours", hours: null })), { kind: "reload", reason: "quiet" });
  assert.deepEqual(state.apply(ev(18, { kind: "feed_release", until: 1, count: 1 })), { kind: "reload", reason: "release" });
  const joined = state.apply(ev(19, { kind: "dm_joined", room: dm, members: [{ id: "lea", name: "Léa", role: "student" }] }));
  assert.equal(joined?.kind, "joined");
  // Another room's events are not the feed's.
  assert.equal(state.apply({ ...ev(20, { kind: "notify", what: "dm", room: dm, title: "" }), room: "3B/chat/general" }), null);

  // An older page: its items are added, and they were counted already.
  const fresh = new FeedState();
  fresh.load(ok);
  fresh.loadOlder({ ...ok, items: [item(8, dm), item(7, dm), item(6, dm, true)], more: false });
  assert.equal(fresh.unread(dm), 4);
  assert.equal(fresh.items().length, 5);
  assert.equal(fresh.before, 6);
});
