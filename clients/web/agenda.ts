// The class agenda in the web app: one week at a time, Monday to Sunday,
// each day with its events (live) and the homework due that day from the
// class's diary, so that a pupil or a parent sees in one place what is
// coming. Teachers of the class (and staff) add and cancel events. Pupils
// and parents read it (a parent's classes are their children's).
//
// Part of the app's first load: the week helpers come from week.ts, not
// from diary.ts (a chunk loaded on demand), and the diary is read with
// the client's `homework` request, without its view.

import type { PreauClient } from "../src/client.js";
import { AgendaView, agendaAdd, agendaCancel, agendaList, type AgendaItem } from "../src/agenda.js";
import { diaryOf, type Day, type DiaryEntry } from "../src/homework.js";
import { el, errorText, isModerator, isUnknownRoom, roomTitle, toast, type RoomHooks } from "./common.js";
import type { OfflineStore } from "./offline.js";
import { WeekNav, addDays, capitalize, dateOf, dayOf, longDay, mondayOf, subjectColour, subjectTag, today } from "./week.js";

const timeFmt = new Intl.DateTimeFormat("fr-FR", { hour: "2-digit", minute: "2-digit" });

export class AgendaRoomView {
  root: HTMLElement;
  private listEl = el("div", { className: "agenda-days" });
  private notice = el("p", { className: "notice", hidden: true });
  private form?: HTMLFormElement;
  private submit?: HTMLButtonElement;
  private nav: WeekNav;
  private view: AgendaView;
  /** The week's homework from the class's diary (homework entries only), by due day. */
  private homework: DiaryEntry[] = [];
  /** The class's diary: `3B/agenda/x` is class 3B's, as is `3B/homework/diary`. */
  private diary: string;
  private started = false;
  /** Joined once: from then on a reconnection reloads the week shown. */
  private joined = false;
  /** Shown from the offline copy, not joined yet: nothing can be changed. */
  private offline = false;
  /** The offline copy's week was shown once (later, the week is the user's choice). */
  private restored = false;
  private unsubscribe: Array<() => void> = [];

  constructor(
    private client: PreauClient,
    private room: string,
    private hooks: RoomHooks,
    private store: OfflineStore | null = null,
  ) {
    this.diary = diaryOf(room.split("/")[0]);
    this.nav = new WeekNav(() => this.weekChanged());
    this.view = this.emptyView();
    this.root = el("section", { className: "agenda", "data-room": room }, el("h2", { textContent: roomTitle(room) }), this.notice);
    if (isModerator(client.user?.role ?? "")) {
      // Folded: on a phone the form would push the agenda off the screen.
      this.form = this.addForm();
      this.root.append(el("details", { className: "agenda-add" }, el("summary", { textContent: "Ajouter un événement" }), this.form));
    }
    this.root.append(this.nav.root, el("div", { className: "scroller" }, this.listEl));
  }

  /** An empty view of the week the navigation shows: Monday 00:00 to the next Monday 00:00, local time. */
  private emptyView(): AgendaView {
    return new AgendaView(this.room, dateOf(this.nav.monday).getTime(), dateOf(addDays(this.nav.monday, 7)).getTime());
  }

  show(): void {
    if (this.started) {
      // Homework is not followed live (the diary is not joined from here):
      // coming back to the agenda is when it may have changed.
      if (this.joined && this.client.state === "open") void this.reload();
      return;
    }
    this.started = true;
    this.unsubscribe.push(
      this.client.on("event", (ev) => {
        if (this.view.apply(ev)) {
          if (this.view.stale) void this.reload();
          else {
            this.render();
            this.save();
          }
        }
      }),
      // A long disconnection: the events missed are not replayed, so reload.
      this.client.on("reset", ({ room }) => {
        if (room === this.room) void this.reload();
      }),
      // Back online: the week shown may be an offline copy, or stale homework.
      this.client.on("open", () => {
        if (this.joined) void this.reload();
      }),
    );
    void this.start();
  }

  dispose(): void {
    for (const off of this.unsubscribe.splice(0)) off();
  }

  private async start(): Promise<void> {
    // Not connected (the app started offline, or the network is gone): the
    // items kept on the device until the join, which waits for the
    // connection; then the range is loaded again, as at any start.
    if (this.client.state !== "open") await this.restore();
    try {
      // Joined for the live events (a cancellation shows at once).
      await this.client.join(this.room);
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (isUnknownRoom(err)) return this.hooks.unknown();
      if (code === "forbidden") return this.hooks.forbidden();
      if (code !== "already_joined") this.setNotice(errorText(err));
    } finally {
      this.setOffline(false);
    }
    this.joined = true;
    await this.reload();
  }

  private async restore(): Promise<void> {
    this.setOffline(true);
    await this.showCopy();
  }

