// Announcements through the TS client (src/announce.ts) against the real
// server, its school directory synced: a teacher writes to the parents of
// her class asking for an acknowledgement; the parents are notified in
// their feed, join the room and read the announcement; the teacher is told
// of each receipt live; `announce_status` counts them and names who has
// not read it and the families none of whose parents opened it;
// recipients may not ask for the status; a teacher may not write to
// another class's lists, to the whole school or urgently; `announcements`
// lists what she sent.

import { test } from "node:test";
import assert from "node:assert/strict";
import { PreauError, type EventFrame, type PreauClient } from "../src/client.js";
import { announce, announceAck, announceRead, announceStatus, announcementOf, announcements, isAnnouncement, receiptOf, type AnnounceReceipt } from "../src/announce.js";
import { ADMIN_KEY, TestServer, waitFor, type DirectorySync, type UserSpec } from "./harness.js";

const ARGS = [
  "--rate-per-sec", "1000", "--rate-burst", "1000", "--request-rate-per-sec", "1000", "--request-burst", "1000",
  "--admin-key", ADMIN_KEY,
  "--quiet-hours-teacher", "off", "--quiet-hours-student", "off", "--quiet-hours-parent", "off",
];

const DURAND: UserSpec = { user: "durand", name: "Mme Durand", role: "teacher", classes: ["3B"] };
const DIRECTION: UserSpec = { user: "direction", name: "M. Lefèvre", role: "staff" };
const LEA: UserSpec = { user: "lea", name: "Léa Moreau", role: "student", classes: ["3B"] };
const P_LEA: UserSpec = { user: "p-lea", name: "M. Moreau", role: "parent", children: ["lea"] };
const P_LEA2: UserSpec = { user: "p-lea2", name: "Mme Moreau", role: "parent", children: ["lea"] };
const P_INES: UserSpec = { user: "p-ines", name: "Mme Benali", role: "parent", children: ["ines"] };

const SCHOOL: DirectorySync = {
  version: 1,
  classes: [{ id: "3B", level: "3e" }, { id: "4A", level: "4e" }],
  people: [
    { id: "durand", name: "Mme Durand", role: "teacher", teaches: [{ class: "3B", subject: "Mathématiques" }] },
    { id: "direction", name: "M. Lefèvre", role: "staff" },
    { id: "lea", name: "Léa Moreau", role: "student", classes: ["3B"] },
    { id: "ines", name: "Inès Benali", role: "student", classes: ["3B"] },
    { id: "hugo", name: "Hugo Petit", role: "student", classes: ["4A"] },
    { id: "p-lea", name: "M. Moreau", role: "parent", children: ["lea"] },
    { id: "p-lea2", name: "Mme Moreau", role: "parent", children: ["lea"] },
    { id: "p-ines", name: "Mme Benali", role: "parent", children: ["ines"] },
  ],
};

function code(c: string) {
  return (e: unknown) => {
    assert.ok(e instanceof PreauError, `a PreauError, got ${String(e)}`);
    assert.equal(e.code, c, e.message);
    return true;
  };
}

function events(client: PreauClient): EventFrame[] {
  const seen: EventFrame[] = [];
  client.on("event", (ev) => seen.push(ev));
  return seen;
}

