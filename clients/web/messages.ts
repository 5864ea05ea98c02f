// Messages in the web app (a chunk loaded when first shown, outside the
// first load): the conversations and one conversation, « Nouveau
// message » with its recipient picker, the notification feed the bell
// opens, and « Mon compte » with the quiet hours.
//
// Who may write to whom, who is quiet and what a teacher may share are
// the server's business (src/kinds/dm, src/kinds/inbox): the views show
// what they are given and say refusals in French. Times are the school's
// (Europe/Paris), as its quiet hours are.

import { PreauError, type EventFrame, type PreauClient, type UserInfo } from "../src/client.js";
import {
  QUIET_DAYS,
  isConversation,
  isForever,
  isNoQuiet,
  type Contact,
  type Conversation,
  type DmOk,
  type FeedItem,
  type QuietDay,
  type QuietHours,
  type QuietMember,
  type QuietState,
} from "../src/messages.js";
import { ROLE_LABELS, el, errorText, isModerator, moderationText, roomTitle, toast } from "./common.js";
import type { Inbox } from "./inbox.js";

// ---- time, in the school's words -----------------------------------------------------

/** The school's time zone: quiet hours are counted in it. */
export const SCHOOL_TZ = "Europe/Paris";

const hourFmt = new Intl.DateTimeFormat("fr-FR", { timeZone: SCHOOL_TZ, hour: "numeric", minute: "2-digit", hourCycle: "h23" });
const dayKeyFmt = new Intl.DateTimeFormat("en-CA", { timeZone: SCHOOL_TZ, year: "numeric", month: "2-digit", day: "2-digit" });
const weekdayFmt = new Intl.DateTimeFormat("fr-FR", { timeZone: SCHOOL_TZ, weekday: "long" });
const dateFmt = new Intl.DateTimeFormat("fr-FR", { timeZone: SCHOOL_TZ, day: "numeric", month: "long" });
const shortDateFmt = new Intl.DateTimeFormat("fr-FR", { timeZone: SCHOOL_TZ, day: "numeric", month: "short" });

/** « 7 h 00 », « 20 h 30 » (non-breaking spaces: a time is not cut at a line's end): the time in Paris. */
export function frenchTime(ts: number): string {
  const parts = hourFmt.formatToParts(new Date(ts));
  const hour = parts.find((p) => p.type === "hour")?.value ?? "0";
  const minute = parts.find((p) => p.type === "minute")?.value ?? "00";
  return `${Number(hour)}\u00a0h\u00a0${minute}`;
}

/** « 07:30 » → « 7 h 30 ». */
function clockWords(hhmm: string): string {
  const [h, m] = hhmm.split(":");
  return `${Number(h)}\u00a0h\u00a0${m ?? "00"}`;
}

/** Days from today to the day of `ts`, in Paris (0 today, 1 tomorrow, −1 yesterday). */
function dayDiff(ts: number, now = Date.now()): number {
  const utc = (t: number) => {
    const [y, m, d] = dayKeyFmt.format(new Date(t)).split("-").map(Number);
    return Date.UTC(y, m - 1, d);
  };
  return Math.round((utc(ts) - utc(now)) / 86_400_000);
}

/** « à partir de 7 h 00 », « demain à partir de 7 h 00 », « lundi à partir de 7 h 00 », « le 4 janvier à partir de 7 h 00 ». */
export function fromWhen(ts: number, now = Date.now()): string {
  const diff = dayDiff(ts, now);
  const from = `à partir de ${frenchTime(ts)}`;
  if (diff <= 0) return from;
  if (diff === 1) return `demain ${from}`;
  if (diff < 7) return `${weekdayFmt.format(new Date(ts))} ${from}`;
  return `le ${dateFmt.format(new Date(ts))} ${from}`;
}

/** A list's time: « 14 h 05 », « hier, 14 h 05 », « lundi, 14 h 05 », « 3 déc. ». */
export function whenShort(ts: number, now = Date.now()): string {
  const diff = dayDiff(ts, now);
  if (diff === 0) return frenchTime(ts);
  if (diff === -1) return `hier, ${frenchTime(ts)}`;
  if (diff > -7 && diff < 0) return `${weekdayFmt.format(new Date(ts))}, ${frenchTime(ts)}`;
  return shortDateFmt.format(new Date(ts));
}

/** « Ana », « Ana et Léo », « Ana, Léo et Zoé ». */
function listWords(names: string[]): string {
  return names.length <= 1 ? (names[0] ?? "") : `${names.slice(0, -1).join(", ")} et ${names[names.length - 1]}`;
}

/**
 * What the sender of a message is told about those whose quiet hours
 * hold it: « Mme Durand le verra à partir de 7 h 00 (heures calmes) »,
 * one sentence per time. Before anything is sent (`dm_start`'s `quiet`):
 * « Mme Durand verra votre message à partir de 7 h 00 (heures calmes) ».
 */
export function heldTexts(held: QuietMember[], now = Date.now(), object: "le" | "votre message" = "le"): string[] {
  const byUntil = new Map<number, string[]>();
  for (const q of held) {
    const key = isForever(q.until) ? Infinity : q.until;
    byUntil.set(key, [...(byUntil.get(key) ?? []), q.name]);
  }
  return [...byUntil.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([until, names]) => {
      const several = names.length > 1;
      const verb = several ? "verront" : "verra";
      const sees = `${listWords(names)} ${object === "le" ? `le ${verb}` : `${verb} votre message`}`;
      if (until === Infinity) return `${sees} en ouvrant ${several ? "leurs" : "ses"} messages (heures calmes tous les jours)`;
      return `${sees} ${fromWhen(until, now)} (heures calmes)`;
    });
}

const DAY_NAMES: Record<QuietDay, string> = { mon: "lundi", tue: "mardi", wed: "mercredi", thu: "jeudi", fri: "vendredi", sat: "samedi", sun: "dimanche" };

/** « de 20 h 00 à 7 h 00, et toute la journée le dimanche »; « aucune heure calme ». */
export function quietWords(h: QuietHours): string {
  if (isNoQuiet(h)) return "aucune heure calme";
  const parts: string[] = [];
  if (h.start !== h.end) parts.push(`de ${clockWords(h.start)} à ${clockWords(h.end)}`);
  if (h.days.length === 7) parts.push("toute la journée, tous les jours");
  else if (h.days.length) parts.push(`toute la journée ${listWords(h.days.map((d) => `le ${DAY_NAMES[d]}`))}`);
  return parts.join(", et ");
}

// ---- shared bits ----------------------------------------------------------------------

/** The other members' names: the conversation's title. */
function othersOf(members: UserInfo[], me: string): UserInfo[] {
  const others = members.filter((m) => m.id !== me);
  return others.length ? others : members;
}