  /** The offline copy, if it is of the week shown (at first, the copy's week is shown). */
  private async showCopy(): Promise<void> {
    const copy = await this.store?.loadRoom(this.room);
    if (copy?.kind !== "agenda") {
      this.listEl.replaceChildren(el("p", { className: "empty", textContent: "Non disponible hors ligne : cet agenda n'avait pas été chargé." }));
      return;
    }
    // A copy kept before the week view has no week: read as the current one.
    const week = copy.from ?? mondayOf(today());
    if (!this.restored) {
      this.restored = true;
      if (week !== this.nav.monday) {
        this.nav.set(week);
        this.view = this.emptyView();
      }
    }
    if (week !== this.nav.monday) {
      this.listEl.replaceChildren(el("p", { className: "empty", textContent: "Non disponible hors ligne : cette semaine n'avait pas été chargée." }));
      return;
    }
    // Only what falls in the week (an older copy held eight weeks).
    this.view.load({ room: this.room, items: copy.items.filter((i) => (i.ends ?? i.starts) >= this.view.from && i.starts < this.view.to), more: false });
    this.homework = copy.homework ?? [];
    this.render();
  }

  private weekChanged(): void {
    this.view = this.emptyView();
    this.homework = [];
    // Without a connection, the week kept on the device (if it is that one).
    if (this.client.state !== "open") void this.showCopy();
    else void this.reload();
  }

  private setOffline(offline: boolean): void {
    this.offline = offline;
    if (this.submit) this.submit.disabled = offline;
    if (offline) this.setNotice("Hors ligne : lecture seule jusqu'au retour du réseau.");
    else if (this.notice.textContent?.startsWith("Hors ligne")) this.setNotice("");
  }

  /** Keeps the week shown on the device (soon: saves are grouped), once loaded from the server. */
  private save(): void {
    const from = this.nav.monday;
    this.store?.saveRoom(this.room, () => (this.offline ? null : { kind: "agenda", from, items: this.view.list(), homework: this.homework }));
  }

  private async reload(): Promise<void> {
    const monday = this.nav.monday;
    try {
      const [ok, homework] = await Promise.all([agendaList(this.client, this.room, this.view.from, this.view.to, 500), this.loadHomework(monday)]);
      if (monday !== this.nav.monday) return; // another week was asked meanwhile
      const fresh = this.emptyView();
      fresh.load(ok);
      this.view = fresh;
      this.homework = homework;
      this.render();
      this.save();
    } catch (err) {
      this.setNotice(errorText(err));
    }
  }

  /**
   * The homework due in the week of `monday`, from the class's diary. No
   * diary yet (`unknown_room`), a diary the user may not read, or any other
   * failure: no homework, and no error shown, since the agenda is what
   * this page is about.
   */
  private async loadHomework(monday: Day): Promise<DiaryEntry[]> {
    try {
      const ok = await this.client.homework(this.diary, monday, addDays(monday, 6), 500);
      return ok.entries.filter((e) => e.what === "homework" && e.due !== undefined);
    } catch {
      return [];
    }
  }

  private render(): void {
    const items = this.view.list();
    if (items.length === 0 && this.homework.length === 0) {
      this.listEl.replaceChildren(el("p", { className: "empty", textContent: "Rien de prévu cette semaine." }));
      return;
    }
    // An event that began before Monday (several days long) is listed on Monday.
    const events = new Map<Day, AgendaItem[]>();
    for (const item of items) {
      const day = dayOf(new Date(Math.max(item.starts, this.view.from)));
      events.set(day, [...(events.get(day) ?? []), item]);
    }
    const due = new Map<Day, DiaryEntry[]>();
    for (const e of this.homework) due.set(e.due!, [...(due.get(e.due!) ?? []), e]);
    const todayIs = today();
    // All seven days, empty ones too: a week laid out the same every week
    // is quicker to read than a list whose days come and go.
    const days = Array.from({ length: 7 }, (_, n) => addDays(this.nav.monday, n));
    this.listEl.replaceChildren(
      ...days.map((day) => {
        const section = el("section", { className: day === todayIs ? "agenda-day today" : "agenda-day", "data-day": day }, el("h3", { textContent: dayTitle(day) }));
        const dayDue = due.get(day) ?? [];
        const dayEvents = events.get(day) ?? [];
        if (dayDue.length + dayEvents.length === 0) section.append(el("p", { className: "nothing", textContent: "Rien de prévu." }));
        // Homework first: it is what has to be ready when the day starts.
        else section.append(el("ul", { className: "agenda-items" }, ...dayDue.map((e) => this.homeworkEl(e)), ...dayEvents.map((i) => this.itemEl(i))));
        return section;
      }),
    );
  }

  /** « À rendre : [Maths] — Exercices 4 et 5 p. 32 », a button that opens the diary, where the whole entry is. */
  private homeworkEl(e: DiaryEntry): HTMLElement {
    const open = el(
      "button",
      { type: "button", className: "homework-link" },
      "À rendre : ",
      subjectTag(e.subject),
      ` — ${e.text.split("\n")[0]}`,
      el("span", { className: "sr-only", textContent: " (ouvrir le cahier de textes)" }),
    );
    open.addEventListener("click", () => this.hooks.open(this.diary));
    const li = el("li", { className: "agenda-homework", "data-entry": e.entry }, open);
    li.style.borderLeftColor = subjectColour(e.subject);
    return li;
  }

