// Forum view of the web app: the thread list (live), a new-thread form, and
// one thread with its posts, replies, quotes, edits, deletions and the
// answer of a help thread. State lives in ThreadList / ThreadTimeline
// (src/forum.ts); this file only renders it and sends requests.

import { PreauError, type EventFrame, type PreauClient, type ThreadInfo, type UserInfo } from "../src/client.js";
import { ThreadList, ThreadTimeline, forumItem, isForumModerator, type ForumPost } from "../src/forum.js";
import { FLAVOUR_LABELS, el, errorText, formatTime, moderationText, roomTitle, toast, userLabel } from "./common.js";
import type { OfflineStore, ThreadCopy } from "./offline.js";

const MAX_QUOTE_BYTES = 500;
const MAX_TITLE_BYTES = 200;
// A thread is loaded whole up to this many history pages; older posts come on demand.
const THREAD_PAGES = 5;
// Threads whose posts are kept for the offline copy (the most recently opened).
const KEPT_THREADS = 20;

type Doing = "new_thread" | "reply" | "edit" | "answer" | "delete" | "load";

/** A refusal in French, with what the user was doing for context. */
export function forumErrorText(err: unknown, doing: Doing, lockedThread = false): string {
  if (!(err instanceof PreauError)) return String(err);
  switch (err.code) {
    case "read_only":
      return lockedThread || doing !== "new_thread"
        ? "Ce sujet est verrouillé : seuls les enseignants peuvent encore y écrire."
        : "Ce forum est en lecture seule.";
    case "not_editable":
      return "Ce message ne peut plus être modifié : quelqu'un y a déjà répondu, ou le délai de modification (15 min) est passé.";
    case "forbidden":
      switch (doing) {
        case "new_thread":
          return "Dans un forum de débat, seuls les enseignants ouvrent un sujet : répondez à un sujet existant.";
        case "edit":
          return "Vous ne pouvez modifier que vos propres messages.";
        case "answer":
          return "Seul l'auteur de la question ou un enseignant choisit la réponse.";
        case "delete":
          return "Vous ne pouvez supprimer que vos propres messages.";
        case "load":
          return "Vous n'avez pas accès à ce forum.";
        default:
          return "Vous ne pouvez pas écrire dans ce forum.";
      }
    case "unknown_target":
      return doing === "reply" || doing === "new_thread"
        ? "Ce sujet ou ce message n'existe plus."
        : "Ce message n'existe plus (supprimé ?).";
    case "invalid_field":
      return doing === "new_thread" ? "Il faut un titre (200 caractères au plus) et un texte." : "Le texte est vide ou trop long.";
    default:
      return errorText(err);
  }
}

/** Cuts `s` to at most `max` bytes of UTF-8 without splitting a character. */
export function cutBytes(s: string, max: number): string {
  const enc = new TextEncoder();
  if (enc.encode(s).length <= max) return s;
  let out = "";
  for (const ch of s) {
    if (enc.encode(out + ch + "…").length > max) break;
    out += ch;
  }
  return out + "…";
}

export class ForumView {
  root: HTMLElement;
  private flavourTag = el("span", { className: "flavour" });
  private notice = el("p", { className: "notice", hidden: true });
  private newButton = el("button", { type: "button", className: "new-thread", textContent: "Nouveau sujet" });
  private newForm = el("form", { className: "new-thread-form", hidden: true });
  private newTitle = el("input", { id: "forum-title", placeholder: "Titre du sujet", maxLength: MAX_TITLE_BYTES, autocomplete: "off" });
  private newText = el("textarea", { id: "forum-text", rows: 4, placeholder: "Votre message…" });
  private listEl = el("ul", { className: "thread-list" });
  private moreThreads = el("button", { type: "button", className: "secondary", textContent: "Plus de sujets", hidden: true });
  private threadPane = el("div", { className: "thread-view" });
  private postsEl = el("ol", { className: "posts" });
  private olderPosts = el("button", { type: "button", className: "secondary older", textContent: "Messages plus anciens", hidden: true });
  private threadHead = el("div", { className: "thread-head" });
  private threadNotice = el("p", { className: "notice", hidden: true });
  private composer = el("form", { className: "reply-form" });
  private replying = el("div", { className: "replying", hidden: true });
  private replyText = el("textarea", { id: "reply-text", rows: 3, placeholder: "Votre réponse…" });
  private replySend = el("button", { type: "submit", textContent: "Répondre" });