function roleWord(role: string): string {
  return ROLE_LABELS[role] ?? role;
}

function code(err: unknown): string {
  return err instanceof PreauError ? err.code : "";
}

/** A refusal of `dm_send`, in words (a pupil's cap says where to ask instead). */
function sendError(err: unknown, me: UserInfo | undefined): string {
  if (code(err) === "rate_limited" && me?.role === "student") {
    const wait = err instanceof PreauError && err.retryAfterMs ? ` (encore ${Math.ceil(err.retryAfterMs / 60_000)} min)` : "";
    return `Vous avez envoyé beaucoup de messages à cet enseignant : posez votre question dans le forum d'entraide de la classe, ou patientez${wait}.`;
  }
  if (code(err) === "forbidden") return "Vous ne pouvez pas écrire dans cette conversation.";
  return errorText(err);
}

/** The server's reasons for refusing someone (`dm_start`, `dm_add`: « <id>: <reason> »), in French. */
const REASONS: Record<string, string> = {
  "you cannot write to yourself": "on ne s'écrit pas à soi-même",
  "teachers and pupils write to each other within the teacher's classes": "enseignants et élèves s'écrivent dans les classes de l'enseignant",
  "a teacher writes to the parents of pupils they teach": "un enseignant écrit aux parents de ses élèves",
  "parents write to their children's teachers": "un parent écrit aux enseignants de ses enfants",
  "messages between pupils are off in this school": "les messages entre élèves sont désactivés dans l'établissement",
  "pupils write to pupils of their classes": "un élève écrit aux élèves de ses classes",
  "a pupil writes to their own parents only": "un élève écrit à ses propres parents seulement",
  "a parent writes to their own children only": "un parent écrit à ses propres enfants seulement",
  "parents write to their children's other parent only": "un parent écrit à l'autre parent de ses enfants seulement",
  "a pupil adds their parents": "un élève peut ajouter ses parents",
  "a teacher adds a colleague": "un enseignant peut ajouter un collègue (enseignant ou personnel)",
  "a parent adds their child's other parent": "un parent peut ajouter l'autre parent de son enfant",
  "messages need the school's directory (not synced yet)": "l'annuaire de l'établissement n'est pas encore chargé",
};

/** Why the server refused someone, in French, as a sentence's end: « un élève peut ajouter ses parents. ». */
function refusalText(err: unknown): string {
  const message = err instanceof PreauError ? err.message : "";
  const reason = Object.entries(REASONS).find(([en]) => message.endsWith(en));
  return `${reason ? reason[1] : "l'établissement ne le permet pas"}.`;
}

/** Whether a user of role `role` may add contact `c` to a conversation (the server's `may_add`; it checks anyway). */
export function mayAdd(role: string | undefined, c: Pick<Contact, "role">): boolean {
  switch (role) {
    case "staff":
      return true;
    case "student":
      return c.role === "parent";
    case "teacher":
      return c.role === "teacher" || c.role === "staff";
    case "parent":
      return c.role === "parent";
    default:
      return false;
  }
}

/** Whom one may add, said above the picker. */
const ADD_HINTS: Record<string, string> = {
  student: "Vous pouvez ajouter vos parents.",
  teacher: "Vous pouvez ajouter un collègue : enseignant ou personnel de l'établissement.",
  parent: "Vous pouvez ajouter l'autre parent de votre enfant.",
  staff: "Vous pouvez ajouter toute personne de l'établissement que vous pouvez contacter.",
};

/** A notification in words: « Nouveau message de Léa ». */
export function itemText(item: FeedItem): string {
  const by = item.by?.name;
  const title = item.title ? ` : ${item.title}` : "";
  switch (item.what) {
    case "dm":
      return by ? `Nouveau message de ${by}` : "Nouveau message";
    case "announcement":
      return by ? `Annonce de ${by}${title}` : `Annonce${title}`;
    case "homework":
      return `Devoirs${title}`;
    case "handin":
      return by ? `Devoir à rendre de ${by}${title}` : `Devoir à rendre${title}`;
    case "handin_returned":
      return by ? `Correction de ${by}${title}` : `Devoir corrigé${title}`;
    case "reply":
      return by ? `Réponse de ${by}${title}` : `Nouvelle réponse${title}`;
    case "mention":
      return by ? `${by} vous a cité${title}` : `Vous avez été cité${title}`;
    case "note":
      return `Note${title}`;
    default:
      return item.title || "Nouvelle notification";
  }
}

export interface MessagesHooks {
  /** Opens a room of the directory (a forum a question was shared in). */
  open(room: string): void;
  /** Opens « Mon compte » (the quiet hours). */
  settings(): void;
}

// ---- the conversations ------------------------------------------------------------------

/**
 * « Messages »: the conversations (others' names, last activity, unread
 * count from the feed, live) beside the open one on a wide screen, in
 * turn on a phone (`data-pane`).
 */
