// Announcements in the web app (a chunk loaded when first shown):
//
// - AnnouncementView: one announcement, opened from the bell's feed (or
//   `?room=_/announce/…`): title, text, sender, date, « Urgent »; a
//   recipient's opening sends `announce_read` once, and « J'ai lu et
//   j'approuve » acknowledges it when asked. Its sender (and staff) see
//   who has read it instead, updated live.
// - AnnouncesView: « Annonces », for teachers and staff: what they sent,
//   each with « lue par 23 sur 31 » (asked as the item scrolls into view),
//   « Nouvelle annonce » (the lists they may write to, from hello's
//   classes), and one announcement's status: counts, who has not read it,
//   the families none of whose parents opened it, who has not approved it.

import { PreauError, type EventFrame, type PreauClient, type UserInfo } from "../src/client.js";
import {
  announce,
  announceAck,
  announceRead,
  announceStatus,
  announcementOf,
  announcements,
  receiptOf,
  type AnnounceStatus,
  type AnnounceTarget,
  type Announcement,
  type SentAnnouncement,
} from "../src/announce.js";
import { el, errorText, toast, type RoomHooks } from "./common.js";

const dateFmt = new Intl.DateTimeFormat("fr-FR", { timeZone: "Europe/Paris", dateStyle: "long", timeStyle: "short" });
const shortFmt = new Intl.DateTimeFormat("fr-FR", { timeZone: "Europe/Paris", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" });

/** « le 6 décembre 2026 à 09:30 ». */
function when(ts: number): string {
  return `le ${dateFmt.format(ts)}`;
}

/** « de Léa » / « d'Inès »: French elision before a vowel. */
function de(name: string): string {
  return /^[aeiouyàâäéèêëîïôöùûüœ]/i.test(name) ? `d'${name}` : `de ${name}`;
}

/** A diffusion list in words (« Parents de 3B »). */
export function targetLabel(t: string): string {
  const [kind, arg] = t.includes(":") ? [t.slice(0, t.indexOf(":")), t.slice(t.indexOf(":") + 1)] : [t, ""];
  switch (kind) {
    case "school":
      return "Tout l'établissement";
    case "staff":
      return "Tout le personnel";
    case "teachers":
      return arg ? `Équipe de ${arg}` : "Tous les enseignants";
    case "class":
    case "group":
      return `Élèves de ${arg}`;
    case "parents":
      return `Parents de ${arg}`;
    case "level":
      return `Élèves de ${arg === "" ? "?" : arg.match(/^\d/) ? arg : `niveau ${arg}`}`;
    default:
      return t;
  }
}

/** « 1 personne », « 31 personnes ». */
function people(n: number): string {
  return `${n} ${n === 1 ? "personne" : "personnes"}`;
}

function code(err: unknown): string {
  return err instanceof PreauError ? err.code : "";
}

/** Why sending was refused, in the form's words. */
function sendError(err: unknown): string {
  switch (code(err)) {
    case "forbidden":
      return "Envoi refusé : vous ne pouvez pas écrire à l'une de ces listes, ou elle ne compte personne.";
    case "invalid_field":
      return "Indiquez un titre (200 caractères au plus) et un texte, et au moins un destinataire.";
    case "message_too_long":
      return "Le texte est trop long.";
    default:
      return errorText(err);
  }
}

// ---- status ------------------------------------------------------------------------------------------------

/**
 * One announcement's receipts for its sender (and staff): counts, who has
 * not read it, families, who has not approved it. Joined to the room, it
 * reads the status again when a receipt arrives.
 */
class StatusPanel {
  root = el("section", { className: "announce-status", "aria-label": "Suivi de lecture" });
  private room?: string;
  private timer?: ReturnType<typeof setTimeout>;
  private off: () => void;

  /** Told of each status read (the list's « lue par … » follows it). */
  onStatus?: (s: AnnounceStatus) => void;

  constructor(private client: PreauClient) {
    this.off = client.on("event", (ev) => {
      if (ev.room === this.room && receiptOf(ev)) this.soon();
    });
  }

  async load(room: string): Promise<void> {
    this.room = room;
    this.root.replaceChildren(el("p", { className: "empty", textContent: "Chargement…" }));
    if (!this.client.isJoined(room)) {
      // Joined: receipts arrive live.
      this.client.join(room).catch(() => {});
    }
    await this.refresh();
  }

  private soon(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.refresh(), 300);
  }

  private async refresh(): Promise<void> {
    const room = this.room;
    if (!room) return;
    try {
      const s = await announceStatus(this.client, room);
      if (room === this.room) this.render(s);
      this.onStatus?.(s);
    } catch (err) {
      if (room === this.room) this.root.replaceChildren(el("p", { className: "notice", role: "alert", textContent: `Suivi indisponible : ${errorText(err)}` }));
    }
  }

  private render(s: AnnounceStatus): void {
    const counts = el(
      "ul",
      { className: "announce-counts" },
      el("li", { className: "count-read" }, el("b", { textContent: `${s.read} sur ${s.recipients}` }), el("span", { textContent: s.read === 1 ? " l'a lue" : " l'ont lue" })),
    );
    if (s.ack) counts.append(el("li", { className: "count-acked" }, el("b", { textContent: `${s.acked} sur ${s.recipients}` }), el("span", { textContent: s.acked === 1 ? " l'a approuvée" : " l'ont approuvée" })));
    const parts: HTMLElement[] = [el("h3", { textContent: "Suivi de lecture" }), counts];
    const names = (users: UserInfo[]) => el("ul", { className: "names" }, ...users.map((u) => el("li", { textContent: u.name })));
    if (s.familiesNotRead.length) {
      parts.push(
        el("h4", { textContent: "Familles qui ne l'ont pas lue" }),
        el(
          "ul",
          { className: "names families" },
          ...s.familiesNotRead.map((f) => el("li", { textContent: `Famille ${de(f.child.split(" ")[0] || f.child)}${f.class ? ` (${f.class})` : ""} : ${f.parents.join(", ")}` })),
        ),
      );
    }
    if (s.notRead.length) parts.push(el("h4", { textContent: "Pas encore lue par" }), names(s.notRead));
    else parts.push(el("p", { className: "all-done", textContent: "Tout le monde l'a lue." }));
    if (s.ack) {
      if (s.notAcked.length) parts.push(el("h4", { textContent: "Pas encore approuvée par" }), names(s.notAcked));
      else parts.push(el("p", { className: "all-done", textContent: "Tout le monde l'a approuvée." }));
    }
    this.root.replaceChildren(...parts);
  }

  dispose(): void {
    clearTimeout(this.timer);
    this.off();
  }
}

// ---- one announcement ----------------------------------------------------------------------------------------

/** An announcement as its readers see it (the room `_/announce/<hex>`). */
export class AnnouncementView {
  root = el("section", { className: "announce-view" });
  private loaded = false;
  private readSent = false;
  private status?: StatusPanel;

  constructor(
    private client: PreauClient,
    private room: string,
    private hooks: RoomHooks,
  ) {
    this.root.dataset.room = room;
    this.root.append(el("p", { className: "empty", textContent: "Chargement…" }));
  }

  show(): void {
    if (!this.loaded) void this.load();
  }

  dispose(): void {
    this.status?.dispose();
  }

  private async load(): Promise<void> {
    this.loaded = true;
    let events: EventFrame[];
    try {
      if (!this.client.isJoined(this.room)) {
        try {
          await this.client.join(this.room);
        } catch (err) {
          if (code(err) !== "already_joined") throw err;
        }
      }
      events = (await this.client.history(this.room, { limit: 200 })).events;
    } catch (err) {
      this.loaded = false;
      if (code(err) === "forbidden" || code(err) === "invalid_room") return this.hooks.forbidden();
      this.root.replaceChildren(el("p", { className: "notice", role: "alert", textContent: `Cette annonce n'a pas pu être chargée : ${errorText(err)}` }));
      return;
    }
    const a = events.map(announcementOf).find((x) => x !== null);
    if (!a) {
      this.root.replaceChildren(el("p", { className: "notice", role: "alert", textContent: "Cette annonce n'existe plus." }));
      return;
    }
    const me = this.client.user!;
    const mine = (kind: string) => events.some((ev) => ev.body.kind === kind && ev.from.id === me.id);
    this.render(a, mine("announce_ack"));
    // A recipient has opened it: said once (the server keeps one per reader).
    if (a.from.id !== me.id && !this.readSent && !mine("announce_read") && !mine("announce_ack")) {
      this.readSent = true;
      announceRead(this.client, this.room).catch((err) => {
        // Staff who are not among the recipients read it without a receipt.
        if (code(err) !== "forbidden") this.readSent = false;
      });
    }
  }

  private render(a: Announcement, acked: boolean): void {
    const me = this.client.user!;
    const head = el("div", { className: "announce-head" });
    if (a.urgent) head.append(el("span", { className: "urgent-tag", textContent: "Urgent" }));
    head.append(el("h2", { textContent: a.title }));
    const meta = el("p", { className: "announce-meta" }, `Annonce de `, el("b", { textContent: a.from.id === me.id ? "vous" : a.from.name }), `, ${when(a.ts)}`);
    const to = el("p", { className: "announce-to", textContent: `À : ${a.targets.map(targetLabel).join(", ")} (${people(a.count)})` });
    const text = el("div", { className: "announce-text" }, ...a.text.split(/\n{2,}/).map((p) => el("p", { textContent: p })));
    const parts: HTMLElement[] = [head, meta, to, text];
    if (a.ack && a.from.id !== me.id) parts.push(this.ackBlock(acked));
    if (a.from.id === me.id || me.role === "staff") {
      this.status ??= new StatusPanel(this.client);
      void this.status.load(this.room);
      parts.push(this.status.root);
    }
    this.root.replaceChildren(el("article", { className: "announce-card" }, ...parts));
  }

  /** « J'ai lu et j'approuve », then « Lu et approuvé ✓ ». */
  private ackBlock(acked: boolean): HTMLElement {
    const block = el("div", { className: "announce-ack" });
    const done = () => block.replaceChildren(el("p", { className: "acked", role: "status", textContent: "Lu et approuvé ✓" }));
    if (acked) {
      done();
      return block;
    }
    const button = el("button", { type: "button", className: "ack", textContent: "J'ai lu et j'approuve" });
    const status = el("p", { className: "status", role: "status" });
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        await announceAck(this.client, this.room);
        done();
      } catch (err) {
        button.disabled = false;
        status.textContent = errorText(err);
      }
    });
    block.append(el("p", { className: "hint", textContent: "L'expéditeur demande une confirmation de lecture." }), button, status);
    return block;
  }
}