  private list: ThreadList;
  private open?: { thread: number; timeline: ThreadTimeline; marked: number };
  private replyTo?: { offset: number; name: string; quote?: string };
  private editing?: { offset: number; form: HTMLFormElement };
  // Posts whose earlier versions are unfolded: kept open across re-renders.
  private unfolded = new Set<number>();
  private loading = true;
  private buffered: EventFrame[] = [];
  private reloadTimer: ReturnType<typeof setTimeout> | null = null;
  private started = false;
  private visible = false;
  private joined = false;
  /** Shown from the offline copy, not joined yet: read-only. */
  private offline = false;
  /** Posts of the threads opened (most recently opened last), for the offline copy. */
  private kept = new Map<number, ThreadCopy>();
  private unsubscribe: Array<() => void> = [];

  /**
   * `hooks.unknown` is called when the join is refused with `unknown_room`
   * (no teacher opened the forum yet): the app then drops this view.
   */
  constructor(
    private client: PreauClient,
    private room: string,
    private hooks?: { unknown(): void; forbidden?(): void },
    private store: OfflineStore | null = null,
  ) {
    this.root = el("section", { className: "forum", "data-room": room });
    this.list = new ThreadList(client.user?.id ?? "");
    this.newForm.append(
      el("label", { htmlFor: "forum-title", textContent: "Titre" }),
      this.newTitle,
      el("label", { htmlFor: "forum-text", textContent: "Message" }),
      this.newText,
      el("div", { className: "row" }, el("button", { type: "submit", textContent: "Publier" }), this.cancelButton(() => (this.newForm.hidden = true))),
    );
    this.newButton.addEventListener("click", () => {
      this.newForm.hidden = !this.newForm.hidden;
      if (!this.newForm.hidden) this.newTitle.focus();
    });
    this.newForm.addEventListener("submit", (ev) => {
      ev.preventDefault();
      void this.createThread();
    });
    this.moreThreads.addEventListener("click", () => void this.loadMoreThreads());
    this.olderPosts.addEventListener("click", () => void this.loadOlderPosts());
    this.composer.append(this.replying, this.replyText, el("div", { className: "row" }, this.replySend));
    this.composer.addEventListener("submit", (ev) => {
      ev.preventDefault();
      void this.sendReply();
    });
    this.threadPane.append(
      el("p", { className: "empty", textContent: "Choisissez un sujet dans la liste." }),
    );
    const listPane = el("div", { className: "threads-pane" }, this.newButton, this.newForm, this.listEl, this.moreThreads);
    this.root.append(
      el("h2", {}, roomTitle(room), " ", this.flavourTag),
      this.notice,
      el("div", { className: "forum-panes" }, listPane, this.threadPane),
    );
  }

  show(): void {
    this.visible = true;
    if (!this.started) {
      this.started = true;
      this.wire();
      void this.start();
    } else {
      this.markRead();
    }
  }

  hide(): void {
    this.visible = false;
  }

  /** Stops listening to the client (the app dropped this view). */
  dispose(): void {
    this.visible = false;
    if (this.reloadTimer) clearTimeout(this.reloadTimer);
    this.reloadTimer = null;
    for (const off of this.unsubscribe.splice(0)) off();
  }

  private get me(): UserInfo | undefined {
    return this.client.user;
  }

  private get moderator(): boolean {
    return isForumModerator(this.me, this.client.hello?.classes ?? [], this.room, this.list.settings);
  }

  private wire(): void {
    this.unsubscribe.push(
      this.client.on("event", (ev) => {
        if (ev.room !== this.room) return;
        if (this.loading) this.buffered.push(ev);
        else this.apply(ev);
      }),
      // A recovery that failed: what we hold may be stale. Reload everything.
      this.client.on("reset", ({ room }) => {
        if (room === this.room) void this.reload();
      }),
      this.client.on("removed", ({ room }) => {
        if (room !== this.room) return;
        this.joined = false;
        this.setNotice(this.notice, "Vous n'êtes plus membre de ce forum.");
      }),
    );
  }