export class MessagesView {
  root = el("section", { className: "messages-view", "data-pane": "list" });
  private list = el("ul", { className: "conversations", "aria-label": "Conversations" });
  private status = el("p", { className: "empty", textContent: "Chargement…" });
  private detail = el("div", { className: "conv-pane" });
  private conversations: Conversation[] = [];
  private current?: ConversationPane;
  private composing?: NewMessagePane;
  private shown = false;
  private started = false;
  private offs: Array<() => void> = [];
  private reloadTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private client: PreauClient,
    private inbox: Inbox,
    private hooks: MessagesHooks,
  ) {
    const write = el("button", { type: "button", className: "new-message", textContent: "Nouveau message" });
    write.addEventListener("click", () => this.compose());
    const listPane = el("div", { className: "conv-list-pane" }, el("div", { className: "pane-head" }, el("h2", { textContent: "Messages" }), write), this.status, this.list);
    this.detail.append(el("p", { className: "empty", textContent: "Choisissez une conversation, ou écrivez un nouveau message." }));
    this.root.append(listPane, this.detail);
  }

  show(): void {
    this.shown = true;
    if (!this.started) {
      this.started = true;
      this.offs.push(
        this.inbox.on((change) => {
          if (change?.kind === "joined") return this.reloadSoon();
          if (change?.kind === "notify" && isConversation(change.item.room)) {
            const c = this.conversations.find((x) => x.room === change.item.room);
            if (!c) return this.reloadSoon();
            c.last = Math.max(c.last, change.item.ts);
          }
          this.renderList();
        }),
        this.client.on("open", () => void this.load()),
      );
      void this.load();
    }
    this.inbox.view(this.root.dataset.pane === "conversation" ? this.current?.room : undefined);
    this.renderList();
  }

  hide(): void {
    this.shown = false;
    this.inbox.view(undefined);
  }

  dispose(): void {
    for (const off of this.offs.splice(0)) off();
    this.current?.dispose();
    if (this.reloadTimer) clearTimeout(this.reloadTimer);
  }

  private reloadSoon(): void {
    if (this.reloadTimer) return;
    this.reloadTimer = setTimeout(() => {
      this.reloadTimer = null;
      void this.load();
    }, 200);
  }

  private async load(): Promise<void> {
    if (this.client.state !== "open") {
      if (!this.conversations.length) this.status.textContent = "Hors ligne : les messages s'afficheront au retour du réseau.";
      return;
    }
    try {
      this.conversations = await this.client.conversations();
      this.status.textContent = this.conversations.length ? "" : "Aucune conversation pour l'instant.";
      this.status.hidden = this.conversations.length > 0;
      this.renderList();
    } catch (err) {
      this.status.hidden = false;
      this.status.textContent = errorText(err);
    }
  }

  private renderList(): void {
    const me = this.client.user?.id ?? "";
    const sorted = [...this.conversations].sort((a, b) => b.last - a.last);
    this.list.replaceChildren(
      ...sorted.map((c) => {
        const unread = this.inbox.unread(c.room);
        const names = othersOf(c.members, me).map((m) => m.name);
        const badge = el("span", { className: "unread", hidden: unread === 0, textContent: unread > 99 ? "99+" : String(unread) });
        badge.setAttribute("aria-label", unread === 1 ? "1 non lu" : `${unread} non lus`);
        const b = el(
          "button",
          { type: "button", className: "conversation-link" },
          el("span", { className: "names", textContent: listWords(names) }),
          el("span", { className: "when", textContent: c.last ? whenShort(c.last) : "" }),
          badge,
        );
        const active = c.room === this.current?.room;
        b.setAttribute("aria-current", active ? "true" : "false");
        b.addEventListener("click", () => this.open(c.room));
        return el("li", { "data-room": c.room, className: [active ? "active" : "", unread ? "has-unread" : ""].join(" ").trim() }, b);
      }),
    );
  }

  /** Shows conversation `room` (`started`: just opened with `dm_start`, whose `quiet` is said at once). */
  open(room: string, started?: DmOk): void {
    this.composing = undefined;
    if (this.current?.room !== room) {
      this.current?.dispose();
      const known = this.conversations.find((c) => c.room === room);
      this.current = new ConversationPane(this.client, room, started?.members ?? known?.members ?? [], {
        open: (r) => this.hooks.open(r),
        back: () => this.back(),
        members: (members) => {
          const c = this.conversations.find((x) => x.room === room);
          if (!c) return;
          c.members = members;
          this.renderList();
        },
      }, started?.quiet);
      this.detail.replaceChildren(this.current.root);
      this.current.start();
    }
    this.root.dataset.pane = "conversation";
    if (this.shown) this.inbox.view(room);
    this.renderList();
    this.current.focus();
  }

  /** « Nouveau message »: the recipient picker. */
  compose(): void {
    this.current?.dispose();
    this.current = undefined;
    this.inbox.view(undefined);
    this.composing = new NewMessagePane(this.client, (ok) => {
      if (!this.conversations.some((c) => c.room === ok.room)) this.conversations.unshift({ room: ok.room, members: ok.members, last: Date.now(), unread: 0 });
      this.open(ok.room, ok);
    }, () => this.back());
    this.detail.replaceChildren(this.composing.root);
    this.root.dataset.pane = "new";
    this.renderList();
    this.composing.focus();
  }

  /** Back to the list (a phone's one pane). */
  private back(): void {
    this.root.dataset.pane = "list";
    this.inbox.view(undefined);
    this.list.querySelector<HTMLElement>("li.active button")?.focus();
  }
}

// ---- one conversation -----------------------------------------------------------------------

interface Share {
  forum: string;
  thread: number;
  anonymous: boolean;
}

/** Loaded whole up to this many history pages (of 200 events); older ones with « Messages plus anciens ». */
const PAGES = 5;

class ConversationPane {
  root: HTMLElement;
  private list = el("ol", { className: "dm-messages" });
  private older = el("button", { type: "button", className: "secondary older", textContent: "Messages plus anciens", hidden: true });
  private title = el("h3", { textContent: "Conversation" });
  private membersLine = el("p", { className: "members" });
  private prefs = el("div", { className: "dm-prefs", hidden: true });
  private prefsBox: HTMLInputElement;
  private prefsSaved = el("span", { className: "saved", role: "status" });
  private notice = el("p", { className: "notice", hidden: true });
  /** Said to screen readers when a message is held by someone's quiet hours. */
  private announce = el("p", { className: "sr-only", role: "status" });
  private input = el("textarea", { className: "composer-input", rows: 2, placeholder: "Écrire un message…", maxLength: 4000 });
  private send = el("button", { type: "submit", textContent: "Envoyer", disabled: true });
  private addButton = el("button", { type: "button", className: "secondary add-person", textContent: "Ajouter une personne", hidden: true });
  private addPanel = el("section", { className: "add-people", hidden: true });
  private adder?: ContactPicker;
  private items = new Map<number, HTMLElement>();
  private events = new Map<number, EventFrame>();
  private members = new Map<string, UserInfo>();
  /** Each pupil's latest name preference (offset, named). */
  private named = new Map<string, { offset: number; named: boolean }>();
  private shared = new Map<number, Share>();
  /** Notes under one's own messages: whose quiet hours hold them. */
  private held = new Map<number, string[]>();
  private oldest = Infinity;
  private joined = false;
  private disposed = false;
  private offs: Array<() => void> = [];
  private forums?: Promise<string[]>;

