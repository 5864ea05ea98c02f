// The homework diary in the web app (a chunk loaded on demand, outside the
// first load): a class's *cahier de textes* week by week, the home page's
// week across classes (« La semaine de mes enfants » for a parent, « À
// faire cette semaine » for a pupil), and the calendar feed's address.
//
// Who sees what is the server's business (protocol/README.md, "Homework
// diary"): a pupil gets their own done marks, a parent their children's,
// a teacher counts. The views show what they are given.

import type { PreauClient, UserInfo } from "../src/client.js";
import { DiaryView, diaryOf, entryDay, type Day, type DiaryEntry, type DueItem, type NewDiaryEntry } from "../src/homework.js";
import { agendaList, type AgendaItem } from "../src/agenda.js";
import { el, errorText, homeTitle, isModerator, isUnknownRoom, roomTitle, toast, helloChildren, type RoomHooks } from "./common.js";
import { HOME_KEY, type OfflineStore } from "./offline.js";
import { WeekNav, addDays, capitalize, dateOf, dayOf, longDay, mondayOf, subjectColour, subjectTag, today } from "./week.js";

// ---- days -------------------------------------------------------------------

const shortFmt = new Intl.DateTimeFormat("fr-FR", { weekday: "short", day: "numeric" });
const timeFmt = new Intl.DateTimeFormat("fr-FR", { hour: "2-digit", minute: "2-digit" });
const untilFmt = new Intl.DateTimeFormat("fr-FR", { day: "numeric", month: "long", year: "numeric" });

/** « mar. 8 ». */
function shortDay(day: Day): string {
  return shortFmt.format(dateOf(day));
}

/** The week of `monday` in words: « cette semaine », « la semaine prochaine »… */
function weekWords(monday: Day): string {
  const current = mondayOf(today());
  if (monday === current) return "cette semaine";
  if (monday === addDays(current, 7)) return "la semaine prochaine";
  if (monday === addDays(current, -7)) return "la semaine dernière";
  return "cette semaine-là";
}

/** « 45 min », « 1 h », « 1 h 15 ». */
export function formatMinutes(m: number): string {
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  const rest = m % 60;
  return rest ? `${h} h ${String(rest).padStart(2, "0")}` : `${h} h`;
}

/** « le lundi 7 décembre à 10:00 ». */
function dayAndTime(ts: number): string {
  const d = new Date(ts);
  return `le ${longDay(dayOf(d))} à ${timeFmt.format(d)}`;
}

/** « 30 min estimées », « 1 h estimée », « 1 h 15 estimées ». */
function estimated(m: number): string {
  return `${formatMinutes(m)} ${m === 1 || m === 60 ? "estimée" : "estimées"}`;
}

/** « 1 élève l'a fait », « 12 élèves l'ont fait ». */
export function doneCountText(n: number): string {
  if (n === 0) return "Aucun élève ne l'a fait pour l'instant";
  return n === 1 ? "1 élève l'a fait" : `${n} élèves l'ont fait`;
}

/** « Ana », « Ana et Léo », « Ana, Léo et Zoé ». */
function names(list: string[]): string {
  return list.length <= 1 ? (list[0] ?? "") : `${list.slice(0, -1).join(", ")} et ${list[list.length - 1]}`;
}

// ---- one entry ------------------------------------------------------------------

interface EntryOptions {
  me: UserInfo;
  /** The viewer may not change anything (offline copy). */
  readOnly: boolean;
  /** A parent's children in this class (whose marks they see). */
  children: Array<{ id: string; name: string }>;
  onDone?: (e: DiaryEntry, done: boolean) => void;
  onEdit?: (e: DiaryEntry) => void;
  onDelete?: (e: DiaryEntry) => void;
}

function linksEl(links: string[]): HTMLElement | null {
  if (links.length === 0) return null;
  return el(
    "ul",
    { className: "entry-links" },
    ...links.map((href) => {
      // Only http(s) addresses reach here (the server refuses others); the
      // page opened knows nothing of the app (noopener, noreferrer).
      const safe = /^https?:\/\//i.test(href);
      return el("li", {}, safe ? el("a", { href, target: "_blank", rel: "noopener noreferrer", textContent: href }) : el("span", { textContent: href }));
    }),
  );
}