  private async start(): Promise<void> {
    // Not connected (the app started offline, or the network is gone): the
    // stored copy until the join, which waits for the connection; then the
    // forum is loaded again whole, as at any start.
    if (this.client.state !== "open") await this.restore();
    try {
      await this.client.join(this.room);
      this.joined = true;
      this.offline = false;
    } catch (err) {
      this.offline = false;
      if (err instanceof PreauError && err.code === "already_joined") {
        this.joined = true;
      } else if (err instanceof PreauError && err.code === "unknown_room" && this.hooks) {
        this.hooks.unknown();
        return;
      } else if (err instanceof PreauError && err.code === "forbidden" && this.hooks?.forbidden) {
        this.hooks.forbidden();
        return;
      } else {
        this.failed(err);
        return;
      }
    }
    await this.reload();
  }

  private async restore(): Promise<void> {
    this.offline = true;
    this.newButton.hidden = true;
    this.newForm.hidden = true;
    const copy = await this.store?.loadRoom(this.room);
    if (!this.offline) return; // joined meanwhile
    if (copy?.kind !== "forum") {
      this.listEl.replaceChildren(el("li", { className: "empty", textContent: "Non disponible hors ligne : ce forum n'avait pas été chargé." }));
      return;
    }
    this.list.load(copy.threads);
    for (const t of [...copy.posts].reverse()) this.kept.set(t.thread, t);
    this.renderHeader();
    this.renderList();
  }

  /** Saves the forum as shown (soon: saves are grouped), once loaded from the server. */
  private save(): void {
    if (!this.store || this.offline || this.loading) return;
    this.store.saveRoom(this.room, () => {
      if (this.offline || this.loading) return null;
      this.keepOpenThread();
      return {
        kind: "forum",
        threads: { room: this.room, settings: this.list.settings, threads: this.list.list(), more: this.list.more },
        posts: [...this.kept.values()].reverse(),
      };
    });
  }

  private keepOpenThread(): void {
    const open = this.open;
    if (!open || open.timeline.newest() === undefined) return;
    this.kept.delete(open.thread);
    this.kept.set(open.thread, { thread: open.thread, events: open.timeline.snapshot(), more: open.timeline.more });
    while (this.kept.size > KEPT_THREADS) this.kept.delete(this.kept.keys().next().value!);
  }

  private failed(err: unknown): void {
    const retry = el("button", { type: "button", className: "secondary", textContent: "Réessayer" });
    retry.addEventListener("click", () => {
      this.setNotice(this.notice, "");
      void this.start();
    });
    this.setNotice(this.notice, forumErrorText(err, "load"));
    this.notice.append(" ", retry);
  }

  /** Loads the thread list's first page, then applies what arrived meanwhile. */
  private async reload(): Promise<void> {
    this.loading = true;
    try {
      this.list.load(await this.client.threads(this.room));
    } catch (err) {
      this.loading = false;
      this.buffered = [];
      this.failed(err);
      return;
    }
    this.loading = false;
    const pending = this.buffered.splice(0);
    for (const ev of pending) this.list.apply(ev, this.readingThread());
    this.renderHeader();
    this.renderList();
    this.save();
    if (this.open) await this.openThread(this.open.thread);
  }

  private async loadMoreThreads(): Promise<void> {
    try {
      this.list.load(await this.client.threads(this.room, { before: this.list.nextBefore() }), true);
      this.renderList();
      this.save();
    } catch (err) {
      toast(forumErrorText(err, "load"), "error");
    }
  }

  /** The thread whose new posts the user sees right now (so they are not unread). */
  private readingThread(): number | undefined {
    return this.visible ? this.open?.thread : undefined;
  }

  private apply(ev: EventFrame): void {
    const r = this.list.apply(ev, this.readingThread());
    if (r === "unknown_thread") this.scheduleReload();
    const item = forumItem(ev);
    if (item?.kind === "moderation") {
      const a = item.action;
      if (a.kind === "configure") this.renderHeader();
      if (a.kind === "read_only" && a.thread === undefined) {
        this.setNotice(this.notice, a.on ? "Ce forum est en lecture seule : seuls les enseignants peuvent y écrire." : "");
      }
      // What others did; one's own actions show by themselves.
      if (ev.from.id !== this.me?.id) {
        const text = this.moderationToast(ev, a);
        if (text) toast(text);
      }
    }
    if (this.open && this.open.timeline.add(ev)) {
      this.renderThread();
      if (item?.kind === "post" && ev.from.id !== this.me?.id) this.markRead();
    } else if (this.open && item?.kind === "moderation") {
      this.renderThread(); // a lock or pin of the open thread
    }
    this.renderList();
    this.save();
  }

