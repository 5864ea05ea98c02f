// Forum state kept by a client from the server's answers and the room's
// events (protocol/README.md, "Forums (kind `forum`)"): the thread list,
// bumped live, and one thread's posts with their versions. Pure data, no
// DOM: the web app and the console render it, the tests check it.

import { decodeForumSettings, type EventFrame, type ForumSettings, type ThreadInfo, type ThreadsOk, type UserInfo } from "./client.js";

/** A forum event, read leniently (null for anything else, unknown kinds included). */
export type ForumItem =
  | { kind: "post"; offset: number; thread: number; first: boolean; title?: string; text: string; replyTo?: number; quote?: string }
  | { kind: "edit"; offset: number; target: number; thread: number; text: string; title?: string }
  | { kind: "answer"; offset: number; thread: number; answer: number | null }
  | { kind: "redacted"; offset: number; thread?: number; editOf?: number; by?: UserInfo; reason?: string }
  | { kind: "moderation"; offset: number; action: Record<string, unknown> & { kind: string } };

const optNum = (v: unknown): number | undefined => (typeof v === "number" ? v : undefined);
const optStr = (v: unknown): string | undefined => (typeof v === "string" ? v : undefined);

export function forumItem(ev: EventFrame): ForumItem | null {
  const b = ev.body as Record<string, unknown>;
  switch (b.kind) {
    case "message": {
      const thread = optNum(b.thread);
      const title = optStr(b.title);
      // A first post has a title and no thread; its offset is the thread's id.
      if (thread === undefined && title === undefined) return null;
      return {
        kind: "post",
        offset: ev.offset,
        thread: thread ?? ev.offset,
        first: thread === undefined,
        title,
        text: String(b.text ?? ""),
        replyTo: optNum(b.reply_to),
        quote: optStr(b.quote),
      };
    }
    case "edit": {
      const target = optNum(b.target);
      const thread = optNum(b.thread);
      if (target === undefined || thread === undefined) return null;
      return { kind: "edit", offset: ev.offset, target, thread, text: String(b.text ?? ""), title: optStr(b.title) };
    }
    case "answer": {
      const thread = optNum(b.thread);
      if (thread === undefined) return null;
      return { kind: "answer", offset: ev.offset, thread, answer: optNum(b.offset) ?? null };
    }
    case "redacted":
      return {
        kind: "redacted",
        offset: ev.offset,
        thread: optNum(b.thread),
        editOf: optNum(b.edit_of),
        by: b.by && typeof b.by === "object" ? (b.by as UserInfo) : undefined,
        reason: optStr(b.reason),
      };
    case "moderation": {
      const a = b.action as Record<string, unknown> | undefined;
      if (!a || typeof a.kind !== "string") return null;
      return { kind: "moderation", offset: ev.offset, action: a as Record<string, unknown> & { kind: string } };
    }
    default:
      return null;
  }
}

/** Who moderates a forum of class `cls`, as the server decides it (see the forum matrix). */
export function isForumModerator(user: UserInfo | undefined, classes: string[], room: string, settings?: ForumSettings): boolean {
  if (!user) return false;
  if (user.role === "staff") return true;
  if (user.role !== "teacher") return false;
  const cls = room.split("/")[0];
  return classes.includes(cls) || (settings?.moderators ?? []).includes(user.id);
}

/**
 * The thread list of one forum. Load pages from `threads`, then feed it
 * every event of the room: a reply bumps its thread, a new thread appears,
 * answers, locks, pins, deletions and title edits update their entry.
 * Applying an event twice changes nothing (a thread's posts come in
 * increasing offsets, so a post at or below `last_offset` is already
 * counted): events that arrived while a page was loading can be replayed.
 */
export class ThreadList {
  settings: ForumSettings = decodeForumSettings({});
  /** More threads (older activity) than loaded. */
  more = false;
  /** The whole forum is read-only (known only from a live `read_only` event). */
  readOnly = false;
  private byId = new Map<number, ThreadInfo>();

  constructor(
    /** The reader: their own posts do not count as unread. */
    public me: string,
  ) {}

  /** A `threads` page: the first replaces the list, the next ones (`append`) extend it. */
  load(page: ThreadsOk, append = false): void {
    if (!append) this.byId.clear();
    this.settings = page.settings;
    this.more = page.more;
    for (const t of page.threads) this.byId.set(t.thread, { ...t });
  }

  get(thread: number): ThreadInfo | undefined {
    return this.byId.get(thread);
  }

  /** Pinned threads first, then by last activity, newest first (the server's order). */
  list(): ThreadInfo[] {
    return [...this.byId.values()].sort((a, b) => Number(b.pinned) - Number(a.pinned) || b.last_offset - a.last_offset);
  }

