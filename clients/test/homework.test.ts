// The homework diary through the TS client (PreauClient's homework methods
// and DiaryView) against the real server: a teacher writes, pupils follow
// live and mark done, a parent sees their child's mark and not the
// others', scheduled entries stay with their author, homework due across
// two children's classes, and the calendar feed over HTTP.

import { test } from "node:test";
import assert from "node:assert/strict";
import { PreauError, type EventFrame, type PreauClient } from "../src/client.js";
import { DiaryView, diaryOf, type Day } from "../src/homework.js";
import { TEACHER, TestServer, sleep, waitFor, type UserSpec } from "./harness.js";

const FAST = ["--rate-per-sec", "1000", "--rate-burst", "1000"];
const DIARY = diaryOf("3B");
const DIARY_4A = diaryOf("4A");
const MON: Day = "2026-12-07";
const SUN: Day = "2026-12-13";

const ANA: UserSpec = { user: "ana", name: "Ana Martin", role: "student", classes: ["3B"] };
const BILAL: UserSpec = { user: "bilal", name: "Bilal Haddad", role: "student", classes: ["3B"] };
const LEO: UserSpec = { user: "leo", name: "Léo Martin", role: "student", classes: ["4A"] };
const PROF_4A: UserSpec = { user: "t-roux", name: "Mme Roux", role: "teacher", classes: ["4A"] };
/** Ana's and Léo's mother: two children in two classes, named as the ENT names them. */
const MUM: UserSpec = {
  user: "p-martin",
  name: "Mme Martin",
  role: "parent",
  classes: ["3B", "4A"],
  children: [
    { id: "ana", name: "Ana", classes: ["3B"] },
    { id: "leo", name: "Léo", classes: ["4A"] },
  ],
};

function code(c: string) {
  return (e: unknown) => {
    assert.ok(e instanceof PreauError, `a PreauError, got ${String(e)}`);
    assert.equal(e.code, c, e.message);
    return true;
  };
}

/** A client joined to `room` with a view of `[from, to]` fed by its events, and the events it got. */
async function follow(client: PreauClient, room: string, from: Day, to: Day) {
  await client.join(room);
  const view = new DiaryView(room, from, to, client.user!.id);
  const seen: EventFrame[] = [];
  client.on("event", (ev) => {
    if (ev.room !== room) return;
    seen.push(ev);
    view.apply(ev);
  });
  view.load(await client.homework(room, from, to));
  return { view, seen };
}