function entryEl(e: DiaryEntry, o: EntryOptions): HTMLElement {
  const li = el("li", { className: `diary-entry ${e.what}`, "data-entry": e.entry, "data-what": e.what });
  li.style.borderLeftColor = subjectColour(e.subject);
  li.append(el("p", { className: "entry-head" }, subjectTag(e.subject), e.versions > 1 ? el("span", { className: "edited", textContent: "modifié" }) : ""));
  li.append(el("p", { className: "entry-text", textContent: e.text }));
  const links = linksEl(e.links);
  if (links) li.append(links);
  const meta: string[] = [];
  if (e.what === "homework") {
    meta.push(`Donné le ${longDay(e.date)}`);
    if (e.minutes) meta.push(estimated(e.minutes));
  }
  meta.push(`par ${e.by.name}`);
  li.append(el("p", { className: "entry-meta", textContent: capitalize(meta.join(" · ")) }));
  if (e.publishAt !== undefined) {
    li.append(el("p", { className: "scheduled", textContent: `Publication prévue ${dayAndTime(e.publishAt)}` }));
  }
  if (e.what === "homework") {
    const role = o.me.role;
    if (role === "student") {
      // Entry ids are offsets, per room: the home page lists several diaries.
      const room = (e as Partial<DueItem>).room;
      const id = `done-${room ? `${room.split("/")[0]}-` : ""}${e.entry}`;
      const box = el("input", { type: "checkbox", id, checked: e.done === true, disabled: o.readOnly });
      box.addEventListener("change", () => o.onDone?.(e, box.checked));
      // The label says which item, for a screen reader going from box to box.
      li.append(el("label", { className: "done-check", htmlFor: id }, box, el("span", { textContent: "Fait" }), el("span", { className: "sr-only", textContent: ` : ${e.subject}, ${e.text.slice(0, 80)}` })));
    } else if (role === "parent") {
      const by = new Set(e.doneBy ?? []);
      const kids = o.children.length ? o.children : [...by].map((id) => ({ id, name: id }));
      for (const c of kids) {
        const done = by.has(c.id);
        li.append(el("p", { className: done ? "done-by done" : "done-by", "data-child": c.id, textContent: done ? `✓ Fait par ${c.name}` : `Pas encore fait par ${c.name}` }));
      }
    } else if (e.doneCount !== undefined) {
      const who = e.doneNames?.length ? ` (${names(e.doneNames.map((u) => u.name))})` : "";
      li.append(el("p", { className: "done-count", textContent: `${doneCountText(e.doneCount)}${who}` }));
    }
  }
  if (!o.readOnly && (o.onEdit || o.onDelete)) {
    const actions = el("div", { className: "entry-actions" });
    // Its author writes new versions (staff too); the class's teachers may delete it.
    if (o.onEdit && (e.author.id === o.me.id || o.me.role === "staff")) {
      const edit = el("button", { type: "button", className: "secondary edit", textContent: "Modifier" });
      edit.addEventListener("click", () => o.onEdit!(e));
      actions.append(edit);
    }
    if (o.onDelete) {
      const del = el("button", { type: "button", className: "secondary delete", textContent: "Supprimer" });
      del.addEventListener("click", () => o.onDelete!(e));
      actions.append(del);
    }
    if (actions.childElementCount) li.append(actions);
  }
  return li;
}

/** Entries by day: each day's homework due (« À faire pour le … »), then its lessons (« Séance du … »). */
function daysEl(entries: DiaryEntry[], o: EntryOptions): HTMLElement[] {
  const byDay = new Map<Day, DiaryEntry[]>();
  for (const e of entries) byDay.set(entryDay(e), [...(byDay.get(entryDay(e)) ?? []), e]);
  const todayIs = today();
  return [...byDay.keys()].sort().map((day) => {
    const list = byDay.get(day)!;
    const section = el("section", { className: day === todayIs ? "diary-day today" : "diary-day", "data-day": day });
    const homework = list.filter((e) => e.what === "homework");
    const lessons = list.filter((e) => e.what === "lesson");
    if (homework.length) section.append(el("h3", { textContent: `À faire pour le ${longDay(day)}` }), el("ul", { className: "diary-entries" }, ...homework.map((e) => entryEl(e, o))));
    if (lessons.length) section.append(el("h3", { textContent: `Séance du ${longDay(day)}` }), el("ul", { className: "diary-entries" }, ...lessons.map((e) => entryEl(e, o))));
    return section;
  });
}

/** Re-rendering replaces the elements: keyboard focus goes back to the same control. */
function keepingFocus(container: HTMLElement, render: () => void): void {
  const active = document.activeElement;
  const id = active instanceof HTMLElement && container.contains(active) ? active.id : "";
  render();
  if (id) document.getElementById(id)?.focus();
}

// ---- the calendar feed ------------------------------------------------------

/**
 * « Abonner mon agenda »: the address of the user's calendar feed (their
 * classes' agenda and the homework due), to paste in a phone's calendar.
 * The server keeps one feed per user: asking gives its address again;
 * asking for a new one stops every address of the old one.
 */