test("announcements: a teacher writes to the parents of 3B, receipts are counted, the status names the families who have not read it", { timeout: 60_000 }, async () => {
  const srv = await TestServer.start(ARGS);
  try {
    await srv.syncDirectory(SCHOOL);
    const teacher = await srv.client(DURAND);
    const teacherEvents = events(teacher);

    // What a teacher may not do.
    await assert.rejects(announce(teacher, { targets: ["parents:4A"], title: "Sortie", text: "…" }), code("forbidden"));
    await assert.rejects(announce(teacher, { targets: ["school"], title: "Sortie", text: "…" }), code("forbidden"));
    await assert.rejects(announce(teacher, { targets: ["parents:3B"], title: "Sortie", text: "…", urgent: true }), code("forbidden"));
    await assert.rejects(announce(teacher, { targets: ["parents:3B"], title: " ", text: "…" }), code("invalid_field"));

    const sent = await announce(teacher, {
      targets: ["parents:3B"],
      title: "Sortie au musée jeudi",
      text: "Départ à 8 h 30 devant le collège, retour vers 16 h. Prévoir un pique-nique.",
      ack: true,
    });
    assert.ok(isAnnouncement(sent.room), sent.room);
    assert.equal(sent.recipients, 3, "the three parents of 3B");
    await teacher.join(sent.room);

    // A parent is notified in the feed, joins the room and reads it.
    const parent = await srv.client(P_LEA);
    let feed = await parent.feed();
    for (let i = 0; i < 50 && !feed.items.some((it) => it.room === sent.room); i++) {
      await new Promise((r) => setTimeout(r, 100));
      feed = await parent.feed();
    }
    const item = feed.items.find((it) => it.room === sent.room);
    assert.ok(item, "the announcement is in the parent's feed");
    assert.equal(item.what, "announcement");
    assert.equal(item.title, "Sortie au musée jeudi");
    assert.equal(item.by?.name, "Mme Durand");
    await parent.join(sent.room);
    const page = await parent.history(sent.room);
    const shown = page.events.map(announcementOf).filter((a) => a !== null);
    assert.equal(shown.length, 1);
    assert.equal(shown[0].title, "Sortie au musée jeudi");
    assert.equal(shown[0].ack, true);
    assert.equal(shown[0].urgent, false);
    assert.equal(shown[0].count, 3);
    assert.deepEqual(shown[0].targets, ["parents:3B"]);
    assert.equal(shown[0].from.id, "durand");
    assert.ok(page.events.every((ev) => ev.body.kind !== "announce_to"), "recipients do not see the list");

    // Read, then acknowledged: the teacher is told live.
    await announceRead(parent, sent.room);
    await announceRead(parent, sent.room); // a repeat counts nothing
    await announceAck(parent, sent.room);
    const receipts = () => teacherEvents.filter((ev) => ev.room === sent.room).map(receiptOf).filter((r): r is AnnounceReceipt => r !== null);
    await waitFor(() => receipts().some((r) => r.kind === "ack"), "the teacher is told of the acknowledgement");
    assert.ok(receipts().every((r) => r.from.id === "p-lea"));

    // Recipients may not see who read it; nor may anyone send receipts but recipients.
    await assert.rejects(announceStatus(parent, sent.room), code("forbidden"));
    await assert.rejects(announceRead(teacher, sent.room), code("forbidden"));
    const pupil = await srv.client(LEA);
    await assert.rejects(pupil.join(sent.room), code("forbidden"));

    const status = await announceStatus(teacher, sent.room);
    assert.equal(status.title, "Sortie au musée jeudi");
    assert.equal(status.recipients, 3);
    assert.equal(status.read, 1);
    assert.equal(status.ack, true);
    assert.equal(status.acked, 1);
    assert.deepEqual(status.notRead.map((u) => u.name), ["Mme Benali", "Mme Moreau"]);
    assert.deepEqual(status.notAcked.map((u) => u.name), ["Mme Benali", "Mme Moreau"]);
    // Léa's family read it (her father did); Inès's did not.
    assert.deepEqual(status.familiesNotRead, [{ child: "Inès Benali", class: "3B", parents: ["Mme Benali"] }]);

    // The second parent of Léa reads it: nothing changes for the families.
    const mother = await srv.client(P_LEA2);
    await mother.join(sent.room);
    await announceRead(mother, sent.room);
    const after = await announceStatus(teacher, sent.room);
    assert.equal(after.read, 2);
    assert.equal(after.acked, 1);
    assert.deepEqual(after.notAcked.map((u) => u.name), ["Mme Benali", "Mme Moreau"]);

    // Staff read the status of any announcement.
    const staff = await srv.client(DIRECTION);
    assert.equal((await announceStatus(staff, sent.room)).read, 2);
    // Staff write to any list, urgently if need be.
    const all = await announce(staff, { targets: ["level:3e", "teachers"], title: "Conseil de classe", text: "Le conseil de classe aura lieu lundi.", urgent: true });
    assert.equal(all.recipients, 3, "two pupils of 3e and one teacher");

    // What each one sent, latest first.
    const list = await announcements(teacher);
    assert.deepEqual(list.map((s) => [s.room, s.title, s.recipients]), [[sent.room, "Sortie au musée jeudi", 3]]);
    assert.ok(list[0].ts > 0);
    assert.deepEqual((await announcements(parent)).length, 0);

    // The third parent has it in her feed, unread.
    const benali = await srv.client(P_INES);
    const hers = await benali.feed();
    assert.equal(hers.unread[sent.room], 1);
  } finally {
    await srv.stop();
  }
});