test("diary: a teacher writes, a pupil follows live and marks done, the parent sees the mark, a classmate does not", async () => {
  const srv = await TestServer.start(FAST);
  try {
    const prof = await srv.client(TEACHER);
    await prof.join(DIARY); // a teacher of the class opens the diary
    const ana = await follow(await srv.client(ANA), DIARY, MON, SUN);
    const bilal = await follow(await srv.client(BILAL), DIARY, MON, SUN);
    const mumClient = await srv.client(MUM);
    const mum = await follow(mumClient, DIARY, MON, SUN);
    assert.deepEqual(ana.view.list(), []);

    const lesson = await prof.homeworkWrite(DIARY, {
      what: "lesson",
      subject: "Maths",
      text: "Fractions : définition",
      date: MON,
      links: ["https://fr.khanacademy.org/math/fractions"],
    });
    const hw = { what: "homework" as const, subject: "Maths", text: "Exercices 4 et 5 p. 32", date: MON, due: "2026-12-10", minutes: 30 };
    const item = await prof.homeworkWrite(DIARY, hw, { key: "hw-1" });
    // A retry with the same key is the same entry.
    assert.equal((await prof.homeworkWrite(DIARY, hw, { key: "hw-1" })).offset, item.offset);
    for (const who of [ana, bilal, mum]) await waitFor(() => who.view.list().length === 2, "both entries live");
    assert.deepEqual(
      ana.view.list().map((e) => [e.entry, e.what, e.subject, e.links, e.minutes ?? null]),
      [
        [lesson.offset, "lesson", "Maths", ["https://fr.khanacademy.org/math/fractions"], null],
        [item.offset, "homework", "Maths", [], 30],
      ],
    );

    // A new version replaces every field; the entry keeps its id.
    const changed = await prof.homeworkWrite(DIARY, { ...hw, text: "Exercices 4, 5 et 6 p. 32", due: "2026-12-11", minutes: 45 }, { entry: item.offset });
    await waitFor(() => ana.view.get(item.offset)?.version === changed.offset, "the new version live");
    const v2 = ana.view.get(item.offset)!;
    assert.deepEqual([v2.text, v2.due, v2.minutes, v2.versions, v2.by.id], ["Exercices 4, 5 et 6 p. 32", "2026-12-11", 45, 2, TEACHER.user]);

    // Ana marks it done from her phone (another connection): her view and
    // her mother's follow, Bilal is told nothing.
    const marker = await srv.client(ANA);
    await marker.join(DIARY);
    await marker.homeworkDone(DIARY, item.offset, true);
    await waitFor(() => ana.view.get(item.offset)?.done === true, "Ana's own mark, on her other connection too");
    await waitFor(() => mum.view.get(item.offset)?.doneBy?.includes("ana") === true, "the mark at her mother's");
    // Something later reaches Bilal: by then the mark would have too.
    const after = await prof.homeworkWrite(DIARY, { what: "lesson", subject: "Histoire", text: "La Révolution", date: "2026-12-08" });
    await waitFor(() => bilal.view.get(after.offset) !== undefined, "the next lesson at Bilal's");
    assert.equal(bilal.seen.filter((e) => e.body.kind === "homework_done").length, 0, "a classmate's mark is not shown");
    const bilalsItem = bilal.view.get(item.offset)!;
    assert.equal(bilalsItem.done, undefined);
    assert.equal(bilalsItem.doneBy, undefined);

    // Listings: her mark to the pupil, which child to the parent, a count to the teacher.
    assert.equal((await marker.homework(DIARY, MON, SUN)).entries.find((e) => e.entry === item.offset)?.done, true);
    assert.deepEqual((await mumClient.homework(DIARY, MON, SUN)).entries.find((e) => e.entry === item.offset)?.doneBy, ["ana"]);
    const profWeek = await prof.homework(DIARY, MON, SUN);
    assert.deepEqual(
      profWeek.entries.map((e) => [e.subject, e.doneCount ?? null]),
      [
        ["Maths", null], // a lesson has no marks
        ["Histoire", null],
        ["Maths", 1],
      ],
      "by day: Monday's lesson, Tuesday's, the homework due Friday",
    );
    // Unmarked: the views follow.
    await marker.homeworkDone(DIARY, item.offset, false);
    await waitFor(() => mum.view.get(item.offset)?.doneBy?.length === 0, "the mark taken back");
    assert.equal(ana.view.get(item.offset)?.done, false);

    // Only teachers write, only pupils mark; a lesson is not marked.
    await assert.rejects(marker.homeworkWrite(DIARY, { what: "lesson", subject: "x", text: "x", date: MON }), code("forbidden"));
    await assert.rejects(mumClient.homeworkDone(DIARY, item.offset, true), code("forbidden"));
    await assert.rejects(marker.homeworkDone(DIARY, lesson.offset, true), code("invalid_field"));
    await assert.rejects(prof.homeworkWrite(DIARY, { what: "homework", subject: "Maths", text: "x", date: MON }), code("invalid_field"), "homework needs a due day");

    // Deleted: every view forgets it, and so does the listing.
    await prof.homeworkDelete(DIARY, item.offset);
    for (const who of [ana, bilal, mum]) await waitFor(() => who.view.get(item.offset) === undefined, "the entry gone");
    assert.equal(ana.view.stale, false, "the deletion was applied, no reload needed");
    assert.deepEqual((await marker.homework(DIARY, MON, SUN)).entries.map((e) => e.entry), [lesson.offset, after.offset]);
  } finally {
    await srv.stop();
  }
});