  private moderationToast(ev: EventFrame, a: Record<string, unknown> & { kind: string }): string | null {
    const who = ev.from.name;
    const threadId = typeof a.thread === "number" ? a.thread : typeof a.offset === "number" ? a.offset : undefined;
    const t = threadId !== undefined ? this.list.get(threadId) : undefined;
    const name = t?.title ? `le sujet « ${t.title} »` : "un sujet";
    switch (a.kind) {
      case "read_only":
        if (a.thread === undefined) return moderationText(ev);
        return a.on ? `${who} a verrouillé ${name}.` : `${who} a déverrouillé ${name}.`;
      case "pin":
      case "unpin":
        if (!t) return null; // a pinned reply changes nothing in a forum
        return a.kind === "pin" ? `${who} a épinglé ${name}.` : `${who} a désépinglé ${name}.`;
      case "redact":
      case "configure":
      case "mute":
      case "unmute":
      case "kick":
      case "ban":
      case "unban":
      case "slow_mode":
        return moderationText(ev);
      default:
        return null;
    }
  }

  // A post in a thread beyond the loaded pages: fetch the list again (once per burst).
  private scheduleReload(): void {
    if (this.reloadTimer) return;
    this.reloadTimer = setTimeout(() => {
      this.reloadTimer = null;
      void this.reload();
    }, 200);
  }

  private setNotice(node: HTMLElement, text: string): void {
    node.textContent = text;
    node.hidden = !text;
  }

  private cancelButton(onClick: () => void): HTMLButtonElement {
    const b = el("button", { type: "button", className: "secondary", textContent: "Annuler" });
    b.addEventListener("click", onClick);
    return b;
  }

  // ---- thread list ----------------------------------------------------------

  private renderHeader(): void {
    const flavour = this.list.settings.flavour;
    this.flavourTag.textContent = FLAVOUR_LABELS[flavour] ?? flavour;
    this.flavourTag.dataset.flavour = flavour;
    const canOpen = (flavour !== "debate" || this.moderator) && !this.offline;
    this.newButton.hidden = !canOpen;
    if (!canOpen) this.newForm.hidden = true;
    this.newButton.textContent = flavour === "help" ? "Poser une question" : "Nouveau sujet";
  }

  private renderList(): void {
    const threads = this.list.list();
    const items = threads.map((t) => this.threadItem(t));
    this.listEl.replaceChildren(...(items.length ? items : [el("li", { className: "empty", textContent: "Aucun sujet pour l'instant." })]));
    this.moreThreads.hidden = !this.list.more;
  }

  private threadItem(t: ThreadInfo): HTMLElement {
    const flags = el("span", { className: "flags" });
    if (t.pinned) flags.append(el("span", { className: "pinned", title: "Épinglé", textContent: "📌" }));
    if (t.locked) flags.append(el("span", { className: "locked", title: "Verrouillé", textContent: "🔒" }));
    if (t.answer !== undefined) flags.append(el("span", { className: "answered", title: "Réponse trouvée", textContent: "✓" }));
    const title = el("span", { className: "title", textContent: t.deleted ? "(sujet supprimé)" : (t.title ?? "(sans titre)") });
    const replies = t.replies === 0 ? "aucune réponse" : t.replies === 1 ? "1 réponse" : `${t.replies} réponses`;
    const meta = el("small", { className: "meta", textContent: `${t.from.name} · ${replies} · ${formatTime(t.last_ts)}` });
    const line = el("span", { className: "line" }, title);
    if (flags.childElementCount) line.prepend(flags);
    const b = el("button", { type: "button", className: "thread-item" }, line, meta);
    if (t.unread > 0) b.append(el("span", { className: "unread", title: `${t.unread} non lu(s)`, textContent: String(t.unread) }));
    b.addEventListener("click", () => void this.openThread(t.thread));
    const li = el("li", { "data-thread": t.thread }, b);
    if (this.open?.thread === t.thread) li.classList.add("active");
    if (t.unread > 0) li.classList.add("has-unread");
    return li;
  }