// ---- « Annonces »: sent, new, status -------------------------------------------------------------------------

/** The lists a user may write to, as checkboxes. */
function targetChoices(client: PreauClient): Array<{ target: AnnounceTarget; label: string; group: string }> {
  const hello = client.hello;
  const staff = client.user?.role === "staff";
  const choices: Array<{ target: AnnounceTarget; label: string; group: string }> = [];
  if (staff) {
    for (const t of ["school", "teachers", "staff"] as const) choices.push({ target: t, label: targetLabel(t), group: "Établissement" });
  }
  for (const c of hello?.classes ?? []) {
    for (const t of [`class:${c}`, `parents:${c}`, `teachers:${c}`] as const) choices.push({ target: t, label: targetLabel(t), group: `Classe ${c}` });
  }
  return choices;
}

/** « lue par 23 sur 31 » (« · approuvée par 20 » when asked). */
function tallyText(s: AnnounceStatus): string {
  return `lue par ${s.read} sur ${s.recipients}${s.ack ? ` · approuvée par ${s.acked}` : ""}`;
}

export interface AnnouncesHooks {
  /** Opens an announcement in the app (its own view). */
  open(room: string): void;
}

/** « Annonces » (teachers and staff). */
export class AnnouncesView {
  root = el("section", { className: "announces-view" });
  private list = el("ul", { className: "sent-list", "aria-label": "Annonces envoyées" });
  private detail = el("div", { className: "announce-detail", hidden: true });
  private compose = el("details", { className: "announce-new" });
  private form: HTMLFormElement;
  private status: StatusPanel;
  private observer?: IntersectionObserver;
  private loading = false;
  private again = false;
  /**
   * Sent from this view and not listed yet: the server answers `announce`
   * before the sender's feed holds its `announce_sent`, which is what
   * `announcements` reads; shown meanwhile, and the list is read again
   * when that event arrives.
   */
  /** The announcement whose status is shown. */
  private shown?: string;
  private justSent = new Map<string, SentAnnouncement>();
  private off: () => void;