export function calendarCard(client: PreauClient): HTMLElement {
  const role = client.user?.role;
  const what =
    role === "parent"
      ? "Les événements des classes de vos enfants et leurs devoirs à rendre"
      : role === "student"
        ? "Les événements de votre classe et vos devoirs à rendre"
        : "Les événements de vos classes et les devoirs à rendre";
  const status = el("p", { className: "feed-status", role: "status" });
  const address = el("input", { id: "feed-url", readOnly: true, spellcheck: false });
  const copy = el("button", { type: "button", className: "secondary", textContent: "Copier l'adresse" });
  const webcal = el("a", { className: "button", id: "feed-webcal", textContent: "Ouvrir dans mon agenda" });
  const until = el("p", { className: "feed-until" });
  const shown = el("div", { className: "feed-address", hidden: true }, el("label", { htmlFor: "feed-url", textContent: "Adresse de mon agenda" }), address, el("div", { className: "row" }, copy, webcal), until);
  const get = el("button", { type: "button", id: "feed-get", textContent: "Obtenir l'adresse" });
  const revoke = el("button", { type: "button", id: "feed-revoke", className: "danger", textContent: "Révoquer l'adresse" });
  get.addEventListener("click", async () => {
    // First click: the active address (or a first one). Once shown, the
    // button asks for a new one, which stops the old one.
    const fresh = !shown.hidden;
    if (fresh && !confirm("Une nouvelle adresse remplace l'actuelle : les agendas abonnés à l'ancienne ne recevront plus rien. Continuer ?")) return;
    get.disabled = true;
    try {
      const feed = await client.calendarFeed(fresh);
      // https behind the school's proxy (the page's own origin); webcal:// asks the phone to subscribe.
      address.value = `${location.origin}${feed.path}`;
      webcal.href = `webcal://${location.host}${feed.path}`;
      until.textContent = `Valable jusqu'au ${untilFmt.format(new Date(feed.expires))}, ou jusqu'à sa révocation.`;
      shown.hidden = false;
      get.textContent = "Obtenir une nouvelle adresse";
      status.textContent = "";
    } catch (err) {
      status.textContent = errorText(err);
    } finally {
      get.disabled = false;
    }
  });
  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(address.value);
      status.textContent = "Adresse copiée.";
    } catch {
      // No clipboard (an insecure page, a refusal): selected, for a long press.
      address.select();
      status.textContent = "Sélectionnez l'adresse pour la copier.";
    }
  });
  revoke.addEventListener("click", async () => {
    if (!confirm("Révoquer l'adresse de votre agenda ? Les agendas abonnés ne recevront plus rien.")) return;
    revoke.disabled = true;
    try {
      const { revoked } = await client.calendarFeedRevoke();
      shown.hidden = true;
      address.value = "";
      get.textContent = "Obtenir l'adresse";
      status.textContent = revoked ? "Adresse révoquée : elle ne donne plus accès à votre agenda." : "Aucune adresse n'était active.";
    } catch (err) {
      status.textContent = errorText(err);
    } finally {
      revoke.disabled = false;
    }
  });
  return el(
    "section",
    { className: "feed-card", "aria-labelledby": "feed-title" },
    el("h3", { id: "feed-title", textContent: "Abonner mon agenda" }),
    el("p", {
      textContent: `${what}, dans l'agenda de votre téléphone ; toute personne qui connaît cette adresse peut lire cet agenda, sans se connecter : ne la partagez pas.`,
    }),
    // Once shown, the address comes first: it is what the user came for.
    shown,
    el("div", { className: "row" }, get, revoke),
    status,
  );
}

// ---- a class's diary ----------------------------------------------------------

export class DiaryRoomView {
  root: HTMLElement;
  private nav: WeekNav;
  private daysEl = el("div", { className: "diary-days" });
  private notice = el("p", { className: "notice", hidden: true });
  private view: DiaryView;
  private started = false;
  /** Shown from the offline copy, not joined yet: nothing can be changed. */
  private offline = false;
  private unsubscribe: Array<() => void> = [];
  private me: UserInfo;
  /** A parent's children in this class, named (from the token and the server's labels). */
  private children: Array<{ id: string; name: string }> = [];
  private form?: EntryForm;

  constructor(
    private client: PreauClient,
    private room: string,
    private hooks: RoomHooks,
    private store: OfflineStore | null = null,
  ) {
    this.me = client.user!;
    this.nav = new WeekNav(() => void this.reload());
    this.view = new DiaryView(room, this.nav.monday, this.nav.sunday, this.me.id);
    this.root = el("section", { className: "diary", "data-room": room }, el("h2", { textContent: roomTitle(room) }), this.notice);
    if (isModerator(this.me.role)) {
      this.form = new EntryForm(client, room, () => this.subjects());
      this.root.append(this.form.root);
    }
    this.root.append(this.nav.root, this.daysEl);
    // A parent's and a pupil's address is on their home page; a teacher has none.
    if (isModerator(this.me.role)) {
      this.root.append(el("details", { className: "feed-fold" }, el("summary", { textContent: "Abonner mon agenda" }), calendarCard(client)));
    }
    const cls = room.split("/")[0];
    this.children = helloChildren(client)
      .filter((c) => !c.classes?.length || c.classes.includes(cls))
      .map((c) => ({ id: c.id, name: c.name ?? c.id }));
  }

  show(): void {
    if (this.started) {
      // Teachers get no marks live, only counts: fresh ones when they come back.
      if (isModerator(this.me.role) && this.client.state === "open") void this.reload();
      return;
    }
    this.started = true;
    this.unsubscribe.push(
      this.client.on("event", (ev) => {
        if (!this.view.apply(ev)) return;
        if (this.view.stale) void this.reload();
        else {
          this.render();
          this.save();
        }
      }),
      // A long disconnection: the events missed are not replayed, so reload.
      this.client.on("reset", ({ room }) => {
        if (room === this.room) void this.reload();
      }),
    );
    void this.start();
  }

