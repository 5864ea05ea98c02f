// The class agenda through the TS client (agendaAdd/Change/Cancel/List and
// AgendaView) against the real server: a teacher writes, a pupil follows
// live, a parent reads the week.

import { test } from "node:test";
import assert from "node:assert/strict";
import { PreauError, type EventFrame } from "../src/client.js";
import { AgendaView, agendaAdd, agendaCancel, agendaChange, agendaList } from "../src/agenda.js";
import { ALICE, TEACHER, TestServer, waitFor, type UserSpec } from "./harness.js";

const FAST = ["--rate-per-sec", "1000", "--rate-burst", "1000"];
const AGENDA = "3B/agenda/classe";
const PARENT: UserSpec = { user: "p-martin", name: "Mme Martin", role: "parent", classes: ["3B"] };
// 2026-12-07 08:00 UTC.
const MONDAY = 1_796_630_400_000;
const HOUR = 3_600_000;
const DAY = 24 * HOUR;

function code(c: string) {
  return (e: unknown) => {
    assert.ok(e instanceof PreauError, `a PreauError, got ${String(e)}`);
    assert.equal(e.code, c, e.message);
    return true;
  };
}

test("agenda: a teacher writes, a pupil's view follows live, a parent reads the week", async () => {
  const srv = await TestServer.start(FAST);
  try {
    const prof = await srv.client(TEACHER);
    await prof.join(AGENDA);
    const alice = await srv.client(ALICE);
    await alice.join(AGENDA);
    const view = new AgendaView(AGENDA, MONDAY, MONDAY + 7 * DAY);
    view.load(await agendaList(alice, AGENDA, MONDAY, MONDAY + 7 * DAY));
    assert.deepEqual(view.list(), []);
    const seen: EventFrame[] = [];
    alice.on("event", (ev) => {
      seen.push(ev);
      view.apply(ev);
    });

    const test1 = await agendaAdd(prof, AGENDA, { title: "Contrôle de maths", starts: MONDAY, ends: MONDAY + HOUR, place: "Salle 12" }, "k-1");
    // A retry with the same key is the same item.
    const again = await agendaAdd(prof, AGENDA, { title: "Contrôle de maths", starts: MONDAY, ends: MONDAY + HOUR, place: "Salle 12" }, "k-1");
    assert.equal(again.offset, test1.offset);
    const trip = await agendaAdd(prof, AGENDA, { title: "Sortie au musée", starts: MONDAY + 3 * DAY, allDay: true });
    await waitFor(() => view.list().length === 2, "both items live");
    await agendaChange(prof, AGENDA, test1.offset, { title: "Contrôle (chapitre 4)", starts: MONDAY + DAY, ends: MONDAY + DAY + HOUR });
    await agendaCancel(prof, AGENDA, trip.offset, "grève");
    await waitFor(() => view.list()[1]?.cancelled === true, "the cancellation live");
    assert.deepEqual(
      view.list().map((i) => [i.item, i.title, i.starts, i.cancelled]),
      [
        [test1.offset, "Contrôle (chapitre 4)", MONDAY + DAY, false],
        [trip.offset, "Sortie au musée", MONDAY + 3 * DAY, true],
      ],
    );

    // The parent's read of the week says the same as the pupil's live view.
    const mum = await srv.client(PARENT);
    const week = await agendaList(mum, AGENDA, MONDAY, MONDAY + 7 * DAY);
    assert.deepEqual(
      week.items.map((i) => [i.item, i.title, i.starts, i.cancelled, i.reason ?? null, i.allDay]),
      [
        [test1.offset, "Contrôle (chapitre 4)", MONDAY + DAY, false, null, false],
        [trip.offset, "Sortie au musée", MONDAY + 3 * DAY, true, "grève", true],
      ],
    );
    assert.equal(week.items[0].by.id, TEACHER.user);
    // Parents and pupils read, never write.
    await mum.join(AGENDA);
    await assert.rejects(agendaAdd(mum, AGENDA, { title: "x", starts: MONDAY }), code("forbidden"));
    await assert.rejects(agendaAdd(alice, AGENDA, { title: "x", starts: MONDAY }), code("forbidden"));
    // Bounds.
    await assert.rejects(agendaAdd(prof, AGENDA, { title: "x", starts: MONDAY, ends: MONDAY - 1 }), code("invalid_field"));
    await assert.rejects(agendaList(mum, AGENDA, MONDAY, MONDAY + 401 * DAY), code("invalid_field"));
    await assert.rejects(agendaChange(prof, AGENDA, trip.offset, { title: "x", starts: MONDAY }), code("not_editable"));
    // The events carry the documented body kinds.
    assert.deepEqual(
      [...new Set(seen.map((e) => (e.body as { kind: string }).kind))].sort(),
      ["agenda_cancel", "agenda_item"],
    );
  } finally {
    await srv.stop();
  }
});