  private async createThread(): Promise<void> {
    const title = this.newTitle.value.trim();
    const text = this.newText.value.trim();
    if (!title || !text) return toast("Il faut un titre et un message.", "error");
    if (new TextEncoder().encode(title).length > MAX_TITLE_BYTES) return toast("Titre trop long (200 caractères au plus).", "error");
    try {
      const ok = await this.client.newThread(this.room, title, text);
      this.newTitle.value = this.newText.value = "";
      this.newForm.hidden = true;
      await this.openThread(ok.offset);
    } catch (err) {
      toast(forumErrorText(err, "new_thread"), "error");
    }
  }

  // ---- one thread -----------------------------------------------------------

  private async openThread(thread: number): Promise<void> {
    const fresh = this.open?.thread !== thread;
    const timeline = new ThreadTimeline(thread);
    timeline.answerSeed = this.list.get(thread)?.answer;
    this.open = { thread, timeline, marked: fresh ? 0 : (this.open?.marked ?? 0) };
    if (fresh) {
      this.replyTo = undefined;
      this.editing = undefined;
      this.unfolded.clear();
      this.replyText.value = "";
    }
    this.renderList();
    this.threadPane.replaceChildren(this.threadHead, this.threadNotice, el("div", { className: "scroller" }, this.olderPosts, this.postsEl), this.composer);
    this.postsEl.replaceChildren(el("li", { className: "empty", textContent: "Chargement…" }));
    if (this.client.state !== "open") return this.showKept(timeline);
    try {
      let before: number | undefined;
      for (let i = 0; i < THREAD_PAGES; i++) {
        const page = await this.client.threadHistory(this.room, thread, { before, limit: 200 });
        if (this.open?.timeline !== timeline) return; // another thread was opened meanwhile
        for (const ev of page.events) timeline.add(ev);
        timeline.more = page.more;
        if (!page.more || page.events.length === 0) break;
        before = page.events[0].offset;
      }
    } catch (err) {
      if (this.open?.timeline !== timeline) return;
      // The network went away meanwhile: what the device kept, if anything.
      if (this.client.state !== "open") return this.showKept(timeline);
      this.postsEl.replaceChildren(el("li", { className: "empty", textContent: forumErrorText(err, "load") }));
      return;
    }
    this.renderThread();
    this.markRead();
    this.save();
    const s = this.postsEl.parentElement!;
    s.scrollTop = s.scrollHeight;
  }

  /** A thread without connection: its posts as last loaded, or why there are none. */
  private showKept(timeline: ThreadTimeline): void {
    const kept = this.kept.get(timeline.thread);
    if (!kept) {
      this.postsEl.replaceChildren(el("li", { className: "empty", textContent: "Non disponible hors ligne : ce sujet n'avait pas été chargé." }));
      return;
    }
    for (const ev of kept.events) timeline.add(ev);
    timeline.more = kept.more;
    this.renderThread();
    const s = this.postsEl.parentElement!;
    s.scrollTop = s.scrollHeight;
  }

  private async loadOlderPosts(): Promise<void> {
    const open = this.open;
    if (!open) return;
    try {
      const page = await this.client.threadHistory(this.room, open.thread, { before: open.timeline.oldest(), limit: 200 });
      for (const ev of page.events) open.timeline.add(ev);
      open.timeline.more = page.more;
      this.renderThread();
      this.save();
    } catch (err) {
      toast(forumErrorText(err, "load"), "error");
    }
  }

  /** mark_read up to the newest event of the open thread, once it is shown. */
  private markRead(): void {
    const open = this.open;
    if (!open || !this.visible || !this.joined) return;
    const newest = open.timeline.newest();
    if (newest === undefined) return;
    this.list.markRead(open.thread);
    this.renderList();
    if (newest <= open.marked) return;
    open.marked = newest;
    this.client.markRead(this.room, open.thread, newest).catch(() => {
      open.marked = 0; // retried at the next post or visit
    });
  }