  dispose(): void {
    for (const off of this.unsubscribe.splice(0)) off();
  }

  private async start(): Promise<void> {
    if (this.client.state !== "open") await this.restore();
    try {
      // Joined for the live events, to write entries and to mark them done.
      await this.client.join(this.room);
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (isUnknownRoom(err)) return this.hooks.unknown();
      if (code === "forbidden") return this.hooks.forbidden();
      if (code !== "already_joined") this.setNotice(errorText(err));
    }
    this.setOffline(false);
    await this.reload();
  }

  private async restore(): Promise<void> {
    this.setOffline(true);
    const copy = await this.store?.loadRoom(this.room);
    if (copy?.kind !== "homework") {
      this.daysEl.replaceChildren(el("p", { className: "empty", textContent: "Non disponible hors ligne : ce cahier de textes n'avait pas été chargé." }));
      return;
    }
    // The week that was kept is the one shown.
    this.nav.set(copy.from);
    this.view = new DiaryView(this.room, copy.from, copy.to, this.me.id);
    this.view.load({ room: this.room, entries: copy.entries, more: false });
    if (copy.children?.length) this.children = copy.children;
    this.render();
  }

  private setOffline(offline: boolean): void {
    this.offline = offline;
    this.form?.setOffline(offline);
    if (offline) this.setNotice("Hors ligne : lecture seule jusqu'au retour du réseau.");
    else if (this.notice.textContent?.startsWith("Hors ligne")) this.setNotice("");
  }

  private save(): void {
    const { from, to } = this.view;
    this.store?.saveRoom(this.room, () => (this.offline ? null : { kind: "homework", from, to, entries: this.view.list(), children: this.children }));
  }

  private async reload(): Promise<void> {
    if (this.offline && this.client.state !== "open") return;
    const from = this.nav.monday;
    const to = this.nav.sunday;
    try {
      const [ok, due] = await Promise.all([
        this.client.homework(this.room, from, to, 500),
        // A parent's children in this class, as the server labels them.
        this.me.role === "parent" ? this.client.homeworkDue(from, to, 500).catch(() => null) : null,
      ]);
      if (from !== this.nav.monday) return; // another week was asked meanwhile
      for (const item of due?.items ?? []) {
        if (item.room !== this.room) continue;
        for (const c of item.children) if (!this.children.some((k) => k.id === c.id)) this.children.push(c);
      }
      const fresh = new DiaryView(this.room, from, to, this.me.id);
      fresh.load(ok);
      this.view = fresh;
      this.render();
      this.save();
    } catch (err) {
      this.setNotice(errorText(err));
    }
  }

  private subjects(): string[] {
    return [...new Set(this.view.list().map((e) => e.subject))].sort();
  }

  private render(): void {
    const entries = this.view.list();
    const teacher = isModerator(this.me.role);
    const options: EntryOptions = {
      me: this.me,
      readOnly: this.offline,
      children: this.children,
      onDone: (e, done) => void this.mark(e, done),
      onEdit: teacher ? (e) => this.form?.edit(e) : undefined,
      onDelete: teacher ? (e) => void this.remove(e) : undefined,
    };
    keepingFocus(this.daysEl, () =>
      this.daysEl.replaceChildren(...(entries.length ? daysEl(entries, options) : [el("p", { className: "empty", textContent: `Aucune entrée du ${longDay(this.view.from)} au ${longDay(this.view.to)}.` })])),
    );
  }

  private async mark(e: DiaryEntry, done: boolean): Promise<void> {
    try {
      await this.client.homeworkDone(this.room, e.entry, done);
      // The server sends the mark back as an event: the view follows it.
    } catch (err) {
      toast(errorText(err), "error");
      this.render(); // the box as it was
    }
  }

  private async remove(e: DiaryEntry): Promise<void> {
    const what = e.what === "homework" ? "ce travail" : "cette séance";
    if (!confirm(`Supprimer ${what} (${e.subject}) ? L'entrée disparaîtra du cahier de textes des élèves et des parents, toutes ses versions avec elle.`)) return;
    try {
      await this.client.homeworkDelete(this.room, e.entry);
      toast("Entrée supprimée.");
    } catch (err) {
      toast(errorText(err), "error");
    }
  }

  private setNotice(text: string): void {
    this.notice.textContent = text;
    this.notice.hidden = !text;
  }
}

// ---- the teacher's form -------------------------------------------------------

/**
 * « Nouvelle entrée »: a lesson or homework. As the teacher picks the due
 * day, the form shows what is already due that day and the days around it
 * (`homework_load`), before they add to it.
 */