  constructor(
    private client: PreauClient,
    readonly room: string,
    members: UserInfo[],
    private hooks: { open(room: string): void; back(): void; members(members: UserInfo[]): void },
    intro?: QuietMember[],
  ) {
    for (const m of members) this.members.set(m.id, m);
    const back = el("button", { type: "button", className: "secondary conv-back", textContent: "← Conversations" });
    back.addEventListener("click", () => hooks.back());
    const id = `dm-named-${room.slice(-8)}`;
    this.prefsBox = el("input", { type: "checkbox", id });
    this.prefsBox.addEventListener("change", () => void this.savePrefs());
    this.prefs.append(el("label", { className: "check", htmlFor: id }, this.prefsBox, el("span", { textContent: "Mon nom peut apparaître si ma question est partagée avec la classe" })), this.prefsSaved);
    this.input.setAttribute("aria-label", "Message");
    const composer = el("form", { className: "composer dm-composer" }, this.input, this.send);
    composer.addEventListener("submit", (ev) => {
      ev.preventDefault();
      void this.post();
    });
    // Enter sends (Maj+Entrée: a new line), as in most messaging apps.
    this.input.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
        ev.preventDefault();
        void this.post();
      }
    });
    this.older.addEventListener("click", () => void this.loadOlder());
    const panelId = `dm-add-${room.slice(-8)}`;
    this.addPanel.id = panelId;
    this.addPanel.setAttribute("aria-label", "Ajouter une personne");
    this.addButton.setAttribute("aria-controls", panelId);
    this.addButton.setAttribute("aria-expanded", "false");
    this.addButton.addEventListener("click", () => (this.addPanel.hidden ? this.openAdd() : this.closeAdd()));
    this.addPanel.addEventListener("keydown", (ev) => {
      if (ev.key === "Escape") this.closeAdd();
    });
    this.root = el(
      "section",
      { className: "conversation", "data-room": room },
      el("div", { className: "conv-head" }, back, el("div", { className: "conv-title" }, this.title, this.membersLine), this.addButton),
      this.addPanel,
      this.prefs,
      el("div", { className: "scroller" }, this.older, this.list),
      this.notice,
      this.announce,
      composer,
    );
    if (intro?.length) this.setNotice(`${heldTexts(intro, Date.now(), "votre message").join(". ")}.`, "info");
    this.renderHead();
  }

  focus(): void {
    if (!this.input.disabled) this.input.focus();
  }

  dispose(): void {
    this.disposed = true;
    this.adder?.dispose();
    for (const off of this.offs.splice(0)) off();
    void this.client.leave(this.room).catch(() => {});
  }

  async start(): Promise<void> {
    this.offs.push(
      this.client.on("event", (ev) => {
        if (ev.room !== this.room) return;
        this.apply(ev);
        this.scrollToEnd();
      }),
      this.client.on("reset", ({ room, head }) => {
        if (room !== this.room) return;
        this.items.clear();
        this.events.clear();
        this.list.replaceChildren();
        this.oldest = Infinity;
        void this.loadPages(head + 1);
      }),
    );
    try {
      const data = await this.client.join(this.room);
      if (this.disposed) return;
      this.joined = true;
      this.addButton.hidden = !ADD_HINTS[this.client.user?.role ?? ""];
      await this.loadPages(data.head + 1);
      this.send.disabled = false;
      this.scrollToEnd();
    } catch (err) {
      if (this.disposed) return;
      this.input.disabled = this.send.disabled = true;
      this.setNotice(code(err) === "forbidden" ? "Vous ne faites pas partie de cette conversation." : code(err) === "not_connected" ? "Hors ligne : la conversation s'affichera au retour du réseau." : errorText(err));
    }
  }

  private async loadPages(before: number, pages = PAGES): Promise<void> {
    for (let i = 0; i < pages; i++) {
      const page = await this.client.history(this.room, { before, limit: 200 });
      if (this.disposed) return;
      for (const ev of page.events) this.apply(ev);
      this.older.hidden = !page.more;
      if (!page.more || page.events.length === 0) break;
      before = page.events[0].offset;
    }
  }

  private async loadOlder(): Promise<void> {
    const scroller = this.list.parentElement!;
    const fromBottom = scroller.scrollHeight - scroller.scrollTop;
    try {
      await this.loadPages(this.oldest, 1);
    } catch (err) {
      toast(errorText(err), "error");
    }
    scroller.scrollTop = scroller.scrollHeight - fromBottom;
  }

  /** Inserts or replaces what `ev` shows, in offset order, and keeps the conversation's state. */
  private apply(ev: EventFrame): void {
    this.events.set(ev.offset, ev);
    this.oldest = Math.min(this.oldest, ev.offset);
    const b = ev.body;
    if (b.kind === "dm_members" && Array.isArray(b.members)) {
      for (const m of b.members as UserInfo[]) if (typeof m?.id === "string") this.members.set(m.id, m);
      this.renderHead();
      this.hooks.members([...this.members.values()]);
    }
    if (b.kind === "dm_prefs" && typeof b.named === "boolean") {
      const known = this.named.get(ev.from.id);
      if (!known || known.offset < ev.offset) this.named.set(ev.from.id, { offset: ev.offset, named: b.named });
      if (ev.from.id === this.client.user?.id) this.prefsBox.checked = this.named.get(ev.from.id)!.named;
    }
    if (b.kind === "dm_shared" && typeof b.at === "number" && typeof b.forum === "string") {
      this.shared.set(b.at, { forum: b.forum, thread: Number(b.thread ?? 0), anonymous: b.anonymous !== false });
      const question = this.events.get(b.at);
      if (question) this.place(question);
    }
    if (b.kind === "moderation") {
      const a = b.action as { kind?: string; offset?: number; reason?: string };
      if (a?.kind === "redact" && typeof a.offset === "number" && this.events.has(a.offset)) {
        const target = this.events.get(a.offset)!;
        this.apply({ ...target, body: { kind: "redacted", by: ev.from, reason: a.reason } });
      }
    }
    this.place(ev);
  }

  private place(ev: EventFrame): void {
    const item = this.render(ev);
    const existing = this.items.get(ev.offset);
    if (!item) {
      existing?.remove();
      this.items.delete(ev.offset);
      return;
    }
    if (existing) existing.replaceWith(item);
    else {
      const next = [...this.items.keys()].filter((o) => o > ev.offset).sort((a, b) => a - b)[0];
      if (next === undefined) this.list.append(item);
      else this.list.insertBefore(item, this.items.get(next)!);
    }
    this.items.set(ev.offset, item);
  }

  private render(ev: EventFrame): HTMLElement | null {
    const me = this.client.user;
    const b = ev.body;
    const name = (id: string) => this.members.get(id)?.name ?? id;
    switch (b.kind) {
      case "message": {
        const mine = ev.from.id === me?.id;
        const staff = isModerator(ev.from.role);
        const meta = el(
          "span",
          { className: "meta" },
          el("b", { textContent: mine ? "Vous" : ev.from.name }),
          staff && !mine ? el("span", { className: "role-tag", textContent: roleWord(ev.from.role) }) : "",
          ` ${whenShort(ev.ts)}`,
        );
        const li = el("li", { className: mine ? "dm-message mine" : "dm-message", "data-offset": ev.offset, "data-from": ev.from.id }, meta, el("p", { className: "text", textContent: String(b.text ?? "") }));
        const share = this.shared.get(ev.offset);
        if (share) li.append(el("p", { className: "shared-tag", textContent: `✓ Partagée avec la classe${share.anonymous ? " (sans le nom de l'élève)" : ""}` }));
        for (const text of this.held.get(ev.offset) ?? []) li.append(el("p", { className: "held-note", textContent: text }));
        const actions = el("div", { className: "msg-actions" });
        // A teacher answers a pupil's question for the whole class (a new thread of a help forum).
        if (me?.role === "teacher" && ev.from.role === "student" && !share) {
          const all = el("button", { type: "button", className: "secondary share", textContent: "Répondre à toute la classe" });
          all.addEventListener("click", () => void this.openShare(ev, li));
          actions.append(all);
        }
        if (!mine) {
          const report = el("button", { type: "button", className: "link report", textContent: "Signaler" });
          report.setAttribute("aria-label", `Signaler le message de ${ev.from.name}`);
          report.addEventListener("click", () => void this.report(ev));
          actions.append(report);
        }
        if (actions.childElementCount) li.append(actions);
        return li;
      }
      case "redacted": {
        const by = (b.by as UserInfo | undefined)?.name;
        return el("li", { className: "dm-message redacted", "data-offset": ev.offset }, el("span", { className: "meta", textContent: whenShort(ev.ts) }), el("p", { textContent: by ? `Message supprimé par ${by}` : "Message supprimé" }));
      }
      case "dm_members": {
        const added = (Array.isArray(b.members) ? (b.members as UserInfo[]) : []).filter((m) => m.id !== ev.from.id).map((m) => m.name);
        const starter = (b.members as UserInfo[] | undefined)?.some((m) => m.id === ev.from.id);
        const who = ev.from.id === me?.id ? "Vous avez" : `${ev.from.name} a`;
        const text = starter ? `${who} commencé la conversation avec ${listWords(added)}.` : `${who} ajouté ${listWords(added)} à la conversation.`;
        return el("li", { className: "system", "data-offset": ev.offset, textContent: text });
      }
      case "dm_shared": {
        const forum = String(b.forum ?? "");
        const asker = this.events.get(Number(b.at));
        const what = !asker ? "une question" : asker.from.id === me?.id ? "votre question" : `la question de ${asker.from.name}`;
        const li = el("li", {
          className: "system shared",
          "data-offset": ev.offset,
          textContent: `${ev.from.id === me?.id ? "Vous avez" : `${ev.from.name} a`} partagé ${what} avec la classe dans « ${roomTitle(forum)} »${b.anonymous !== false ? ", sans le nom de l'élève" : ""}. `,
        });
        const see = el("button", { type: "button", className: "link", textContent: "Voir le forum" });
        see.addEventListener("click", () => this.hooks.open(forum));
        li.append(see);
        return li;
      }
      case "dm_reviewed":
        return el("li", { className: "system reviewed", "data-offset": ev.offset, textContent: `${ev.from.name} (${roleWord(ev.from.role)}) a lu cette conversation après un signalement.` });
      case "moderation": {
        const a = b.action as { kind?: string };
        if (a?.kind === "redact") return null;
        return el("li", { className: "system", "data-offset": ev.offset, textContent: moderationText(ev, name) });
      }
      default:
        return null; // dm_prefs and unknown kinds show as nothing
    }
  }

  private renderHead(): void {
    const me = this.client.user;
    const all = [...this.members.values()];
    const others = othersOf(all, me?.id ?? "");
    this.title.textContent = others.length ? listWords(others.map((m) => m.name)) : "Conversation";
    this.membersLine.textContent = others.length ? `Avec ${listWords(others.map((m) => `${m.name} (${roleWord(m.role)})`))}` : "";
    // A pupil writing to a teacher chooses whether a shared question may name them.
    this.prefs.hidden = !(me?.role === "student" && all.some((m) => m.role === "teacher"));
  }

  /** « Ajouter une personne »: the contacts one may add (by role, not yet members), then `dm_add`. */
  private openAdd(): void {
    const role = this.client.user?.role ?? "";
    this.adder?.dispose();
    const go = el("button", { type: "button", className: "add-go", textContent: "Ajouter", disabled: true });
    const cancel = el("button", { type: "button", className: "secondary", textContent: "Annuler" });
    const error = el("p", { className: "notice", role: "alert", hidden: true });
    const picker = new ContactPicker(this.client, {
      id: `${this.addPanel.id}-search`,
      chosenLabel: "Personnes à ajouter",
      nobody: "Personne d'autre à ajouter à cette conversation.",
      keep: (c) => mayAdd(role, c) && !this.members.has(c.id),
      changed: () => {
        const n = picker.chosen.length;
        go.disabled = n === 0;
        go.textContent = n === 0 ? "Ajouter" : n === 1 ? `Ajouter ${picker.chosen[0].name}` : `Ajouter ${n} personnes`;
        error.hidden = true;
      },
    });
    this.adder = picker;
    cancel.addEventListener("click", () => this.closeAdd());
    go.addEventListener("click", async () => {
      const chosen = picker.chosen;
      if (!chosen.length) return;
      go.disabled = true;
      try {
        const ok = await this.client.dmAdd(this.room, chosen.map((c) => c.id));
        if (this.disposed) return;
        for (const m of ok.members) this.members.set(m.id, m);
        this.renderHead();
        this.hooks.members([...this.members.values()]);
        this.closeAdd();
        const names = listWords(chosen.map((c) => c.name));
        this.announce.textContent = `${names} ${chosen.length > 1 ? "font" : "fait"} maintenant partie de la conversation.`;
      } catch (err) {
        go.disabled = false;
        error.hidden = false;
        const several = chosen.length > 1 ? "ces personnes" : "cette personne";
        error.textContent =
          code(err) === "forbidden"
            ? `Vous ne pouvez pas ajouter ${several} : ${refusalText(err)}`
            : code(err) === "invalid_field" && err instanceof PreauError && err.message.includes("at most")
              ? "Une conversation réunit au plus 12 personnes."
              : errorText(err);
      }
    });
    this.addPanel.replaceChildren(
      el("h4", { textContent: "Ajouter une personne" }),
      el("p", { className: "hint", textContent: `${ADD_HINTS[role] ?? ""} Les personnes ajoutées pourront lire toute la conversation.` }),
      ...picker.parts(),
      error,
      el("div", { className: "row" }, go, cancel),
    );
    this.addPanel.hidden = false;
    this.addButton.setAttribute("aria-expanded", "true");
    picker.search.focus();
  }

  private closeAdd(): void {
    this.adder?.dispose();
    this.adder = undefined;
    this.addPanel.hidden = true;
    this.addPanel.replaceChildren();
    this.addButton.setAttribute("aria-expanded", "false");
    this.addButton.focus();
  }

  private setNotice(text: string, kind: "info" | "alert" = "alert"): void {
    this.notice.textContent = text;
    this.notice.hidden = !text;
    this.notice.setAttribute("role", kind === "alert" ? "alert" : "status");
  }

  private async post(): Promise<void> {
    const text = this.input.value.trim();
    if (!text || !this.joined || this.send.disabled) return;
    this.send.disabled = true;
    try {
      const sent = await this.client.dmSend(this.room, text);
      this.input.value = "";
      this.setNotice("");
      if (sent.held.length) {
        const notes = heldTexts(sent.held);
        this.held.set(sent.offset, notes);
        const ev = this.events.get(sent.offset);
        if (ev) this.place(ev);
        this.announce.textContent = notes.join(". ");
      }
    } catch (err) {
      this.setNotice(sendError(err, this.client.user));
    } finally {
      this.send.disabled = false;
      this.input.focus();
    }
  }

  private async savePrefs(): Promise<void> {
    const named = this.prefsBox.checked;
    this.prefsBox.disabled = true;
    this.prefsSaved.textContent = "";
    try {
      await this.client.dmPrefs(this.room, named);
      this.prefsSaved.textContent = "Enregistré";
    } catch (err) {
      this.prefsBox.checked = !named;
      this.setNotice(errorText(err));
    } finally {
      this.prefsBox.disabled = false;
    }
  }

  private async report(ev: EventFrame): Promise<void> {
    const reason = prompt("Pourquoi signalez-vous ce message ? (facultatif)");
    if (reason === null) return;
    try {
      await this.client.report(this.room, ev.offset, reason.trim() || undefined);
      toast("Signalement envoyé : un membre de la direction pourra lire cette conversation.");
    } catch (err) {
      toast(errorText(err), "error");
    }
  }

  /**
   * The help forums of the pupil's class where the teacher may post: the
   * pupil's classes (their contact card) the teacher teaches, each
   * class's forums, those whose settings say `help`.
   */
  private helpForums(pupil: UserInfo): Promise<string[]> {
    this.forums ??= (async () => {
      const mine = this.client.hello?.classes ?? [];
      let classes = mine;
      try {
        const { contacts } = await this.client.contacts({ query: pupil.name, limit: 50 });
        const card: Contact | undefined = contacts.find((c) => c.id === pupil.id);
        const theirs = card?.about ?? [];
        const both = theirs.filter((c) => mine.includes(c));
        if (both.length) classes = both;
        else if (theirs.length) classes = theirs;
      } catch {
        /* the teacher's own classes, then */
      }
      const found: string[] = [];
      for (const cls of classes) {
        const { rooms } = await this.client.rooms(cls, "forum");
        for (const room of rooms) {
          try {
            const { settings } = await this.client.threads(room, { limit: 1 });
            if (settings.flavour === "help") found.push(room);
          } catch {
            /* not readable: not offered */
          }
        }
      }
      return found;
    })();
    this.forums.catch(() => (this.forums = undefined));
    return this.forums;
  }

  /** « Répondre à toute la classe »: which help forum, an optional title, then `dm_share`. */
  private async openShare(ev: EventFrame, li: HTMLElement): Promise<void> {
    const existing = li.querySelector<HTMLElement>(".share-form");
    if (existing) return existing.querySelector<HTMLElement>("select, button")?.focus();
    const form = el("form", { className: "share-form" }, el("p", { className: "hint", textContent: "Recherche des forums d'entraide de la classe…" }));
    li.append(form);
    const cancel = el("button", { type: "button", className: "secondary", textContent: "Annuler" });
    cancel.addEventListener("click", () => form.remove());
    let forums: string[];
    try {
      forums = await this.helpForums(ev.from);
    } catch (err) {
      form.replaceChildren(el("p", { className: "notice", role: "alert", textContent: errorText(err) }), cancel);
      return;
    }
    if (forums.length === 0) {
      form.replaceChildren(el("p", { className: "notice", role: "alert", textContent: "Aucun forum d'entraide n'est ouvert dans la classe de cet élève : ouvrez-en un (type forum, entraide) pour y répondre à tous." }), cancel);
      return;
    }
    const id = `share-${ev.offset}`;
    const select = el("select", { id: `${id}-forum` }, ...forums.map((f) => el("option", { value: f, textContent: roomTitle(f) })));
    const title = el("input", { id: `${id}-title`, maxLength: 200, autocomplete: "off", placeholder: "Question d'un élève" });
    const named = this.named.get(ev.from.id)?.named === true;
    const submit = el("button", { type: "submit", textContent: "Partager la question" });
    form.replaceChildren(
      el("p", { className: "hint", textContent: named ? `${ev.from.name} accepte que son nom apparaisse avec sa question.` : `La question sera partagée sans le nom de ${ev.from.name}.` }),
      el("label", { htmlFor: select.id, textContent: "Forum d'entraide" }),
      select,
      el("label", { htmlFor: title.id, textContent: "Titre du sujet (facultatif)" }),
      title,
      el("div", { className: "row" }, submit, cancel),
    );
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      submit.disabled = true;
      try {
        const shared = await this.client.dmShare(this.room, ev.offset, select.value, title.value.trim() || undefined);
        form.remove();
        toast(`Question partagée dans « ${roomTitle(shared.forum)} »${shared.anonymous ? ", sans le nom de l'élève" : ""}.`);
      } catch (err) {
        submit.disabled = false;
        toast(errorText(err), "error");
      }
    });
    select.focus();
  }

  private scrollToEnd(): void {
    const s = this.list.parentElement!;
    s.scrollTop = s.scrollHeight;
  }
}