  /** `before` for the next `threads` page: the last unpinned thread's `last_offset`. */
  nextBefore(): number | undefined {
    const unpinned = this.list().filter((t) => !t.pinned);
    return unpinned.length ? unpinned[unpinned.length - 1].last_offset : undefined;
  }

  /** The reader has read the thread up to now. */
  markRead(thread: number): void {
    const t = this.byId.get(thread);
    if (t) t.unread = 0;
  }

  /**
   * Applies one room event. `open` is the thread the reader is looking at:
   * its new posts are not counted unread. Returns `"changed"`, `"none"`,
   * or `"unknown_thread"` when a post went to a thread not loaded (an
   * older page): reload the list to show it.
   */
  apply(ev: EventFrame, open?: number): "changed" | "none" | "unknown_thread" {
    const item = forumItem(ev);
    if (!item) return "none";
    switch (item.kind) {
      case "post":
        return this.post(ev, item.thread, item.first, item.title, open);
      case "redacted":
        // A tombstone replayed in a recovery: still a post of its thread.
        if (item.thread === undefined || item.editOf !== undefined) return "none";
        {
          const r = this.post(ev, item.thread, item.offset === item.thread, undefined, open);
          this.deleted(item.offset);
          return r;
        }
      case "edit": {
        const t = this.byId.get(item.thread);
        if (!t) return "none";
        if (item.title !== undefined && item.target === item.thread && !t.deleted) {
          t.title = item.title;
          return "changed";
        }
        return "none";
      }
      case "answer": {
        const t = this.byId.get(item.thread);
        if (!t) return "none";
        if (item.answer === null) delete t.answer;
        else t.answer = item.answer;
        return "changed";
      }
      case "moderation":
        return this.moderation(item.action);
    }
  }

  private post(ev: EventFrame, thread: number, first: boolean, title: string | undefined, open?: number): "changed" | "none" | "unknown_thread" {
    const mine = ev.from.id === this.me;
    const t = this.byId.get(thread);
    if (first) {
      if (t) return "none";
      this.byId.set(thread, {
        thread,
        ...(title !== undefined ? { title } : {}),
        from: ev.from,
        ts: ev.ts,
        last_offset: ev.offset,
        last_ts: ev.ts,
        replies: 0,
        unread: mine || open === thread ? 0 : 1,
        locked: false,
        pinned: false,
        deleted: false,
      });
      return "changed";
    }
    if (!t) return "unknown_thread";
    if (ev.offset <= t.last_offset) return "none";
    t.last_offset = ev.offset;
    t.last_ts = ev.ts;
    t.replies += 1;
    if (!mine && open !== thread) t.unread += 1;
    return "changed";
  }

  private deleted(offset: number): void {
    const t = this.byId.get(offset);
    if (t) {
      t.deleted = true;
      delete t.title;
      t.pinned = false; // the server unpins a redacted message
    }
    for (const x of this.byId.values()) if (x.answer === offset) delete x.answer;
  }

  private moderation(a: Record<string, unknown> & { kind: string }): "changed" | "none" {
    const offset = optNum(a.offset);
    switch (a.kind) {
      case "read_only": {
        const thread = optNum(a.thread);
        if (thread === undefined) {
          this.readOnly = a.on === true;
          return "changed";
        }
        const t = this.byId.get(thread);
        if (!t) return "none";
        t.locked = a.on === true;
        return "changed";
      }
      case "pin":
      case "unpin": {
        const t = offset !== undefined ? this.byId.get(offset) : undefined;
        if (!t) return "none";
        t.pinned = a.kind === "pin";
        return "changed";
      }
      case "redact":
        if (offset === undefined) return "none";
        this.deleted(offset);
        return "changed";
      case "configure":
        this.settings = decodeForumSettings(a);
        return "changed";
      default:
        return "none";
    }
  }
}

export interface PostVersion {
  /** The offset of the event that holds this version (the post's, or an edit's). */
  offset: number;
  ts: number;
  text: string;
  title?: string;
}

export interface ForumPost {
  offset: number;
  thread: number;
  from: UserInfo;
  ts: number;
  /** Current title (a thread's first post) and text: the last version. */
  title?: string;
  text: string;
  replyTo?: number;
  quote?: string;
  /** Every known version, oldest first; more than one means "edited". */
  versions: PostVersion[];
  /** Deleted by its author or redacted by a moderator: no text left. */
  deleted?: { by?: UserInfo; reason?: string };
}

/**
 * One thread's posts, from `history` with `thread` and the live events of
 * the room. Keeps the raw events and derives the posts from them in offset
 * order, so pages and live events may come in any order.
 */