class EntryForm {
  root: HTMLDetailsElement;
  private form: HTMLFormElement;
  private title = el("h3", { textContent: "Nouvelle entrée" });
  private what = el("select", { id: "hw-what" }, el("option", { value: "homework", textContent: "Travail à faire" }), el("option", { value: "lesson", textContent: "Séance (ce qui a été fait en classe)" }));
  private subject = el("input", { id: "hw-subject", required: true, maxLength: 100, autocomplete: "off" });
  private subjectList = el("datalist", { id: "hw-subjects" });
  private text = el("textarea", { id: "hw-text", required: true, rows: 3 });
  private dateLabel = el("label", { htmlFor: "hw-date", textContent: "Donné le" });
  private date = el("input", { id: "hw-date", type: "date", required: true });
  private due = el("input", { id: "hw-due", type: "date" });
  private minutes = el("input", { id: "hw-minutes", type: "number", min: "1", max: "600", step: "1", inputMode: "numeric" });
  private links = el("textarea", { id: "hw-links", rows: 2, placeholder: "https://…", spellcheck: false });
  private publish = el("input", { id: "hw-publish", type: "datetime-local" });
  private publishField: HTMLElement;
  private load = el("div", { className: "hw-load", id: "hw-load", role: "status" });
  private submit = el("button", { type: "submit", textContent: "Ajouter au cahier de textes" });
  private cancel = el("button", { type: "button", className: "secondary", textContent: "Annuler la modification", hidden: true });
  private error = el("p", { className: "error", role: "alert" });
  private homeworkOnly: HTMLElement[];
  /** The entry being changed (a new version), if any. */
  private editing?: DiaryEntry;
  private loadTimer: ReturnType<typeof setTimeout> | null = null;
  private offline = false;