// ---- a new message: whom to -----------------------------------------------------------------

/** Contacts per search (the server's `more` says when there are others). */
const CONTACTS_SHOWN = 20;

interface PickerOptions {
  /** The search field's id. */
  id: string;
  /** The chosen people's list, for screen readers. */
  chosenLabel: string;
  /** What is said when nobody may be chosen. */
  nobody: string;
  /** Who among the contacts may be chosen (all of them without it). */
  keep?: (c: Contact) => boolean;
  /** The choice changed. */
  changed(): void;
}

/**
 * The people picker of « Nouveau message » and « Ajouter une personne »:
 * the chosen ones as chips, the contacts found as one types (name, role,
 * classes or subject), each a toggle button.
 */
class ContactPicker {
  chosen: Contact[] = [];
  chips: HTMLUListElement;
  search: HTMLInputElement;
  label: HTMLLabelElement;
  results = el("ul", { className: "contact-results", "aria-label": "Personnes trouvées" });
  count = el("p", { className: "contact-count", role: "status" });
  private shown: Contact[] = [];
  private seq = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private client: PreauClient,
    private opts: PickerOptions,
  ) {
    this.chips = el("ul", { className: "chips", "aria-label": opts.chosenLabel });
    this.search = el("input", { id: opts.id, type: "search", autocomplete: "off", spellcheck: false, placeholder: "Nom de la personne" });
    this.label = el("label", { htmlFor: opts.id, textContent: "Rechercher une personne" });
    this.search.addEventListener("input", () => {
      if (this.timer) clearTimeout(this.timer);
      this.timer = setTimeout(() => void this.find(), 200);
    });
    void this.find();
  }

  /** The picker's parts, in order. */
  parts(): HTMLElement[] {
    return [this.chips, this.label, this.search, this.count, this.results];
  }

  dispose(): void {
    if (this.timer) clearTimeout(this.timer);
    this.seq++;
  }

  private async find(): Promise<void> {
    const seq = ++this.seq;
    const query = this.search.value;
    const keep = this.opts.keep;
    try {
      // Some are filtered out here: ask for more, show as many.
      const found = await this.client.contacts({ query, limit: keep ? 50 : CONTACTS_SHOWN });
      if (seq !== this.seq) return; // a later search answered first, or will
      const kept = keep ? found.contacts.filter(keep) : found.contacts;
      this.shown = kept.slice(0, CONTACTS_SHOWN);
      const more = found.more || kept.length > this.shown.length;
      this.renderResults();
      const n = this.shown.length;
      this.count.textContent =
        n === 0 ? (query.trim() ? `Personne ne correspond à « ${query.trim()} ».` : this.opts.nobody) : more ? `${n} premières personnes : précisez la recherche.` : n === 1 ? "1 personne" : `${n} personnes`;
    } catch (err) {
      if (seq === this.seq) this.count.textContent = errorText(err);
    }
  }

  private renderResults(): void {
    this.results.replaceChildren(
      ...this.shown.map((c) => {
        const picked = this.chosen.some((x) => x.id === c.id);
        const b = el(
          "button",
          { type: "button", className: "contact", "data-id": c.id },
          el("span", { className: "name", textContent: c.name }),
          el("span", { className: "role", textContent: roleWord(c.role) }),
          c.about.length ? el("span", { className: "about", textContent: c.about.join(", ") }) : "",
        );
        b.setAttribute("aria-pressed", picked ? "true" : "false");
        b.addEventListener("click", () => this.toggle(c));
        return el("li", {}, b);
      }),
    );
  }

  private toggle(c: Contact): void {
    if (this.chosen.some((x) => x.id === c.id)) this.chosen = this.chosen.filter((x) => x.id !== c.id);
    else this.chosen.push(c);
    this.renderChosen();
    this.renderResults();
    this.opts.changed();
  }

  private renderChosen(): void {
    this.chips.replaceChildren(
      ...this.chosen.map((c) => {
        const remove = el("button", { type: "button", className: "secondary chip-remove", textContent: "×" });
        remove.setAttribute("aria-label", `Retirer ${c.name}`);
        remove.addEventListener("click", () => this.toggle(c));
        return el("li", { className: "chip" }, el("span", { textContent: c.name }), remove);
      }),
    );
  }
}