  private renderThread(): void {
    const open = this.open;
    if (!open) return;
    const info = this.list.get(open.thread);
    const posts = open.timeline.posts();
    const first = posts.find((p) => p.offset === open.thread);
    const locked = info?.locked === true;
    const answer = open.timeline.answer();
    const title = first?.deleted || info?.deleted ? "(sujet supprimé)" : (first?.title ?? info?.title ?? "…");
    const flags = [info?.pinned ? "📌" : "", locked ? "🔒" : "", answer !== undefined ? "✓" : ""].filter(Boolean).join(" ");
    this.threadHead.replaceChildren(
      el("h3", { className: "thread-title" }, flags ? `${flags} ` : "", title),
      el("small", { textContent: info ? `Ouvert par ${userLabel(info.from)} · ${formatTime(info.ts)}` : "" }),
    );
    this.setNotice(
      this.threadNotice,
      locked ? (this.moderator ? "🔒 Sujet verrouillé : les élèves ne peuvent plus y répondre." : "🔒 Sujet verrouillé : seuls les enseignants peuvent encore y répondre.") : "",
    );
    const names = new Map(posts.map((p) => [p.offset, p.from.name]));
    this.postsEl.replaceChildren(...posts.map((p) => this.postItem(p, names, answer, info, posts)));
    this.olderPosts.hidden = !open.timeline.more;
    const closed = locked && !this.moderator;
    this.replyText.disabled = this.replySend.disabled = closed;
    this.composer.hidden = !this.joined;
    this.renderReplying();
  }

  private postItem(p: ForumPost, names: Map<number, string>, answer: number | undefined, info: ThreadInfo | undefined, posts: ForumPost[]): HTMLElement {
    const li = el("li", { className: "post", "data-offset": p.offset });
    const mine = p.from.id === this.me?.id;
    const meta = el("div", { className: "meta" }, el("b", { textContent: p.from.name }), ` ${formatTime(p.ts)}`);
    if (p.deleted) {
      li.classList.add("deleted");
      const by = p.deleted.by;
      const who = !by || by.id === p.from.id ? "par son auteur" : `par ${by.name}`;
      const why = p.deleted.reason ? ` (${p.deleted.reason})` : "";
      li.append(meta, el("p", { className: "text", textContent: `Message supprimé ${who}${why}.` }));
      return li;
    }
    if (p.versions.length > 1) {
      const versions = el("ol", { className: "versions" });
      for (const v of p.versions.slice(0, -1)) {
        versions.append(el("li", {}, el("small", { textContent: `${formatTime(v.ts)} : ` }), v.title && p.offset === p.thread ? `[${v.title}] ` : "", v.text));
      }
      const last = p.versions[p.versions.length - 1];
      const details = el(
        "details",
        { className: "edited", open: this.unfolded.has(p.offset) },
        el("summary", { textContent: "modifié", title: `Modifié à ${formatTime(last.ts)} : voir les versions précédentes` }),
        el("p", { className: "versions-title", textContent: "Versions précédentes :" }),
        versions,
      );
      details.addEventListener("toggle", () => {
        if (details.open) this.unfolded.add(p.offset);
        else this.unfolded.delete(p.offset);
      });
      meta.append(" ", details);
    }
    if (answer === p.offset) {
      li.classList.add("answer");
      meta.append(" ", el("span", { className: "answer-badge", textContent: "✓ Réponse retenue" }));
    }
    li.append(meta);
    if (p.replyTo !== undefined) {
      const to = names.get(p.replyTo) ?? "un message";
      li.append(el("p", { className: "reply-to", textContent: `↪ en réponse à ${to}` }));
    }
    if (p.quote) li.append(el("blockquote", { textContent: p.quote }));
    if (this.editing?.offset === p.offset) {
      li.append(this.editing.form);
      return li;
    }
    const text = el("p", { className: "text", textContent: p.text });
    li.append(text);

    const actions = el("div", { className: "actions" });
    const button = (label: string, cls: string, fn: () => void) => {
      const b = el("button", { type: "button", className: `link ${cls}`, textContent: label });
      b.addEventListener("click", fn);
      actions.append(b);
      return b;
    };
    if (this.joined) {
      button("Répondre", "reply", () => this.startReply(p));
      // The selection is read when the button is pressed, before the click can clear it.
      let selected = "";
      const cite = button("Citer", "quote", () => this.startReply(p, selected || p.text));
      cite.addEventListener("mousedown", () => (selected = selectionIn(text)));
      // A pupil's post takes no edit once someone else replied to it (or,
      // for a question, in its thread): the button is not offered then.
      if (mine && (this.moderator || !repliedTo(p, posts))) button("Modifier", "edit", () => this.startEdit(p));
      if (mine || this.moderator) button("Supprimer", "delete", () => void this.remove(p));
      const asker = (info?.from.id ?? p.from.id) === this.me?.id;
      if (this.list.settings.flavour === "help" && (asker || this.moderator) && p.offset !== p.thread) {
        if (answer === p.offset) button("Retirer la réponse", "unmark", () => void this.mark(null));
        else button("Marquer comme réponse", "mark", () => void this.mark(p.offset));
      }
    }
    li.append(actions);
    return li;
  }