  constructor(
    private client: PreauClient,
    private hooks: AnnouncesHooks,
  ) {
    this.status = new StatusPanel(client);
    this.status.onStatus = (s) => {
      const tally = this.list.querySelector<HTMLElement>(`li[data-room="${CSS.escape(s.room)}"] .tally`);
      if (tally) tally.textContent = tallyText(s);
    };
    this.off = client.on("event", (ev) => {
      if (ev.room.startsWith("_/inbox/") && ev.body.kind === "announce_sent") void this.reload();
    });
    this.form = this.makeForm();
    this.compose.append(el("summary", { textContent: "Nouvelle annonce" }), this.form);
    this.root.append(el("div", { className: "pane-head" }, el("h2", { textContent: "Annonces" })), this.compose, el("h3", { className: "sent-title", textContent: "Annonces envoyées" }), this.list, this.detail);
  }

  show(): void {
    void this.reload();
  }

  dispose(): void {
    this.off();
    this.observer?.disconnect();
    this.status.dispose();
  }

  private makeForm(): HTMLFormElement {
    const staff = this.client.user?.role === "staff";
    const boxes: HTMLInputElement[] = [];
    const groups = new Map<string, HTMLElement>();
    for (const c of targetChoices(this.client)) {
      let g = groups.get(c.group);
      if (!g) groups.set(c.group, (g = el("div", { className: "target-group", role: "group", "aria-label": c.group }, el("span", { className: "group-name", textContent: c.group }))));
      const id = `target-${c.target.replace(/[^A-Za-z0-9_-]/g, "-")}`;
      const box = el("input", { type: "checkbox", id, value: c.target });
      boxes.push(box);
      g.append(el("label", { className: "day", htmlFor: id }, box, el("span", { textContent: c.label })));
    }
    const fieldset = el("fieldset", { className: "announce-targets" }, el("legend", { textContent: "Destinataires" }), ...groups.values());
    const level = el("input", { id: "announce-level", placeholder: "3e", autocomplete: "off", maxLength: 32 });
    if (staff) {
      fieldset.append(el("div", { className: "field" }, el("label", { htmlFor: "announce-level", textContent: "Élèves d'un niveau (ex. 3e ; plusieurs : séparés par des virgules)" }), level));
    }
    if (boxes.length === 0 && !staff) fieldset.append(el("p", { className: "hint", textContent: "Aucune classe n'est associée à votre compte : vous ne pouvez écrire à aucune liste." }));
    const title = el("input", { id: "announce-title", required: true, maxLength: 200, autocomplete: "off" });
    const text = el("textarea", { id: "announce-text", required: true, rows: 6 });
    const ack = el("input", { type: "checkbox", id: "announce-ack" });
    const urgent = el("input", { type: "checkbox", id: "announce-urgent" });
    const status = el("p", { className: "status", role: "status" });
    const send = el("button", { type: "submit", textContent: "Envoyer l'annonce" });
    const form = el(
      "form",
      { className: "announce-form" },
      fieldset,
      el("div", { className: "field" }, el("label", { htmlFor: "announce-title", textContent: "Titre" }), title),
      el("div", { className: "field" }, el("label", { htmlFor: "announce-text", textContent: "Texte" }), text),
      el("label", { className: "check", htmlFor: "announce-ack" }, ack, el("span", { textContent: "Demander une confirmation de lecture (lu et approuvé)" })),
      staff ? el("label", { className: "check", htmlFor: "announce-urgent" }, urgent, el("span", { textContent: "Urgent (ignore les heures calmes)" })) : "",
      send,
      status,
    );
    // One key per message written: a double click, or sending again after
    // a lost answer, sends it once (the server answers the first reply).
    let key = crypto.randomUUID();
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const targets = boxes.filter((b) => b.checked).map((b) => b.value as AnnounceTarget);
      for (const l of level.value.split(",").map((s) => s.trim()).filter(Boolean)) targets.push(`level:${l}`);
      if (targets.length === 0) {
        status.textContent = "Choisissez au moins un destinataire.";
        return;
      }
      if (!title.value.trim() || !text.value.trim()) {
        status.textContent = "Indiquez un titre et un texte.";
        return;
      }
      send.disabled = true;
      status.textContent = "Envoi…";
      try {
        const what = title.value.trim();
        const ok = await announce(this.client, { targets, title: what, text: text.value, ack: ack.checked, urgent: staff && urgent.checked, key });
        key = crypto.randomUUID();
        status.textContent = `Annonce envoyée à ${people(ok.recipients)}.`;
        toast(`Annonce envoyée à ${people(ok.recipients)}.`);
        form.reset();
        this.compose.open = false;
        const sent: SentAnnouncement = { room: ok.room, title: what, ts: Date.now(), recipients: ok.recipients };
        this.justSent.set(ok.room, sent);
        await this.reload();
        void this.showStatus(sent);
      } catch (err) {
        status.textContent = sendError(err);
      } finally {
        send.disabled = false;
      }
    });
    return form;
  }

  private async reload(): Promise<void> {
    if (this.loading) {
      this.again = true;
      return;
    }
    this.loading = true;
    try {
      do {
        this.again = false;
        const sent = await announcements(this.client);
        for (const s of sent) this.justSent.delete(s.room);
        this.renderList([...[...this.justSent.values()].reverse(), ...sent]);
      } while (this.again);
    } catch (err) {
      this.list.replaceChildren(el("li", { className: "empty", textContent: `Liste indisponible : ${errorText(err)}` }));
    } finally {
      this.loading = false;
    }
  }

  private renderList(sent: SentAnnouncement[]): void {
    this.observer?.disconnect();
    if (sent.length === 0) {
      this.list.replaceChildren(el("li", { className: "empty", textContent: "Aucune annonce envoyée pour l'instant." }));
      return;
    }
    // « lue par 23 sur 31 », asked as each item comes into view.
    this.observer = new IntersectionObserver((entries) => {
      for (const e of entries) {
        if (!e.isIntersecting) continue;
        this.observer?.unobserve(e.target);
        const li = e.target as HTMLElement;
        const tally = li.querySelector<HTMLElement>(".tally")!;
        announceStatus(this.client, li.dataset.room!).then(
          (s) => (tally.textContent = tallyText(s)),
          () => {},
        );
      }
    });
    this.list.replaceChildren(
      ...sent.map((s) => {
        const b = el(
          "button",
          { type: "button", className: "sent-item" },
          el("span", { className: "title", textContent: s.title }),
          el("span", { className: "meta" }, el("span", { textContent: shortFmt.format(s.ts) }), el("span", { className: "tally", textContent: `envoyée à ${people(s.recipients)}` })),
        );
        b.addEventListener("click", () => void this.showStatus(s));
        const li = el("li", { "data-room": s.room }, b);
        if (s.room === this.shown) {
          li.classList.add("active");
          b.setAttribute("aria-current", "true");
        }
        this.observer!.observe(li);
        return li;
      }),
    );
  }

  /** One announcement's status, below the list (the list's item marked). */
  private async showStatus(s: SentAnnouncement): Promise<void> {
    this.shown = s.room;
    for (const li of this.list.querySelectorAll<HTMLElement>("li[data-room]")) {
      const active = li.dataset.room === s.room;
      li.classList.toggle("active", active);
      li.querySelector("button")?.setAttribute("aria-current", active ? "true" : "false");
    }
    const open = el("button", { type: "button", className: "secondary", textContent: "Voir l'annonce" });
    open.addEventListener("click", () => this.hooks.open(s.room));
    this.detail.hidden = false;
    this.detail.replaceChildren(el("div", { className: "pane-head" }, el("h3", { textContent: s.title }), open), this.status.root);
    await this.status.load(s.room);
    this.detail.scrollIntoView({ block: "nearest" });
  }
}