class NewMessagePane {
  root = el("section", { className: "new-message-pane" });
  private picker: ContactPicker;
  private go = el("button", { type: "button", className: "start-dm", textContent: "Écrire", disabled: true });

  constructor(
    private client: PreauClient,
    private started: (ok: DmOk) => void,
    back: () => void,
  ) {
    const backButton = el("button", { type: "button", className: "secondary conv-back", textContent: "← Conversations" });
    backButton.addEventListener("click", back);
    this.picker = new ContactPicker(client, { id: "dm-search", chosenLabel: "Destinataires", nobody: "Aucune personne à contacter.", changed: () => this.renderGo() });
    this.go.addEventListener("click", () => void this.start());
    this.root.append(
      el("div", { className: "conv-head" }, backButton, el("h3", { textContent: "Nouveau message" })),
      el("p", { className: "hint", textContent: "Vous pouvez écrire aux personnes que l'établissement vous permet de contacter." }),
      ...this.picker.parts(),
      this.go,
    );
  }

  focus(): void {
    this.picker.search.focus();
  }

  private renderGo(): void {
    const chosen = this.picker.chosen;
    const n = chosen.length;
    this.go.disabled = n === 0;
    this.go.textContent = n === 0 ? "Écrire" : n === 1 ? `Écrire à ${chosen[0].name}` : `Écrire à ${n} personnes`;
  }