  constructor(
    private client: PreauClient,
    private room: string,
    private subjects: () => string[],
  ) {
    this.subject.setAttribute("list", "hw-subjects");
    const field = (label: HTMLElement | string, input: HTMLElement, id: string, extra?: HTMLElement) =>
      el("div", { className: "field" }, typeof label === "string" ? el("label", { htmlFor: id, textContent: label }) : label, input, ...(extra ? [extra] : []));
    const dueField = field("Pour le", this.due, "hw-due");
    const minutesField = field("Durée estimée (minutes)", this.minutes, "hw-minutes");
    this.homeworkOnly = [dueField, minutesField, this.load];
    const publishHint = el("p", { className: "hint", id: "hw-publish-hint", textContent: "Vide : visible tout de suite. Sinon, jusque-là, l'entrée n'est visible que de vous et du personnel de l'établissement." });
    this.publish.setAttribute("aria-describedby", "hw-publish-hint");
    this.publishField = field("Publier à (facultatif)", this.publish, "hw-publish", publishHint);
    this.form = el(
      "form",
      { className: "diary-form" },
      this.title,
      field("Type", this.what, "hw-what"),
      field("Matière", this.subject, "hw-subject"),
      this.subjectList,
      field("Texte", this.text, "hw-text"),
      el("div", { className: "row" }, field(this.dateLabel, this.date, "hw-date"), dueField),
      this.load,
      minutesField,
      field("Liens (un par ligne, facultatif)", this.links, "hw-links"),
      this.publishField,
      el("div", { className: "row" }, this.submit, this.cancel),
      this.error,
    );
    this.root = el("details", { className: "diary-new" }, el("summary", { textContent: "Nouvelle entrée" }), this.form);
    this.reset();
    this.what.addEventListener("change", () => this.kindChanged());
    for (const ev of ["input", "change"]) this.due.addEventListener(ev, () => this.dueChanged());
    this.root.addEventListener("toggle", () => {
      if (this.root.open) this.subjectList.replaceChildren(...this.subjects().map((s) => el("option", { value: s })));
    });
    this.cancel.addEventListener("click", () => this.reset());
    this.form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      void this.send();
    });
  }

  setOffline(offline: boolean): void {
    this.offline = offline;
    this.submit.disabled = offline;
  }

  /** Changing one's entry: the form holds it, and sends a new version. */
  edit(e: DiaryEntry): void {
    this.editing = e;
    this.title.textContent = `Modifier l'entrée (${e.subject})`;
    this.what.value = e.what;
    this.subject.value = e.subject;
    this.text.value = e.text;
    this.date.value = e.date;
    this.due.value = e.due ?? "";
    this.minutes.value = e.minutes ? String(e.minutes) : "";
    this.links.value = e.links.join("\n");
    // Once public, an entry has no publication time any more (the server refuses one).
    this.publishField.hidden = e.publishAt === undefined;
    this.publish.value = e.publishAt !== undefined ? localDateTime(e.publishAt) : "";
    this.submit.textContent = "Enregistrer la modification";
    this.cancel.hidden = false;
    this.root.open = true;
    this.kindChanged();
    this.subject.focus();
    this.root.scrollIntoView({ block: "start" });
  }

  private reset(): void {
    this.editing = undefined;
    this.form.reset();
    this.title.textContent = "Nouvelle entrée";
    this.date.value = today();
    this.publishField.hidden = false;
    this.submit.textContent = "Ajouter au cahier de textes";
    this.cancel.hidden = true;
    this.error.textContent = "";
    this.kindChanged();
  }

  private kindChanged(): void {
    const homework = this.what.value === "homework";
    for (const f of this.homeworkOnly) f.hidden = !homework;
    this.due.required = homework;
    this.dateLabel.textContent = homework ? "Donné le" : "Date de la séance";
    this.dueChanged();
  }

  private dueChanged(): void {
    if (this.loadTimer) clearTimeout(this.loadTimer);
    if (this.what.value !== "homework" || !/^\d{4}-\d{2}-\d{2}$/.test(this.due.value)) {
      this.load.replaceChildren();
      return;
    }
    this.loadTimer = setTimeout(() => void this.showLoad(this.due.value), 150);
  }

  /** The homework already due on `day` and the three days either side. */
  private async showLoad(day: Day): Promise<void> {
    try {
      const ok = await this.client.homeworkLoad(this.room, addDays(day, -3), addDays(day, 3));
      if (this.due.value !== day) return; // another day picked meanwhile
      const load = new Map(ok.days.map((d) => [d.date, { ...d }]));
      // The entry being changed is not extra work on its own day.
      const e = this.editing;
      if (e?.what === "homework" && e.due && load.has(e.due)) {
        const d = load.get(e.due)!;
        d.items -= 1;
        if (e.minutes) d.minutes -= e.minutes;
        else d.unestimated -= 1;
      }
      const line = (d: Day) => {
        const l = load.get(d);
        if (!l || l.items <= 0) return null;
        const est = l.minutes > 0 ? estimated(l.minutes) : "";
        const unest = l.unestimated > 0 ? `${l.unestimated === l.items ? "sans estimation" : `dont ${l.unestimated} sans estimation`}` : "";
        return { n: l.items, detail: [est, unest].filter(Boolean).join(", ") };
      };
      const main = line(day);
      const heading = main
        ? `Déjà ${main.n} ${main.n === 1 ? "travail" : "travaux"} pour le ${longDay(day)}${main.detail ? ` (${main.detail})` : ""}`
        : `Rien n'est encore à faire pour le ${longDay(day)}.`;
      const around = [-3, -2, -1, 1, 2, 3].map((n) => addDays(day, n));
      this.load.replaceChildren(
        el("p", { className: main ? "load-day busy" : "load-day", textContent: heading }),
        el(
          "ul",
          { className: "load-around", "aria-label": "Les jours autour" },
          ...around.map((d) => {
            const l = line(d);
            return el("li", { className: l ? "busy" : "" }, el("b", { textContent: `${capitalize(shortDay(d))} : ` }), l ? `${l.n} ${l.n === 1 ? "travail" : "travaux"}${l.detail ? ` (${l.detail})` : ""}` : "rien");
          }),
        ),
      );
    } catch (err) {
      this.load.replaceChildren(el("p", { textContent: `Charge de travail indisponible : ${errorText(err)}` }));
    }
  }

  private async send(): Promise<void> {
    this.error.textContent = "";
    const homework = this.what.value === "homework";
    const subject = this.subject.value.trim();
    const text = this.text.value.trim();
    const links = this.links.value.split(/\s+/).filter(Boolean);
    if (!subject || !text || !this.date.value) return void (this.error.textContent = "Indiquez la matière, le texte et la date.");
    if (homework && !this.due.value) return void (this.error.textContent = "Indiquez pour quel jour le travail est à faire.");
    if (homework && this.due.value < this.date.value) return void (this.error.textContent = "Le travail ne peut pas être à faire avant le jour où il est donné.");
    if (links.some((l) => !/^https?:\/\/\S+$/i.test(l))) return void (this.error.textContent = "Les liens doivent commencer par http:// ou https://.");
    if (links.length > 10) return void (this.error.textContent = "Dix liens au plus.");
    const minutes = homework && this.minutes.value ? Number(this.minutes.value) : undefined;
    if (minutes !== undefined && !(Number.isInteger(minutes) && minutes >= 1 && minutes <= 600)) return void (this.error.textContent = "La durée estimée va de 1 à 600 minutes.");
    // A time already past publishes at once, as no time does.
    const at = !this.publishField.hidden && this.publish.value ? new Date(this.publish.value).getTime() : undefined;
    const publishAt = at !== undefined && at > Date.now() ? at : undefined;
    const fields: NewDiaryEntry = { what: homework ? "homework" : "lesson", subject, text, date: this.date.value, due: homework ? this.due.value : undefined, minutes, links, publishAt };
    this.submit.disabled = true;
    try {
      const editing = this.editing;
      await this.client.homeworkWrite(this.room, fields, editing ? { entry: editing.entry } : { key: crypto.randomUUID() });
      const day = homework ? fields.due! : fields.date;
      const when = publishAt ? `, publication prévue ${dayAndTime(publishAt)}` : "";
      toast(`${editing ? "Entrée modifiée" : "Entrée ajoutée"} (${homework ? "à faire pour le" : "séance du"} ${longDay(day)})${when}.`);
      const keep = { what: this.what.value, subject, date: this.date.value };
      this.reset();
      // The next entry is often of the same lesson: its kind, subject and day stay.
      if (!editing) {
        this.what.value = keep.what;
        this.subject.value = keep.subject;
        this.date.value = keep.date;
        this.kindChanged();
      } else {
        this.root.open = false;
      }
    } catch (err) {
      this.error.textContent = errorText(err);
    } finally {
      this.submit.disabled = this.offline;
    }
  }
}

