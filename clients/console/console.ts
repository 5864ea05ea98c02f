// Teacher console: one room's live room_view (members, mutes, bans, message
// rate, open reports), one-click moderation, and the class's audit log. For
// a forum: opening it and its settings (`configure`), and its threads with
// lock, pin and delete. For the homework diary: this week's entries and
// how many pupils marked each one done (read-only: entries are written in
// the app). « Annonces »: the app's announcements view, unfolded on demand.

import type { EventFrame, Flavour, ModerationAction, PreauClient, RoomView, UserInfo } from "../src/client.js";
import { ThreadList } from "../src/forum.js";
import type { DiaryEntry } from "../src/homework.js";
import {
  FLAVOUR_LABELS,
  connectionBadge,
  downloadFile,
  el,
  errorText,
  formatDuration,
  formatTime,
  isUnknownRoom,
  moderationText,
  roomTitle,
  signIn,
  signOut,
  toast,
  userLabel,
} from "../web/common.js";

const ROOM_KEY = "preau.console.room";
/** A join refused with `unknown_room`: only a teacher of the room's class (or staff) opens a room. */
const UNKNOWN_ROOM_CONSOLE = "Ce salon n'existe pas encore : seul un enseignant de la classe (ou le personnel) peut l'ouvrir.";

const ROOM_RE = /^([A-Za-z0-9_-]{1,32})\/(chat|notes|forum|homework)\/[A-Za-z0-9_.-]{1,64}$/;

class Console {
  private room?: string;
  private audit?: string;
  private view?: RoomView;
  private messages = new Map<number, EventFrame>();
  private auditEntries = new Map<number, EventFrame>();
  private refreshTimer: ReturnType<typeof setTimeout> | null = null;

  private grid = el("div", { className: "console" });
  private stats = el("div", { className: "stats" });
  private membersBody = el("tbody");
  /**
   * Mutes, kicks and bans reach the pupil and the adults only; the teacher
   * may choose to tell the class (`announce`), for this action only: the
   * box unticks itself after each use, so nobody is shamed by a setting
   * left on.
   */
  private announce = el("input", { type: "checkbox", id: "announce" });
  private reportsBody = el("tbody");
  private messagesBody = el("tbody");
  private auditList = el("ol", { className: "audit" });
  private title = el("h2", { textContent: "" });
  /** The room last asked for (marked in the list, which may load after it). */
  private selected?: string;
  private directory = el("nav", { className: "console-rooms", "aria-label": "Salons de mes classes" });

  // Forum rooms only.
  private forum?: { room: string; opened: boolean; list: ThreadList };
  private forumCard = el("section", { className: "card wide forum-card", hidden: true });
  // Notes rooms only: validate the note as it is, list its versions, export them.
  private notesCard = el("section", { className: "card wide notes-card", hidden: true });
  private versionsList = el("ol", { className: "versions" });
  // The homework diary only: this week's entries with their done counts.
  private diaryCard = el("section", { className: "card wide diary-card", hidden: true });
  private diaryBody = el("tbody");
  private forumStatus = el("p", { className: "forum-status" });
  private flavourSelect = el("select", { id: "forum-flavour" });
  private classesInput = el("input", { id: "forum-classes", placeholder: "ex. 5C, 4A", autocomplete: "off" });
  private moderatorsInput = el("input", { id: "forum-moderators", placeholder: "identifiants, ex. t-martin", autocomplete: "off" });
  private forumSave = el("button", { type: "submit", id: "forum-save", textContent: "Ouvrir le forum" });
  private threadsBody = el("tbody");
  private threadsTable = el("table", {}, el("thead", {}, el("tr", {}, el("th", { textContent: "Sujet" }), el("th", { textContent: "Actions" }))), this.threadsBody);
  private moreThreads = el("button", { type: "button", className: "secondary", textContent: "Plus de sujets", hidden: true });
  // The cards about a room's members and messages: hidden while a forum is not opened.
  private roomCards: HTMLElement[] = [];

  constructor(
    private client: PreauClient,
    private root: HTMLElement,
  ) {}