  private async start(): Promise<void> {
    const chosen = this.picker.chosen;
    if (!chosen.length) return;
    this.go.disabled = true;
    try {
      this.started(await this.client.dmStart(chosen.map((c) => c.id)));
    } catch (err) {
      this.go.disabled = false;
      this.picker.count.textContent = code(err) === "forbidden" ? `Vous ne pouvez pas écrire à cette personne : ${refusalText(err)}` : errorText(err);
    }
  }
}

// ---- the notification feed ------------------------------------------------------------------------

export interface FeedHooks {
  /** Opens what a notification is about (its conversation or its room). */
  openItem(item: FeedItem): void;
  settings(): void;
}

/** The bell's feed: newest first, unread in bold, held ones marked; « Tout marquer comme lu ». */
export class FeedView {
  root = el("section", { className: "feed-view" });
  private list = el("ul", { className: "feed-items", "aria-label": "Notifications" });
  private readAll = el("button", { type: "button", className: "secondary read-all", textContent: "Tout marquer comme lu" });
  private quiet = el("p", { className: "quiet-now", hidden: true });
  private more = el("button", { type: "button", className: "secondary older", textContent: "Notifications plus anciennes", hidden: true });
  private off?: () => void;

  constructor(
    private client: PreauClient,
    private inbox: Inbox,
    private hooks: FeedHooks,
  ) {
    this.readAll.addEventListener("click", () => this.inbox.markRead());
    this.more.addEventListener("click", () => void this.loadOlder());
    const settings = el("button", { type: "button", className: "link", textContent: "Régler mes heures calmes" });
    settings.addEventListener("click", () => hooks.settings());
    this.quiet.append(el("span", {}), settings);
    this.root.append(el("div", { className: "pane-head" }, el("h2", { textContent: "Notifications" }), this.readAll), this.quiet, this.list, this.more);
  }

  show(): void {
    this.off ??= this.inbox.on(() => this.render());
    // Read again on opening: a held notification is in the feed only.
    void this.inbox.refresh();
    this.render();
  }

  dispose(): void {
    this.off?.();
  }

  private async loadOlder(): Promise<void> {
    const before = this.inbox.state.before;
    if (before === undefined) return;
    try {
      this.inbox.state.loadOlder(await this.client.feed({ before }));
      this.render();
    } catch (err) {
      toast(errorText(err), "error");
    }
  }