/** A time as a datetime-local input takes it (local, to the minute). */
function localDateTime(ts: number): string {
  const d = new Date(ts);
  return `${dayOf(d)}T${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
}

// ---- the home page ------------------------------------------------------------

/**
 * The first screen of a parent (« La semaine de mes enfants »), and a
 * pupil's week (« À faire cette semaine »): the homework due in the week
 * across their classes (`homework_due`: a parent's labelled by child), the
 * week's agenda of those classes, and the calendar address. Live: the
 * diaries of the classes are joined, and what happens in them reloads
 * the week.
 */
export class HomeView {
  root: HTMLElement;
  private nav: WeekNav;
  private content = el("div", { className: "home-week" });
  private agendaEl = el("div", { className: "home-agenda" });
  private notice = el("p", { className: "notice", hidden: true });
  private items: DueItem[] = [];
  private agenda: Array<AgendaItem & { room: string }> = [];
  private started = false;
  private offline = false;
  private unsubscribe: Array<() => void> = [];
  private reloadTimer: ReturnType<typeof setTimeout> | null = null;
  private me: UserInfo;
  private diaries: string[];

  constructor(
    private client: PreauClient,
    private store: OfflineStore | null,
    /** The agenda rooms of the user's classes, as the directory lists them. */
    private agendaRooms: string[] = [],
  ) {
    this.me = client.user!;
    this.diaries = (client.hello?.classes ?? []).map(diaryOf);
    this.nav = new WeekNav(() => void this.reload());
    this.root = el(
      "section",
      { className: "home", "data-room": HOME_KEY },
      el("h2", { textContent: homeTitle(this.me.role) }),
      this.notice,
      this.nav.root,
      this.content,
      el("h3", { className: "home-agenda-title", textContent: "Agenda de la semaine" }),
      this.agendaEl,
      calendarCard(client),
    );
  }

  /** The directory was loaded (again): the agenda rooms may have changed. */
  roomsChanged(rooms: string[]): void {
    const agendas = rooms.filter((r) => r.split("/")[1] === "agenda");
    if (agendas.join() === this.agendaRooms.join()) return;
    this.agendaRooms = agendas;
    if (this.started && !this.offline) void this.reloadAgenda();
  }

  show(): void {
    if (this.started) {
      if (this.client.state === "open") void this.reload();
      return;
    }
    this.started = true;
    this.unsubscribe.push(
      this.client.on("event", (ev) => {
        if (!this.diaries.includes(ev.room)) return;
        const k = ev.body.kind;
        if (k === "homework_entry" || k === "homework_publish" || k === "homework_done" || k === "moderation") this.reloadSoon();
      }),
      this.client.on("open", () => this.reloadSoon()),
    );
    void this.start();
  }

  dispose(): void {
    for (const off of this.unsubscribe.splice(0)) off();
    if (this.reloadTimer) clearTimeout(this.reloadTimer);
  }

  private async start(): Promise<void> {
    if (this.client.state !== "open") await this.restore();
    // The diaries are joined for their live events (and, for a pupil, to
    // mark homework done from here). A class without a diary yet is
    // `unknown_room`: nothing to follow there.
    await Promise.all(this.diaries.map((room) => this.client.join(room).catch(() => undefined)));
    this.offline = false;
    this.setNotice("");
    await this.reload();
  }

  private async restore(): Promise<void> {
    this.offline = true;
    const copy = await this.store?.loadRoom(HOME_KEY);
    if (copy?.kind !== "week") {
      this.content.replaceChildren(el("p", { className: "empty", textContent: "Non disponible hors ligne : cette semaine n'avait pas été chargée." }));
      return;
    }
    this.nav.set(copy.from);
    this.items = copy.items;
    this.agenda = copy.agenda;
    this.setNotice("Hors ligne : la semaine telle qu'elle était chargée, en lecture seule.");
    this.render();
    this.renderAgenda();
  }

  private reloadSoon(): void {
    if (this.reloadTimer) clearTimeout(this.reloadTimer);
    this.reloadTimer = setTimeout(() => void this.reload(), 300);
  }

  private async reload(): Promise<void> {
    if (this.client.state !== "open") return;
    const from = this.nav.monday;
    try {
      const due = await this.client.homeworkDue(from, this.nav.sunday, 500);
      if (from !== this.nav.monday) return;
      this.items = due.items;
      this.render();
      this.save();
    } catch (err) {
      this.setNotice(errorText(err));
    }
    await this.reloadAgenda();
  }

  private async reloadAgenda(): Promise<void> {
    const from = this.nav.monday;
    const start = dateOf(from).getTime();
    const end = dateOf(addDays(from, 7)).getTime();
    const lists = await Promise.all(
      this.agendaRooms.map((room) =>
        agendaList(this.client, room, start, end, 200).then(
          (ok) => ok.items.map((i) => ({ ...i, room })),
          () => [],
        ),
      ),
    );
    if (from !== this.nav.monday) return;
    this.agenda = lists.flat().sort((a, b) => a.starts - b.starts || a.item - b.item);
    this.renderAgenda();
    this.save();
  }

  private save(): void {
    this.store?.saveRoom(HOME_KEY, () => (this.offline ? null : { kind: "week", from: this.nav.monday, to: this.nav.sunday, items: this.items, agenda: this.agenda }));
  }

  /** A parent: a section per child. A pupil (and others): one list. */
  private render(): void {
    const options: EntryOptions = { me: this.me, readOnly: this.offline, children: [], onDone: (e, done) => void this.mark(e as DueItem, done) };
    const several = new Set(this.items.map((i) => i.class)).size > 1 || (this.client.hello?.classes.length ?? 0) > 1;
    if (this.me.role !== "parent") {
      keepingFocus(this.content, () =>
        this.content.replaceChildren(...(this.items.length ? this.byDay(this.items, options, several) : [el("p", { className: "empty", textContent: `Aucun travail à faire ${weekWords(this.nav.monday)}.` })])),
      );
      return;
    }
    const children = this.children();
    if (children.length === 0) {
      this.content.replaceChildren(el("p", { className: "empty", textContent: "Aucun enfant n'est associé à votre compte." }));
      return;
    }
    this.content.replaceChildren(
      ...children.map((c) => {
        const theirs = this.items.filter((i) => i.children.some((k) => k.id === c.id));
        const classes = c.classes?.length ? ` (${c.classes.join(", ")})` : "";
        return el(
          "section",
          { className: "child-week", "data-child": c.id },
          el("h3", { textContent: `${c.name}${classes}` }),
          ...(theirs.length ? this.byDay(theirs, { ...options, children: [{ id: c.id, name: c.name }] }, false) : [el("p", { className: "empty", textContent: `Aucun travail à faire pour ${c.name} ${weekWords(this.nav.monday)}.` })]),
        );
      }),
    );
  }

  /** A parent's children: those `hello` gives, and any the server labelled. */
  private children(): Array<{ id: string; name: string; classes?: string[] }> {
    const list = helloChildren(this.client).map((c) => ({ id: c.id, name: c.name ?? c.id, classes: c.classes }));
    for (const item of this.items) {
      for (const k of item.children) if (!list.some((c) => c.id === k.id)) list.push({ ...k, classes: [item.class] });
    }
    return list;
  }

  private byDay(items: DueItem[], options: EntryOptions, withClass: boolean): HTMLElement[] {
    const days = new Map<Day, DueItem[]>();
    for (const i of items) days.set(entryDay(i), [...(days.get(entryDay(i)) ?? []), i]);
    return [...days.keys()].sort().map((day) =>
      el(
        "section",
        { className: "diary-day", "data-day": day },
        el("h4", { textContent: `À faire pour le ${longDay(day)}` }),
        el(
          "ul",
          { className: "diary-entries" },
          ...days.get(day)!.map((i) => {
            const li = entryEl(i, options);
            li.dataset.room = i.room;
            if (withClass) li.querySelector(".entry-head")?.append(el("span", { className: "class-tag", textContent: i.class }));
            return li;
          }),
        ),
      ),
    );
  }

  private renderAgenda(): void {
    if (this.agenda.length === 0) {
      this.agendaEl.replaceChildren(el("p", { className: "empty", textContent: `Rien à l'agenda ${weekWords(this.nav.monday)}.` }));
      return;
    }
    this.agendaEl.replaceChildren(
      el(
        "ul",
        { className: "agenda-items" },
        ...this.agenda.map((i) => {
          const day = longDay(dayOf(new Date(i.starts)));
          const when = i.allDay ? capitalize(day) : `${capitalize(day)}, ${timeFmt.format(i.starts)}${i.ends ? ` – ${timeFmt.format(i.ends)}` : ""}`;
          return el(
            "li",
            { className: i.cancelled ? "agenda-item cancelled" : "agenda-item", "data-item": i.item },
            el("p", { className: "when", textContent: `${when} · ${i.room.split("/")[0]}` }),
            el("p", { className: "title" }, i.title, i.cancelled ? el("span", { className: "cancelled-tag", textContent: "Annulé" }) : ""),
            ...(i.place ? [el("p", { className: "place", textContent: `Lieu : ${i.place}` })] : []),
          );
        }),
      ),
    );
  }

  private async mark(item: DueItem, done: boolean): Promise<void> {
    try {
      await this.client.homeworkDone(item.room, item.entry, done);
      item.done = done;
    } catch (err) {
      toast(errorText(err), "error");
      this.render();
    }
  }

  private setNotice(text: string): void {
    this.notice.textContent = text;
    this.notice.hidden = !text;
  }
}