test("diary: a scheduled entry is its author's until its time, then reaches the class as a publication", async () => {
  const srv = await TestServer.start(FAST);
  try {
    const prof = await srv.client(TEACHER);
    const mine = await follow(prof, DIARY, MON, SUN);
    const ana = await follow(await srv.client(ANA), DIARY, MON, SUN);
    const later = Date.now() + 24 * 3600_000;
    const planned = await prof.homeworkWrite(DIARY, { what: "homework", subject: "Anglais", text: "Apprendre le vocabulaire", date: MON, due: "2026-12-09", minutes: 20, publishAt: later });
    await waitFor(() => mine.view.get(planned.offset)?.publishAt === later, "the author's view holds it, with its time");
    const teacherWeek = await prof.homework(DIARY, MON, SUN);
    assert.deepEqual(teacherWeek.entries.map((e) => [e.entry, e.publishAt]), [[planned.offset, later]]);
    // The pupil: not in her listing, nor live (a public entry written after it arrives first).
    const pub = await prof.homeworkWrite(DIARY, { what: "lesson", subject: "Anglais", text: "Unité 3", date: MON });
    await waitFor(() => ana.view.get(pub.offset) !== undefined, "the public lesson");
    assert.equal(ana.view.get(planned.offset), undefined);
    const anaClient = await srv.client(ANA);
    assert.deepEqual((await anaClient.homework(DIARY, MON, SUN)).entries.map((e) => e.entry), [pub.offset]);
    // Its load counts for the teacher, not for the pupil.
    assert.deepEqual((await prof.homeworkLoad(DIARY, MON, SUN)).days, [{ date: "2026-12-09", items: 1, minutes: 20, unestimated: 0 }]);
    assert.deepEqual((await anaClient.homeworkLoad(DIARY, MON, SUN)).days, []);

    // Scheduled two seconds ahead: the server publishes it (within about a
    // second of its time), and the pupil's view takes it as a new entry.
    const soon = await prof.homeworkWrite(DIARY, { what: "homework", subject: "SVT", text: "Schéma de la cellule", date: MON, due: "2026-12-08", publishAt: Date.now() + 2000 });
    await sleep(500);
    assert.equal(ana.view.get(soon.offset), undefined, "not before its time");
    await waitFor(() => ana.view.get(soon.offset) !== undefined, "published", 10_000);
    const published = ana.view.get(soon.offset)!;
    assert.deepEqual([published.subject, published.due, published.version, published.publishAt], ["SVT", "2026-12-08", soon.offset, undefined]);
    assert.ok(ana.seen.some((e) => e.body.kind === "homework_publish" && e.body.entry === soon.offset));
    await waitFor(() => mine.view.get(soon.offset)?.publishAt === undefined, "public for its author too");
  } finally {
    await srv.stop();
  }
});