  private render(): void {
    const state = this.inbox.state;
    this.readAll.disabled = state.total === 0;
    const until = state.quiet.until;
    this.quiet.hidden = until === undefined;
    if (until !== undefined) {
      (this.quiet.firstChild as HTMLElement).textContent = isForever(until)
        ? "Heures calmes tous les jours : rien ne vous est signalé, retrouvez tout ici. "
        : `Heures calmes jusqu'à ${frenchTime(until)}${dayDiff(until) === 1 ? " demain" : ""} : rien ne vous est signalé d'ici là. `;
    }
    const items = state.items();
    this.more.hidden = !state.more;
    if (!state.loaded) {
      this.list.replaceChildren(el("li", { className: "empty", textContent: "Chargement…" }));
      return;
    }
    if (items.length === 0) {
      this.list.replaceChildren(el("li", { className: "empty", textContent: "Aucune notification." }));
      return;
    }
    this.list.replaceChildren(
      ...items.map((item) => {
        const held = item.holdUntil !== undefined && (isForever(item.holdUntil) || item.holdUntil > Date.now());
        const meta = el("span", { className: "meta" }, el("span", { textContent: whenShort(item.ts) }));
        if (held) meta.append(el("span", { className: "held-tag", textContent: "en attente (heures calmes)" }));
        if (item.urgent) meta.append(el("span", { className: "urgent-tag", textContent: "urgent" }));
        const b = el(
          "button",
          { type: "button", className: "feed-item" },
          el("span", { className: "what", textContent: itemText(item) }),
          item.preview ? el("span", { className: "preview", textContent: item.preview }) : "",
          meta,
          item.read ? "" : el("span", { className: "sr-only", textContent: " (non lu)" }),
        );
        b.addEventListener("click", () => this.hooks.openItem(item));
        return el("li", { className: item.read ? "read" : "unread", "data-offset": item.offset, "data-room": item.room }, b);
      }),
    );
  }
}

// ---- « Mon compte »: the quiet hours --------------------------------------------------------------------

/** The user, and their quiet hours: the effective ones, their own, or the school's again. */
export class SettingsView {
  root = el("section", { className: "settings-view" });
  private effective = el("p", { className: "quiet-effective" });
  private now = el("p", { className: "quiet-now" });
  private start = el("input", { type: "time", id: "quiet-start", required: true });
  private end = el("input", { type: "time", id: "quiet-end", required: true });
  private days = new Map<QuietDay, HTMLInputElement>();
  private reset = el("button", { type: "button", className: "secondary quiet-default", textContent: "Revenir au réglage de l'établissement" });
  private status = el("p", { className: "status", role: "status" });
  private state?: QuietState;
  private off?: () => void;

  constructor(
    private client: PreauClient,
    private inbox: Inbox,
  ) {
    const me = client.user;
    const dayBoxes = QUIET_DAYS.map((d) => {
      const box = el("input", { type: "checkbox", id: `quiet-day-${d}`, value: d });
      this.days.set(d, box);
      return el("label", { className: "day", htmlFor: box.id }, box, el("span", { textContent: DAY_NAMES[d] }));
    });
    const save = el("button", { type: "submit", textContent: "Enregistrer mes heures calmes" });
    const form = el(
      "form",
      { className: "quiet-form" },
      el("h4", { textContent: "Mes heures calmes" }),
      el("div", { className: "row" }, el("div", { className: "field" }, el("label", { htmlFor: "quiet-start", textContent: "Début" }), this.start), el("div", { className: "field" }, el("label", { htmlFor: "quiet-end", textContent: "Fin" }), this.end)),
      el("p", { className: "hint", textContent: "Si la fin est avant le début, les heures calmes passent minuit. Début et fin identiques : seulement les jours cochés." }),
      el("fieldset", { className: "quiet-days" }, el("legend", { textContent: "Toute la journée le…" }), ...dayBoxes),
      save,
    );
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const hours: QuietHours = { start: this.start.value, end: this.end.value, days: QUIET_DAYS.filter((d) => this.days.get(d)!.checked) };
      void this.apply(() => this.client.setQuietHours(hours), "Vos heures calmes sont enregistrées.");
    });
    this.reset.addEventListener("click", () => void this.apply(() => this.client.defaultQuietHours(), "Vous suivez de nouveau le réglage de l'établissement."));
    this.root.append(
      el("h2", { textContent: "Mon compte" }),
      el("p", { className: "who", textContent: me ? `${me.name} (${roleWord(me.role)})` : "" }),
      el(
        "section",
        { className: "quiet-card" },
        el("h3", { textContent: "Heures calmes" }),
        el("p", { textContent: "Pendant vos heures calmes, préau ne vous signale rien : les messages vous attendent, et ceux qui vous écrivent savent quand vous les verrez. Les heures sont celles de l'établissement (Paris)." }),
        this.effective,
        this.now,
        this.reset,
        form,
        this.status,
      ),
    );
  }

  show(): void {
    this.off ??= this.inbox.on((change) => {
      if (change === null) this.fill(this.inbox.state.quiet, false);
    });
    void this.load();
  }

  dispose(): void {
    this.off?.();
  }

  private async load(): Promise<void> {
    try {
      this.fill(await this.client.quietHours(), true);
    } catch (err) {
      this.status.textContent = errorText(err);
    }
  }

  /** Shows `q`; `form`: the form takes its values too (not while the user may be editing). */
  private fill(q: QuietState, form: boolean): void {
    this.state = q;
    this.effective.textContent = `En vigueur : ${quietWords(q.hours)} — ${q.own ? "votre réglage" : "réglage de l'établissement"}.`;
    this.now.textContent =
      q.until === undefined ? "En ce moment : pas d'heures calmes, vous êtes prévenu(e) de ce qui arrive." : isForever(q.until) ? "En ce moment : heures calmes, tous les jours." : `En ce moment : heures calmes jusqu'à ${frenchTime(q.until)}${dayDiff(q.until) === 1 ? " demain" : ""}.`;
    this.reset.hidden = !q.own;
    if (!form) return;
    this.start.value = q.hours.start;
    this.end.value = q.hours.end;
    for (const [d, box] of this.days) box.checked = q.hours.days.includes(d);
  }

  private async apply(action: () => Promise<unknown>, done: string): Promise<void> {
    this.status.textContent = "";
    try {
      await action();
      this.fill(await this.client.quietHours(), true);
      this.status.textContent = done;
    } catch (err) {
      this.status.textContent = code(err) === "invalid_field" ? "Heures refusées : indiquez un début et une fin (HH:MM)." : errorText(err);
    }
  }
}