export class ThreadTimeline {
  private events = new Map<number, EventFrame>();
  // Live deletions: a `moderation` redact arrives live, its tombstone only in history.
  private removed = new Map<number, { by?: UserInfo; reason?: string }>();
  /** The answer as the thread list knew it, until an `answer` event is seen. */
  answerSeed?: number;
  /** Older events than loaded remain (from the last backward page). */
  more = false;

  constructor(readonly thread: number) {}

  /** Adds a room event if it belongs to this thread; true if it did (or was a deletion here). */
  add(ev: EventFrame): boolean {
    const item = forumItem(ev);
    if (!item) return false;
    if (item.kind === "moderation") {
      const a = item.action;
      if (a.kind !== "redact" || typeof a.offset !== "number" || !this.events.has(a.offset)) return false;
      this.removed.set(a.offset, { by: ev.from, reason: optStr(a.reason) });
      return true;
    }
    if (item.thread !== this.thread) return false;
    this.events.set(ev.offset, ev);
    return true;
  }

  /**
   * The events held, in offset order, as `history` would give them now: a
   * post deleted live (and its edits) becomes its tombstone, so a copy
   * kept from this (the web app's offline copy) keeps no deleted text.
   * `add` of each rebuilds the same posts.
   */
  snapshot(): EventFrame[] {
    const out: EventFrame[] = [];
    for (const o of [...this.events.keys()].sort((a, b) => a - b)) {
      const ev = this.events.get(o)!;
      const item = forumItem(ev);
      const why = this.removed.get(o);
      if (why && item?.kind === "post") {
        out.push({ ...ev, body: { kind: "redacted", thread: this.thread, ...(why.by ? { by: why.by } : {}), ...(why.reason !== undefined ? { reason: why.reason } : {}) } });
      } else if (item?.kind === "edit" && this.removed.has(item.target)) {
        out.push({ ...ev, body: { kind: "redacted", thread: this.thread, edit_of: item.target } });
      } else {
        out.push(ev);
      }
    }
    return out;
  }

  /** The oldest offset held (`before` of the next backward page). */
  oldest(): number | undefined {
    const keys = [...this.events.keys()];
    return keys.length ? Math.min(...keys) : undefined;
  }

  /** The newest offset held (what `mark_read` should say). */
  newest(): number | undefined {
    const keys = [...this.events.keys()];
    return keys.length ? Math.max(...keys) : undefined;
  }

  /** Whether the thread's first post is loaded (the whole thread then is). */
  complete(): boolean {
    return this.events.has(this.thread);
  }

  /** The posts, in offset order, each with its versions. */
  posts(): ForumPost[] {
    const byOffset = new Map<number, ForumPost>();
    const offsets = [...this.events.keys()].sort((a, b) => a - b);
    for (const o of offsets) {
      const ev = this.events.get(o)!;
      const item = forumItem(ev);
      if (!item) continue;
      if (item.kind === "post") {
        byOffset.set(o, {
          offset: o,
          thread: item.thread,
          from: ev.from,
          ts: ev.ts,
          title: item.title,
          text: item.text,
          replyTo: item.replyTo,
          quote: item.quote,
          versions: [{ offset: o, ts: ev.ts, text: item.text, title: item.title }],
        });
      } else if (item.kind === "edit") {
        const p = byOffset.get(item.target);
        if (!p || p.deleted) continue;
        p.versions.push({ offset: o, ts: ev.ts, text: item.text, title: item.title ?? p.title });
        p.text = item.text;
        if (item.title !== undefined) p.title = item.title;
      } else if (item.kind === "redacted" && item.editOf === undefined) {
        byOffset.set(o, { offset: o, thread: this.thread, from: ev.from, ts: ev.ts, text: "", versions: [], deleted: { by: item.by, reason: item.reason } });
      }
    }
    for (const [o, why] of this.removed) {
      const p = byOffset.get(o);
      if (p) Object.assign(p, { text: "", title: undefined, quote: undefined, versions: [], deleted: why });
    }
    return [...byOffset.values()];
  }

  /** The post marked as the answer, if any (and not deleted). */
  answer(): number | undefined {
    let answer = this.answerSeed;
    const offsets = [...this.events.keys()].sort((a, b) => a - b);
    for (const o of offsets) {
      const item = forumItem(this.events.get(o)!);
      if (item?.kind === "answer") answer = item.answer ?? undefined;
    }
    if (answer !== undefined && (this.removed.has(answer) || this.events.get(answer)?.body.kind === "redacted")) return undefined;
    return answer;
  }
}