test("diary: homework due across a parent's two children's classes is labelled by child; the load of a day", async () => {
  const srv = await TestServer.start(FAST);
  try {
    const prof = await srv.client(TEACHER);
    await prof.join(DIARY);
    const roux = await srv.client(PROF_4A);
    await roux.join(DIARY_4A);
    for (const [subject, due, minutes] of [
      ["Maths", "2026-12-08", 30],
      ["Français", "2026-12-08", 45],
      ["Anglais", "2026-12-08", undefined],
    ] as const) {
      await prof.homeworkWrite(DIARY, { what: "homework", subject, text: `${subject} : exercices`, date: MON, due, minutes });
    }
    await roux.homeworkWrite(DIARY_4A, { what: "homework", subject: "Histoire", text: "Frise chronologique", date: MON, due: "2026-12-09" });
    await roux.homeworkWrite(DIARY_4A, { what: "lesson", subject: "Histoire", text: "La Révolution", date: MON });

    const mum = await srv.client(MUM);
    const due = await mum.homeworkDue(MON, SUN);
    assert.equal(due.more, false);
    assert.deepEqual(
      due.items.map((i) => [i.due, i.class, i.room, i.subject, i.children]),
      [
        ["2026-12-08", "3B", DIARY, "Anglais", [{ id: "ana", name: "Ana" }]],
        ["2026-12-08", "3B", DIARY, "Français", [{ id: "ana", name: "Ana" }]],
        ["2026-12-08", "3B", DIARY, "Maths", [{ id: "ana", name: "Ana" }]],
        ["2026-12-09", "4A", DIARY_4A, "Histoire", [{ id: "leo", name: "Léo" }]],
      ],
      "by due day, class, subject; lessons are not due",
    );
    // A pupil: her class only, unlabelled.
    const ana = await srv.client(ANA);
    const hers = await ana.homeworkDue(MON, SUN);
    assert.deepEqual([...new Set(hers.items.map((i) => i.class))], ["3B"]);
    assert.ok(hers.items.every((i) => i.children.length === 0));
    const leo = await srv.client(LEO);
    assert.deepEqual((await leo.homeworkDue(MON, SUN)).items.map((i) => i.subject), ["Histoire"]);

    // The load of the days around Tuesday, as the teacher's form shows it.
    const load = await prof.homeworkLoad(DIARY, "2026-12-05", "2026-12-11");
    assert.deepEqual(load.days, [{ date: "2026-12-08", items: 3, minutes: 75, unestimated: 1 }]);
    await assert.rejects(prof.homeworkLoad(DIARY, "2026-12-01", "2027-03-01"), code("invalid_field"), "at most 62 days");
  } finally {
    await srv.stop();
  }
});

test("calendar feed: the address answers text/calendar over HTTP, and 404 once revoked", async () => {
  const srv = await TestServer.start(FAST);
  try {
    const prof = await srv.client(TEACHER);
    await prof.join(DIARY);
    await prof.homeworkWrite(DIARY, { what: "homework", subject: "Maths", text: "Exercices 4 et 5", date: MON, due: "2026-12-10", minutes: 30 });
    const mum = await srv.client(MUM);
    const feed = await mum.calendarFeed();
    assert.match(feed.path, /^\/cal\/.+\.ics$/);
    assert.ok(feed.expires > Date.now() + 300 * 24 * 3600_000, "valid for 400 days");
    const r = await fetch(`${srv.httpUrl}${feed.path}`);
    assert.equal(r.status, 200);
    assert.match(r.headers.get("content-type") ?? "", /^text\/calendar/);
    const body = await r.text();
    assert.match(body, /^BEGIN:VCALENDAR/);
    assert.ok(body.includes("SUMMARY:Ana · À faire : Maths (3B)"), body);

    assert.deepEqual(await mum.calendarFeedRevoke(), { revoked: true });
    assert.equal((await fetch(`${srv.httpUrl}${feed.path}`)).status, 404);
    assert.deepEqual(await mum.calendarFeedRevoke(), { revoked: false }, "nothing left to revoke");
    // Asked again: the active feed's address (both work); a new one stops them.
    const second = await mum.calendarFeed();
    const again = await mum.calendarFeed();
    assert.equal((await fetch(`${srv.httpUrl}${second.path}`)).status, 200);
    assert.equal((await fetch(`${srv.httpUrl}${again.path}`)).status, 200);
    const third = await mum.calendarFeed(true);
    assert.equal((await fetch(`${srv.httpUrl}${second.path}`)).status, 404);
    assert.equal((await fetch(`${srv.httpUrl}${again.path}`)).status, 404);
    assert.equal((await fetch(`${srv.httpUrl}${third.path}`)).status, 200);
  } finally {
    await srv.stop();
  }
});