  start(): void {
    const me = this.client.user!;
    const logout = el("button", { className: "secondary", textContent: "Se déconnecter" });
    logout.addEventListener("click", () => signOut(this.client));
    const header = el(
      "header",
      {},
      el("h1", { textContent: "préau · console enseignant" }),
      el("span", { className: "me", textContent: userLabel(me) }),
      connectionBadge(this.client),
      logout,
    );
    if (me.role !== "teacher" && me.role !== "staff") {
      this.root.replaceChildren(header, el("p", { className: "empty", textContent: "La console est réservée aux enseignants et au personnel." }));
      return;
    }

    // Rooms are picked from the class's list; a name is typed only to open
    // a new forum or a room of another class (staff), folded away.
    const input = el("input", { id: "console-room", placeholder: "3B/forum/aide", autocomplete: "off" });
    input.value = new URLSearchParams(location.search).get("room") ?? localStorage.getItem(ROOM_KEY) ?? "";
    const typed = el(
      "details",
      { className: "console-typed" },
      el("summary", { textContent: "Autre salon (nouveau forum, autre classe)" }),
      el("label", { htmlFor: "console-room", textContent: "Nom du salon" }),
      input,
      el("button", { type: "submit", textContent: "Ouvrir" }),
    );
    const form = el("form", { className: "console-bar" }, this.directory, typed);
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      void this.open(input.value.trim());
    });
    void this.listRooms();

    const table = (head: string[], body: HTMLElement) =>
      el("table", {}, el("thead", {}, el("tr", {}, ...head.map((h) => el("th", { textContent: h })))), body);
    this.roomCards = [
      el(
        "section",
        { className: "card" },
        el("h3", { textContent: "Membres" }),
        el("p", { className: "announce" }, this.announce, " ", el("label", { htmlFor: "announce", textContent: "Prévenir toute la classe de la prochaine sourdine ou exclusion (sinon, seuls l'élève et les adultes sont prévenus)" })),
        table(["Élève / membre", "Actions"], this.membersBody),
      ),
      el("section", { className: "card" }, el("h3", { textContent: "Signalements ouverts" }), table(["Message signalé", "Actions"], this.reportsBody)),
      el("section", { className: "card" }, el("h3", { textContent: "Derniers messages" }), table(["Message", "Actions"], this.messagesBody)),
    ];
    this.buildForumCard();
    this.buildNotesCard();
    this.diaryCard.append(
      el("h3", { textContent: "Cette semaine" }),
      el(
        "table",
        {},
        el("thead", {}, el("tr", {}, ...["Jour", "Matière", "Entrée", "Fait"].map((h) => el("th", { textContent: h })))),
        this.diaryBody,
      ),
    );
    this.grid.append(
      el("section", { className: "card wide" }, this.title, this.stats),
      this.forumCard,
      this.notesCard,
      this.diaryCard,
      ...this.roomCards,
      el("section", { className: "card" }, el("h3", { textContent: "Journal de la classe" }), this.auditList),
    );
    this.grid.hidden = true;
    this.root.replaceChildren(header, form, this.announcesCard(), this.handinsCard(), this.grid);

    this.client.on("event", (ev) => {
      if (ev.room === this.room) {
        this.onRoomEvent(ev);
        this.onForumEvent(ev);
        this.scheduleRefresh();
      } else if (ev.room === this.audit) {
        this.auditEntries.set(ev.offset, ev);
        this.renderAudit();
        this.scheduleRefresh();
      }
    });
    this.client.on("presence", (p) => {
      if (p.room === this.room) this.scheduleRefresh();
    });
    this.client.on("open", () => this.scheduleRefresh());
    // Mutes end by themselves: refresh now and then.
    setInterval(() => this.scheduleRefresh(), 15_000);
    if (input.value) void this.open(input.value);
  }

  /**
   * « Annonces »: the app's view (web/announce.ts, the chunk it shares with
   * the app), loaded when unfolded: what was sent, with who has read it,
   * and a new announcement. An announcement opens in the app.
   */
  private announcesCard(): HTMLElement {
    const card = el("details", { className: "console-announces" }, el("summary", { textContent: "Annonces : envoyer, suivre la lecture" }));
    let loaded = false;
    card.addEventListener("toggle", () => {
      if (!card.open || loaded) return;
      loaded = true;
      const wait = el("p", { className: "empty", textContent: "Chargement…" });
      card.append(wait);
      import("../web/announce.js").then(
        ({ AnnouncesView }) => {
          const view = new AnnouncesView(this.client, { open: (room) => window.open(`../?room=${encodeURIComponent(room)}`, "_blank") });
          wait.replaceWith(view.root);
          view.show();
        },
        () => {
          loaded = false;
          wait.textContent = "Les annonces n'ont pas pu être chargées : vérifiez la connexion.";
        },
      );
    });
    return card;
  }

  /**
   * « Devoirs à rendre »: each class's hand-ins with their counts and the
   * zip (web/handin.ts, the chunk it shares with the app), loaded when
   * unfolded and again at each unfolding.
   */
  private handinsCard(): HTMLElement {
    const card = el("details", { className: "console-handins" }, el("summary", { textContent: "Devoirs à rendre : rendus, téléchargement" }));
    const body = el("div", {}, el("p", { className: "empty", textContent: "Chargement…" }));
    card.append(body);
    card.addEventListener("toggle", () => {
      if (!card.open) return;
      import("../web/handin.js").then(
        ({ HandinSummary }) => {
          const summary = new HandinSummary(this.client);
          void summary.show().then(() => body.replaceChildren(summary.root));
        },
        () => {
          body.replaceChildren(el("p", { className: "notice", textContent: "Les devoirs à rendre n'ont pas pu être chargés : vérifiez la connexion." }));
        },
      );
    });
    return card;
  }

  /** The rooms of the teacher's classes, by kind: one click opens one. */
  private async listRooms(): Promise<void> {
    const classes = this.client.hello?.classes ?? [];
    for (const cls of classes) {
      const list = el("ul", { className: "rooms" });
      this.directory.append(el("div", { className: "console-class", "data-class": cls }, el("h3", { textContent: `Classe ${cls}` }), list));
      for (const kind of ["chat", "forum", "notes", "homework"]) {
        let rooms: string[] = [];
        try {
          rooms = (await this.client.rooms(cls, kind)).rooms;
        } catch {
          continue;
        }
        for (const room of rooms) {
          const b = el("button", { type: "button", className: "secondary room-link", textContent: roomTitle(room) });
          b.addEventListener("click", () => void this.open(room));
          list.append(el("li", { "data-room": room, className: room === this.selected ? "active" : "" }, b));
        }
      }
      if (!list.children.length) list.append(el("li", { className: "empty", textContent: "Aucun salon ouvert." }));
    }
  }

  private async open(room: string): Promise<void> {
    const m = ROOM_RE.exec(room);
    if (!m) return toast("Nom de salon : classe/type/nom, ex. 3B/chat/general", "error");
    const audit = `${m[1]}/audit/log`;
    if (this.room && this.room !== room) await this.client.leave(this.room).catch(() => {});
    if (this.audit && this.audit !== audit) await this.client.leave(this.audit).catch(() => {});
    this.room = undefined;
    this.forum = undefined;
    this.messages.clear();
    this.title.replaceChildren(roomTitle(room));
    this.selected = room;
    for (const li of this.directory.querySelectorAll<HTMLElement>("li[data-room]")) li.classList.toggle("active", li.dataset.room === room);
    this.forumCard.hidden = m[2] !== "forum";
    for (const card of this.roomCards) card.hidden = false;
    // A note's events are edits, not messages: its card links to the
    // editor, where the teacher validates, lists versions and exports.
    this.messagesCard().hidden = m[2] === "notes" || m[2] === "homework";
    this.reportsCard().hidden = m[2] === "homework"; // entries are not messages: nothing to report
    this.notesCard.hidden = m[2] !== "notes";
    this.diaryCard.hidden = m[2] !== "homework";
    if (m[2] === "notes") {
      const link = el("a", { href: `../?room=${encodeURIComponent(room)}`, textContent: "Ouvrir la note dans l'éditeur" });
      this.title.append(" ", el("small", {}, link));
    }
    if (m[2] === "homework") {
      const link = el("a", { href: `../?room=${encodeURIComponent(room)}`, textContent: "Écrire dans le cahier de textes (application)" });
      this.title.append(" ", el("small", {}, link));
    }
    // A teacher of the class creates a forum just by joining it (as an
    // unconfigured debate): ask first whether it exists, and open it with
    // its settings when it does not.
    if (m[2] === "forum" && !(await this.forumExists(m[1], room))) {
      localStorage.setItem(ROOM_KEY, room);
      this.showUnopenedForum(room);
      return;
    }
    this.room = room;
    try {
      // Joining gives live messages, moderation events and presence; a
      // teacher of the class (or staff) opens the room by joining it. The
      // room is remembered only once joined.
      if (!this.client.isJoined(room)) await this.client.join(room);
      localStorage.setItem(ROOM_KEY, room);
      const page = await this.client.history(room, { limit: 30 });
      for (const ev of page.events) this.onRoomEvent(ev);
      if (this.audit !== audit) {
        this.audit = audit;
        this.auditEntries.clear();
        if (!this.client.isJoined(audit)) await this.client.join(audit);
        const log = await this.client.history(audit, { limit: 100 });
        for (const ev of log.events) this.auditEntries.set(ev.offset, ev);
        this.renderAudit();
      }
      await this.refresh();
      if (m[2] === "forum") await this.loadForum(room);
      if (m[2] === "notes") await this.loadVersions(room);
      if (m[2] === "homework") await this.loadDiary(room);
      this.grid.hidden = false;
    } catch (err) {
      if (this.room === room && isUnknownRoom(err)) return this.showUnknownRoom(room);
      toast(errorText(err), "error");
    }
  }

  private messagesCard(): HTMLElement {
    return this.roomCards[2];
  }

  private reportsCard(): HTMLElement {
    return this.roomCards[1];
  }

  // ---- homework diary -------------------------------------------------------

  /**
   * This week's entries (Monday to Sunday) with how many pupils marked each
   * homework done. Marks reach teachers as counts in listings only, never
   * as events: the card is reloaded with the console's periodic refresh.
   */
  private async loadDiary(room: string): Promise<void> {
    const day = (d: Date) => `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
    const now = new Date();
    const monday = new Date(now.getFullYear(), now.getMonth(), now.getDate() - ((now.getDay() + 6) % 7));
    const sunday = new Date(monday.getFullYear(), monday.getMonth(), monday.getDate() + 6);
    const week = await this.client.homework(room, day(monday), day(sunday), 500);
    if (this.room !== room) return;
    const dayFmt = new Intl.DateTimeFormat("fr-FR", { weekday: "long", day: "numeric", month: "long" });
    const label = (e: DiaryEntry) => {
      const [y, m, d] = (e.what === "homework" ? (e.due ?? e.date) : e.date).split("-").map(Number);
      const when = dayFmt.format(new Date(y, m - 1, d));
      return e.what === "homework" ? `pour le ${when}` : `séance du ${when}`;
    };
    const done = (e: DiaryEntry) => {
      if (e.what !== "homework") return "—";
      const n = e.doneCount ?? 0;
      const count = n === 0 ? "aucun élève" : n === 1 ? "1 élève" : `${n} élèves`;
      return e.doneNames?.length ? `${count} (${e.doneNames.map((u) => u.name).join(", ")})` : count;
    };
    const rows = week.entries.map((e) =>
      el(
        "tr",
        { "data-entry": e.entry },
        el("td", { textContent: label(e) }),
        el("td", { textContent: e.subject }),
        el("td", { textContent: `${e.text}${e.publishAt ? ` (publication prévue le ${formatTime(e.publishAt)})` : ""}` }),
        el("td", { className: "done", textContent: done(e) }),
      ),
    );
    this.diaryBody.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colSpan: 4, textContent: "Rien dans le cahier de textes cette semaine." }))]));
  }

  /** The server does not know `room` and this user may not open it: say so, and forget it. */
  private showUnknownRoom(room: string): void {
    this.room = undefined;
    if (localStorage.getItem(ROOM_KEY) === room) localStorage.removeItem(ROOM_KEY);
    this.title.textContent = roomTitle(room);
    this.stats.replaceChildren(el("p", { className: "notice", role: "alert", textContent: UNKNOWN_ROOM_CONSOLE }));
    for (const card of this.roomCards) card.hidden = true;
    this.forumCard.hidden = true;
    this.diaryCard.hidden = true;
    this.grid.hidden = false;
  }

  // ---- notes ----------------------------------------------------------------

  /** Validation in one step from the console: a name, whether to lock, done. */
  private buildNotesCard(): void {
    const label = el("input", { id: "note-label", placeholder: "ex. Chapitre 3, version finale", autocomplete: "off", maxLength: 200, required: true });
    const lock = el("input", { type: "checkbox", id: "note-lock" });
    const form = el(
      "form",
      { className: "note-validate" },
      el("label", { htmlFor: "note-label", textContent: "Nom de la version" }),
      label,
      el("p", {}, lock, " ", el("label", { htmlFor: "note-lock", textContent: "Verrouiller la note (les élèves ne pourront plus la modifier)" })),
      el("button", { type: "submit", textContent: "Valider la note telle qu'elle est" }),
    );
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const room = this.room;
      const name = label.value.trim();
      if (!room || !name) return;
      try {
        await this.client.noteValidate(room, name, lock.checked);
        toast(`Version « ${name} » validée${lock.checked ? ", note verrouillée" : ""}.`);
        label.value = "";
        lock.checked = false;
        await this.loadVersions(room);
        this.scheduleRefresh();
      } catch (err) {
        toast(errorText(err), "error");
      }
    });
    this.notesCard.append(el("h3", { textContent: "Note" }), form, el("h4", { textContent: "Versions validées" }), this.versionsList);
  }

  private async loadVersions(room: string): Promise<void> {
    const { versions } = await this.client.noteVersions(room);
    if (this.room !== room) return;
    const items = versions.map((v) => {
      const get = el("button", { type: "button", className: "secondary", textContent: "Exporter (Markdown)" });
      get.addEventListener("click", async () => {
        try {
          const out = await this.client.noteExport(room, "markdown", v.version);
          downloadFile(`${room.split("/")[2]}-${v.label}.md`, out.content, "text/markdown");
        } catch (err) {
          toast(errorText(err), "error");
        }
      });
      return el("li", { "data-version": v.version }, `« ${v.label} », validée par ${v.by.name} le ${formatTime(v.ts)} `, get);
    });
    this.versionsList.replaceChildren(...(items.length ? items : [el("li", { textContent: "Aucune version validée pour l'instant." })]));
  }

  // ---- forums ---------------------------------------------------------------

  private buildForumCard(): void {
    for (const f of ["debate", "help", "interclass"] as const) {
      const hint: Record<string, string> = {
        debate: "seuls les enseignants ouvrent un sujet",
        help: "les élèves posent des questions, une réponse est retenue",
        interclass: "plusieurs classes, plusieurs enseignants",
      };
      this.flavourSelect.append(el("option", { value: f, textContent: `${FLAVOUR_LABELS[f]} (${hint[f]})` }));
    }
    const form = el(
      "form",
      { className: "forum-settings" },
      el("label", { htmlFor: "forum-flavour" }, "Type de forum", this.flavourSelect),
      el("label", { htmlFor: "forum-classes" }, "Classes invitées", this.classesInput),
      el("label", { htmlFor: "forum-moderators" }, "Enseignants modérateurs invités", this.moderatorsInput),
      this.forumSave,
    );
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      void this.saveForum();
    });
    this.moreThreads.addEventListener("click", () => void this.loadMoreThreads());
    this.forumCard.append(el("h3", { textContent: "Forum" }), this.forumStatus, form, this.threadsTable, this.moreThreads);
  }

  private async forumExists(cls: string, room: string): Promise<boolean> {
    try {
      return (await this.client.rooms(cls, "forum")).rooms.includes(room);
    } catch {
      // Not a moderator of the class (a granted one): it cannot open it
      // anyway; if it exists, the join below says so.
      return true;
    }
  }

  private showUnopenedForum(room: string): void {
    this.forum = { room, opened: false, list: new ThreadList(this.client.user?.id ?? "") };
    this.stats.replaceChildren(el("p", { textContent: "Ce forum n'est pas encore ouvert : choisissez son type et qui y participe, puis « Ouvrir le forum »." }));
    for (const card of this.roomCards) card.hidden = true;
    this.forumStatus.textContent = "Pas encore ouvert.";
    this.flavourSelect.value = "help";
    this.classesInput.value = this.moderatorsInput.value = "";
    this.forumSave.textContent = "Ouvrir le forum";
    this.forumSave.disabled = false;
    this.threadsTable.hidden = true;
    this.moreThreads.hidden = true;
    this.grid.hidden = false;
  }

  private async loadForum(room: string): Promise<void> {
    const list = new ThreadList(this.client.user?.id ?? "");
    list.load(await this.client.threads(room));
    this.forum = { room, opened: true, list };
    this.fillSettings();
    this.forumSave.textContent = "Enregistrer les réglages";
    this.threadsTable.hidden = false;
    this.renderThreads();
  }

  private async loadMoreThreads(): Promise<void> {
    const f = this.forum;
    if (!f) return;
    try {
      f.list.load(await this.client.threads(f.room, { before: f.list.nextBefore() }), true);
      this.renderThreads();
    } catch (err) {
      toast(errorText(err), "error");
    }
  }

  private fillSettings(): void {
    const f = this.forum;
    if (!f) return;
    const s = f.list.settings;
    this.flavourSelect.value = s.flavour;
    this.classesInput.value = s.classes.join(", ");
    this.moderatorsInput.value = s.moderators.join(", ");
    // Only the class's own teachers (and staff) change the settings.
    const me = this.client.user;
    const cls = f.room.split("/")[0];
    const home = me?.role === "staff" || (me?.role === "teacher" && (this.client.hello?.classes ?? []).includes(cls));
    this.forumSave.disabled = !home;
    this.forumStatus.textContent =
      `Forum ${FLAVOUR_LABELS[s.flavour] ?? s.flavour}` +
      (s.classes.length ? ` · classes invitées : ${s.classes.join(", ")}` : "") +
      (s.moderators.length ? ` · modérateurs invités : ${s.moderators.join(", ")}` : "") +
      (home ? "" : " · seuls les enseignants de la classe changent ces réglages");
  }

  private async saveForum(): Promise<void> {
    const f = this.forum;
    if (!f) return;
    const split = (v: string) => v.split(/[\s,;]+/).filter(Boolean);
    const settings = { flavour: this.flavourSelect.value as Flavour, classes: split(this.classesInput.value), moderators: split(this.moderatorsInput.value) };
    try {
      await this.client.configureForum(f.room, settings);
      toast(f.opened ? "Réglages du forum enregistrés." : "Forum ouvert.");
      if (!f.opened) await this.open(f.room);
    } catch (err) {
      toast(errorText(err), "error");
    }
  }

  private onForumEvent(ev: EventFrame): void {
    const f = this.forum;
    if (!f?.opened) return;
    const r = f.list.apply(ev);
    if (r === "unknown_thread") {
      void this.loadForum(f.room).catch(() => {});
      return;
    }
    if (ev.body.kind === "moderation" && (ev.body.action as { kind?: string })?.kind === "configure") this.fillSettings();
    this.renderThreads();
  }

  private renderThreads(): void {
    const f = this.forum;
    if (!f) return;
    const rows = f.list.list().map((t) => {
      const title = t.deleted ? "(sujet supprimé)" : (t.title ?? "(sans titre)");
      const replies = t.replies === 0 ? "aucune réponse" : t.replies === 1 ? "1 réponse" : `${t.replies} réponses`;
      const cell = el("td", {}, el("div", { textContent: title }), el("small", { textContent: `${t.from.name} · ${replies} · dernière activité ${formatTime(t.last_ts)}` }));
      if (t.pinned) cell.append(el("span", { className: "tag pinned", textContent: "📌 épinglé" }));
      if (t.locked) cell.append(el("span", { className: "tag locked", textContent: "🔒 verrouillé" }));
      if (t.answer !== undefined) cell.append(el("span", { className: "tag answered", textContent: "✓ réponse" }));
      const actions = el(
        "td",
        { className: "actions" },
        t.locked ? this.button("Déverrouiller", { kind: "read_only", on: false, thread: t.thread }) : this.button("Verrouiller", { kind: "read_only", on: true, thread: t.thread }),
      );
      if (!t.deleted) {
        actions.append(
          t.pinned ? this.button("Désépingler", { kind: "unpin", offset: t.thread }) : this.button("Épingler", { kind: "pin", offset: t.thread }),
          this.button("Supprimer le sujet", { kind: "redact", offset: t.thread }, { danger: true, confirm: `Supprimer le premier message de « ${title} » ?` }),
        );
      }
      actions.append(el("a", { href: `../?room=${encodeURIComponent(f.room)}`, target: "_blank", textContent: "Voir" }));
      return el("tr", { "data-thread": t.thread }, cell, actions);
    });
    this.threadsBody.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colSpan: 2, textContent: "Aucun sujet pour l'instant." }))]));
    this.moreThreads.hidden = !f.list.more;
  }

  private onRoomEvent(ev: EventFrame): void {
    knownNames.set(ev.from.id, ev.from.name);
    if (ev.body.kind === "message" || ev.body.kind === "redacted") this.messages.set(ev.offset, ev);
    if (ev.body.kind === "edit") {
      // A forum post's new version replaces the text shown.
      const target = this.messages.get(Number(ev.body.target));
      if (target?.body.kind === "message") {
        this.messages.set(target.offset, { ...target, body: { ...target.body, text: ev.body.text, title: ev.body.title ?? target.body.title, edited: true } });
      }
    }
    if (ev.body.kind === "moderation") {
      const a = ev.body.action as { kind: string; offset?: number };
      const target = a.offset !== undefined ? this.messages.get(a.offset) : undefined;
      if (a.kind === "redact" && target) {
        this.messages.set(target.offset, { ...target, body: { kind: "redacted", by: ev.from } });
      }
    }
    // Keep the last 30.
    const keys = [...this.messages.keys()].sort((x, y) => x - y);
    for (const k of keys.slice(0, Math.max(0, keys.length - 30))) this.messages.delete(k);
    this.renderMessages();
  }

  // Several events in a burst make one room_view request.
  private scheduleRefresh(): void {
    if (!this.room || this.refreshTimer) return;
    this.refreshTimer = setTimeout(() => {
      this.refreshTimer = null;
      void this.refresh().catch(() => {});
    }, 300);
  }

  private async refresh(): Promise<void> {
    if (!this.room || this.client.state !== "open") return;
    if (this.room.split("/")[1] === "homework") await this.loadDiary(this.room);
    this.view = await this.client.roomView(this.room);
    for (const m of this.view.members) knownNames.set(m.user.id, m.user.name);
    this.renderStats();
    this.renderMembers();
    this.renderReports();
    this.renderMessages();
  }

  private act(action: ModerationAction, confirmText?: string): void {
    if (!this.room) return;
    if (confirmText && !confirm(confirmText)) return;
    if ((action.kind === "mute" || action.kind === "kick" || action.kind === "ban") && this.announce.checked) {
      action = { ...action, announce: true };
      this.announce.checked = false;
    }
    this.client.moderate(this.room, action).then(
      () => this.scheduleRefresh(),
      (err) => toast(errorText(err), "error"),
    );
  }

  /**
   * Deletes a reported message and closes its report in one click: a
   * deleted message leaves nothing to decide, so its report must not stay
   * open (reading « message n° 6 » and failing a second delete).
   */
  private deleteReported(offset: number, report: number): HTMLButtonElement {
    const b = el("button", { type: "button", textContent: "Supprimer le message", className: "danger" });
    b.addEventListener("click", async () => {
      const room = this.room;
      if (!room) return;
      b.disabled = true;
      try {
        await this.client.moderate(room, { kind: "redact", offset, reason: "Signalement" }).catch((err) => {
          // Already deleted (by someone else): the report still closes.
          if ((err as { code?: string }).code !== "unknown_target") throw err;
        });
        await this.client.moderate(room, { kind: "resolve", report, dismissed: false });
      } catch (err) {
        toast(errorText(err), "error");
      } finally {
        b.disabled = false;
        this.scheduleRefresh();
      }
    });
    return b;
  }

  private button(label: string, action: ModerationAction, opts: { danger?: boolean; confirm?: string } = {}): HTMLButtonElement {
    const b = el("button", { type: "button", textContent: label, className: opts.danger ? "danger" : "secondary" });
    b.addEventListener("click", () => this.act(action, opts.confirm));
    return b;
  }

  private renderStats(): void {
    const v = this.view!;
    const slow = el("select", { id: "slow-mode", title: "Mode lent" });
    for (const [s, label] of [[0, "désactivé"], [10, "10 s"], [30, "30 s"], [60, "1 min"], [300, "5 min"]] as const) {
      slow.append(el("option", { value: String(s), textContent: label, selected: v.slow_mode === s }));
    }
    if (![0, 10, 30, 60, 300].includes(v.slow_mode)) slow.append(el("option", { value: String(v.slow_mode), textContent: `${v.slow_mode} s`, selected: true }));
    slow.addEventListener("change", () => this.act({ kind: "slow_mode", seconds: Number(slow.value) }));
    const note = v.room.split("/")[1] === "notes";
    const diary = v.room.split("/")[1] === "homework";
    const roLabel = note ? (v.read_only ? "Déverrouiller la note" : "Verrouiller la note") : v.read_only ? "Rouvrir le salon" : "Lecture seule";
    const ro = this.button(roLabel, { kind: "read_only", on: !v.read_only }, { danger: !v.read_only });
    this.stats.replaceChildren(
      stat(String(v.members.length), plural(v.members.length, "présent", "présents")),
      // A diary holds entries, not messages: nothing to count or report there.
      ...(diary
        ? []
        : [
            stat(String(v.recent_messages), `${plural(v.recent_messages, "message", "messages")} (5 dernières min)`),
            stat(String(v.open_reports.length), plural(v.open_reports.length, "signalement ouvert", "signalements ouverts")),
          ]),
      stat(v.read_only ? "oui" : "non", note ? "note verrouillée" : "lecture seule"),
      el("label", {}, "Mode lent : ", slow),
      ro,
    );
  }

  private renderMembers(): void {
    const v = this.view!;
    const now = Date.now();
    const rows: HTMLElement[] = [];
    const present = new Set(v.members.map((m) => m.user.id));
    for (const m of v.members) rows.push(this.memberRow(m.user, m.muted_until, m.banned, now));
    // Banned or muted users who are not here right now still need their buttons.
    for (const id of v.banned) if (!present.has(id)) rows.push(this.memberRow({ id, name: id, role: "" }, v.muted[id], true, now));
    for (const [id, until] of Object.entries(v.muted)) {
      if (!present.has(id) && !v.banned.includes(id)) rows.push(this.memberRow({ id, name: id, role: "" }, until, false, now));
    }
    this.membersBody.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colSpan: 2, textContent: "Personne dans le salon." }))]));
  }

  private memberRow(user: UserInfo, mutedUntil: number | undefined, banned: boolean, now: number): HTMLElement {
    const who = el("td", { "data-user": user.id }, user.role ? userLabel(user) : user.id);
    const muted = mutedUntil !== undefined && mutedUntil > now;
    if (muted) who.append(el("span", { className: "tag muted", textContent: `en sourdine jusqu'à ${formatTime(mutedUntil!)} (${formatDuration(mutedUntil! - now)})` }));
    if (banned) who.append(el("span", { className: "tag banned", textContent: "exclu" }));
    const actions = el("td", { className: "actions" });
    const isModerator = user.role === "teacher" || user.role === "staff";
    if (!isModerator) {
      actions.append(this.button("Sourdine 10 min", { kind: "mute", user: user.id, seconds: 600 }), this.button("Sourdine 1 h", { kind: "mute", user: user.id, seconds: 3600 }));
      if (muted) actions.append(this.button("Rendre la parole", { kind: "unmute", user: user.id }));
      if (!banned) {
        actions.append(
          this.button("Retirer", { kind: "kick", user: user.id }),
          this.button("Exclure", { kind: "ban", user: user.id }, { danger: true, confirm: `Exclure ${user.name} de ce salon ?` }),
        );
      }
    }
    if (banned) actions.append(this.button("Lever l'exclusion", { kind: "unban", user: user.id }));
    return el("tr", {}, who, actions);
  }

  private renderReports(): void {
    const v = this.view!;
    const rows = v.open_reports.map((r) => {
      const offset = Number(r.body.offset);
      const msg = this.messages.get(offset);
      const text = msg?.body.kind === "message" ? `« ${String(msg.body.text)} » — ${msg.from.name}` : this.messageWords(v.room, offset);
      const reason = r.body.reason ? ` Motif : ${String(r.body.reason)}.` : "";
      const cell = el("td", {}, el("div", { textContent: text }), el("small", { textContent: `Signalé par ${r.from.name} à ${formatTime(r.ts)}.${reason}` }));
      const actions = el(
        "td",
        { className: "actions" },
        this.deleteReported(offset, r.offset),
        this.button("Traité", { kind: "resolve", report: r.offset, dismissed: false }),
        this.button("Rejeter", { kind: "resolve", report: r.offset, dismissed: true }),
      );
      return el("tr", {}, cell, actions);
    });
    this.reportsBody.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colSpan: 2, textContent: "Aucun signalement ouvert." }))]));
  }

  private renderMessages(): void {
    const pinned = new Set(this.view?.pinned ?? []);
    const rows = [...this.messages.values()]
      .sort((a, b) => b.offset - a.offset)
      .map((ev) => {
        const redacted = ev.body.kind === "redacted";
        const title = typeof ev.body.title === "string" ? `[${ev.body.title}] ` : "";
        const edited = ev.body.edited ? " (modifié)" : "";
        const cell = el("td", {}, el("small", { textContent: `${ev.from.name} · ${formatTime(ev.ts)}${edited}` }), el("div", { textContent: redacted ? "(supprimé)" : `${title}${String(ev.body.text)}` }));
        const actions = el("td", { className: "actions" });
        if (!redacted) {
          actions.append(
            this.button("Supprimer", { kind: "redact", offset: ev.offset }, { danger: true }),
            pinned.has(ev.offset) ? this.button("Désépingler", { kind: "unpin", offset: ev.offset }) : this.button("Épingler", { kind: "pin", offset: ev.offset }),
          );
        }
        return el("tr", { "data-offset": ev.offset }, cell, actions);
      });
    this.messagesBody.replaceChildren(...rows);
  }

  private renderAudit(): void {
    const items = [...this.auditEntries.values()]
      .sort((a, b) => b.offset - a.offset)
      .map((ev) => {
        const room = String(ev.body.room ?? "");
        return el("li", {}, el("small", { textContent: `${formatTime(ev.ts)} · ${room ? roomTitle(room) : ""}` }), el("div", { textContent: this.auditText(ev) }));
      });
    this.auditList.replaceChildren(...items);
  }

  /** An audit entry in words: whose message, from when, never an internal number. */
  private auditText(ev: EventFrame): string {
    const room = String(ev.body.room ?? "");
    const reason = (r: unknown) => (r ? ` (motif : ${String(r)})` : "");
    if (ev.body.kind === "report") {
      return `${ev.from.name} a signalé ${this.messageWords(room, Number(ev.body.offset))}${reason(ev.body.reason)}.`;
    }
    const a = ev.body.action as { kind?: string; offset?: number; report?: number; dismissed?: boolean; reason?: string } | undefined;
    if (ev.body.kind === "audit" && a?.kind === "redact" && typeof a.offset === "number") {
      // Deleting a diary entry is redacting it: its words are gone, and it was no message.
      if (room.split("/")[1] === "homework") return `${ev.from.name} a supprimé une entrée du cahier de textes${reason(a.reason)}.`;
      return `${ev.from.name} a supprimé ${this.messageWords(room, a.offset)}${reason(a.reason)}.`;
    }
    if (ev.body.kind === "audit" && a?.kind === "resolve" && typeof a.report === "number") {
      const report = this.auditEntries.get(a.report);
      const what = report ? `le signalement ${of(report.from.name)} sur ${this.messageWords(String(report.body.room ?? room), Number(report.body.offset))}` : "un signalement";
      return `${ev.from.name} a ${a.dismissed ? "rejeté" : "traité"} ${what}.`;
    }
    if (ev.body.kind === "audit" && ev.body.action) {
      return moderationText(ev, (id) => knownNames.get(id), (thread) => this.titleOf(room, thread));
    }
    return `${ev.from.name} : ${String(ev.body.kind)}`;
  }

  /** A forum thread's title (its first post's), fetched once if not at hand. */
  private titleOf(room: string, thread: number): string | undefined {
    this.messageWords(room, thread);
    const first = (room === this.room ? this.messages.get(thread) : undefined) ?? messageCache.get(`${room}#${thread}`);
    return typeof first?.body.title === "string" ? first.body.title : undefined;
  }

  /** « le message de Bilal Haddad du 12/03 à 17:09 », fetched once if not at hand. */
  private messageWords(room: string, offset: number): string {
    const key = `${room}#${offset}`;
    const known = (room === this.room ? this.messages.get(offset) : undefined) ?? messageCache.get(key);
    if (known) {
      const d = new Date(known.ts);
      const day = d.toLocaleDateString("fr-FR", { day: "2-digit", month: "2-digit" });
      const time = d.toLocaleTimeString("fr-FR", { hour: "2-digit", minute: "2-digit" });
      return `le message ${of(known.from.name)} du ${day} à ${time}`;
    }
    if (!messageCache.has(key) && room && Number.isFinite(offset)) {
      messageCache.set(key, null);
      this.client.history(room, { before: offset + 1, limit: 1 }).then(
        (page) => {
          const ev = page.events.find((e) => e.offset === offset);
          if (ev) {
            messageCache.set(key, ev);
            this.renderAudit();
            if (this.view) this.renderReports();
          }
        },
        () => {},
      );
    }
    return "un message";
  }
}

// Display names seen in room views and events: audit entries name their target by id.
const knownNames = new Map<string, string>();
// Messages that audit entries refer to (by room and offset), fetched once; null while asked.
const messageCache = new Map<string, EventFrame | null>();

/** « de Bob », « d'Alice »: French elision before a vowel or a mute h. */
function of(name: string): string {
  return /^[aeiouyhàâäéèêëîïôöûüœ]/i.test(name) ? `d'${name}` : `de ${name}`;
}

/** French plural agreement: 0 and 1 take the singular. */
function plural(n: number, one: string, many: string): string {
  return n <= 1 ? one : many;
}

function stat(value: string, label: string): HTMLElement {
  return el("div", { className: "stat" }, el("b", { textContent: value }), label);
}

const root = document.getElementById("app")!;
void signIn(root, (u) => u.role === "teacher").then((client) => {
  const c = new Console(client, root);
  c.start();
  (window as any).preau = { client, console: c };
});