  private itemEl(item: AgendaItem): HTMLElement {
    const when = item.allDay ? "Toute la journée" : item.ends ? `${timeFmt.format(item.starts)} – ${timeFmt.format(item.ends)}` : timeFmt.format(item.starts);
    const li = el(
      "li",
      { className: item.cancelled ? "agenda-item cancelled" : "agenda-item", "data-item": item.item },
      el("p", { className: "when", textContent: when }),
      el("p", { className: "title" }, item.title, item.cancelled ? el("span", { className: "cancelled-tag", textContent: "Annulé" }) : ""),
    );
    if (item.place) li.append(el("p", { className: "place", textContent: `Lieu : ${item.place}` }));
    if (item.details) li.append(el("p", { className: "details", textContent: item.details }));
    if (item.cancelled && item.reason) li.append(el("p", { className: "details", textContent: `Motif : ${item.reason}` }));
    li.append(el("p", { className: "by", textContent: `Ajouté par ${item.by.name}` }));
    if (this.form && !item.cancelled && !this.offline) {
      const cancel = el("button", { type: "button", className: "secondary cancel", textContent: "Annuler l'événement" });
      cancel.addEventListener("click", () => void this.cancel(item));
      li.append(cancel);
    }
    return li;
  }

  private addForm(): HTMLFormElement {
    const title = el("input", { id: "agenda-title", required: true, maxLength: 200, autocomplete: "off" });
    const date = el("input", { id: "agenda-date", type: "date", required: true, value: today() });
    const allDay = el("input", { id: "agenda-all-day", type: "checkbox" });
    const start = el("input", { id: "agenda-start", type: "time", value: "08:00" });
    const end = el("input", { id: "agenda-end", type: "time", value: "09:00" });
    const place = el("input", { id: "agenda-place", maxLength: 200, autocomplete: "off" });
    const details = el("textarea", { id: "agenda-details", rows: 2 });
    const submit = el("button", { type: "submit", textContent: "Ajouter" });
    this.submit = submit;
    const error = el("p", { className: "error", role: "alert" });
    allDay.addEventListener("change", () => (start.disabled = end.disabled = allDay.checked));
    const field = (label: string, input: HTMLElement, id: string) => el("div", { className: "field" }, el("label", { htmlFor: id, textContent: label }), input);
    const form = el(
      "form",
      { className: "agenda-form" },
      field("Intitulé", title, "agenda-title"),
      el("div", { className: "row" }, field("Date", date, "agenda-date"), field("Début", start, "agenda-start"), field("Fin", end, "agenda-end")),
      el("div", { className: "row check" }, allDay, el("label", { htmlFor: "agenda-all-day", textContent: "Toute la journée" })),
      field("Lieu (facultatif)", place, "agenda-place"),
      field("Détails (facultatif)", details, "agenda-details"),
      submit,
      error,
    );
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      error.textContent = "";
      const day = date.valueAsDate ? dateOf(date.value).getTime() : NaN;
      if (!title.value.trim() || Number.isNaN(day)) {
        error.textContent = "Indiquez un intitulé et une date.";
        return;
      }
      const starts = allDay.checked ? day : day + minutes(start.value) * 60_000;
      const ends = allDay.checked ? undefined : day + minutes(end.value) * 60_000;
      if (ends !== undefined && ends < starts) {
        error.textContent = "La fin doit suivre le début.";
        return;
      }
      submit.disabled = true;
      try {
        await agendaAdd(this.client, this.room, { title: title.value.trim(), starts, ends, allDay: allDay.checked, place: place.value.trim() || undefined, details: details.value.trim() || undefined }, crypto.randomUUID());
        title.value = place.value = details.value = "";
        toast(`Événement ajouté (${longDay(date.value)}).`);
        // Added to another week: that week is shown, where the event is.
        this.nav.go(mondayOf(date.value));
      } catch (err) {
        error.textContent = errorText(err);
      } finally {
        submit.disabled = this.offline;
      }
    });
    return form;
  }

  private async cancel(item: AgendaItem): Promise<void> {
    const reason = prompt(`Annuler « ${item.title} » ? Motif (facultatif) :`);
    if (reason === null) return;
    try {
      await agendaCancel(this.client, this.room, item.item, reason.trim() || undefined);
    } catch (err) {
      toast(errorText(err), "error");
    }
  }

  private setNotice(text: string): void {
    this.notice.textContent = text;
    this.notice.hidden = !text;
  }
}



function minutes(hhmm: string): number {
  const [h, m] = hhmm.split(":").map(Number);
  return (h || 0) * 60 + (m || 0);
}

/** « Aujourd'hui, samedi 5 décembre », « Demain, … », « Lundi 7 décembre ». */
function dayTitle(day: Day): string {
  const now = today();
  const name = longDay(day);
  if (day === now) return `Aujourd'hui, ${name}`;
  if (day === addDays(now, 1)) return `Demain, ${name}`;
  return capitalize(name);
}