  private startReply(p: ForumPost, quote?: string): void {
    this.replyTo = { offset: p.offset, name: p.from.name, quote: quote ? cutBytes(quote.trim(), MAX_QUOTE_BYTES) : undefined };
    this.renderReplying();
    this.replyText.focus();
  }

  private renderReplying(): void {
    const r = this.replyTo;
    if (!r) {
      this.replying.hidden = true;
      this.replying.replaceChildren();
      return;
    }
    const cancel = el("button", { type: "button", className: "link", textContent: "✕", title: "Ne plus répondre à ce message" });
    cancel.addEventListener("click", () => {
      this.replyTo = undefined;
      this.renderReplying();
    });
    this.replying.replaceChildren(el("span", { textContent: `En réponse à ${r.name}` }), cancel);
    if (r.quote) this.replying.append(el("blockquote", { textContent: r.quote }));
    this.replying.hidden = false;
  }

  private async sendReply(): Promise<void> {
    const open = this.open;
    const text = this.replyText.value.trim();
    if (!open || !text) return;
    this.replySend.disabled = true;
    try {
      await this.client.reply(this.room, open.thread, text, { replyTo: this.replyTo?.offset, quote: this.replyTo?.quote });
      this.replyText.value = "";
      this.replyTo = undefined;
      this.renderReplying();
    } catch (err) {
      toast(forumErrorText(err, "reply", this.list.get(open.thread)?.locked), "error");
    } finally {
      this.replySend.disabled = this.replyText.disabled;
    }
  }

  private startEdit(p: ForumPost): void {
    const isFirst = p.offset === p.thread;
    const form = el("form", { className: "edit-form" });
    const title = el("input", { className: "edit-title", value: p.title ?? "", maxLength: MAX_TITLE_BYTES });
    const text = el("textarea", { className: "edit-text", rows: 3 });
    text.value = p.text;
    const error = el("p", { className: "error", role: "alert" });
    if (isFirst) form.append(title);
    form.append(text, el("div", { className: "row" }, el("button", { type: "submit", textContent: "Enregistrer" }), this.cancelButton(() => this.stopEdit())), error);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const newTitle = title.value.trim();
      try {
        await this.client.edit(this.room, p.offset, text.value.trim(), isFirst && newTitle !== p.title ? newTitle : undefined);
        this.stopEdit();
      } catch (err) {
        // Said once, in the form (not also in a toast).
        error.textContent = forumErrorText(err, "edit", this.list.get(p.thread)?.locked);
      }
    });
    this.editing = { offset: p.offset, form };
    this.renderThread();
    text.focus();
  }

  private stopEdit(): void {
    this.editing = undefined;
    this.renderThread();
  }

  private async remove(p: ForumPost): Promise<void> {
    const own = p.from.id === this.me?.id;
    if (!confirm(own ? "Supprimer votre message ? Son texte sera effacé." : `Supprimer le message de ${p.from.name} ?`)) return;
    try {
      await this.client.moderate(this.room, { kind: "redact", offset: p.offset });
    } catch (err) {
      toast(forumErrorText(err, "delete"), "error");
    }
  }

  private async mark(offset: number | null): Promise<void> {
    const open = this.open;
    if (!open) return;
    try {
      await this.client.answer(this.room, open.thread, offset);
    } catch (err) {
      toast(forumErrorText(err, "answer", this.list.get(open.thread)?.locked), "error");
    }
  }
}

/** The text selected inside `node`, if the selection is there. */
function selectionIn(node: HTMLElement): string {
  const sel = window.getSelection();
  if (!sel || sel.isCollapsed || sel.rangeCount === 0) return "";
  const range = sel.getRangeAt(0);
  return node.contains(range.commonAncestorContainer) ? sel.toString() : "";
}

/** Whether someone else replied to `p` (a reply to it, or, for a thread's first post, any reply in the thread): the server's rule for `not_editable`. */
function repliedTo(p: ForumPost, posts: ForumPost[]): boolean {
  return posts.some((o) => o.offset !== p.offset && o.from.id !== p.from.id && (o.replyTo === p.offset || p.offset === p.thread));
}
