// Direct messages and the notification feed (kinds `dm` and `inbox`; the
// server's src/kinds/dm and src/kinds/inbox, until protocol/README.md
// describes them).
//
// - A conversation is a room `_/dm/<32 hex>` whose members are in its
//   events (`dm_members`); `dm_start` opens one (the same one again for a
//   pair), `dm_send` posts a message there, acked once durable, with the
//   members whose quiet hours hold its notification (`held`). Messages
//   are ordinary `message` events: join the room, page its `history`.
// - The feed is one room per user (`_/inbox/<32 hex>`, named by the `feed`
//   reply): notifications (`notify`), read marks (`feed_seen`), quiet
//   hours (`quiet_hours`), releases (`feed_release`, quiet hours ended:
//   read the feed again), conversations joined (`dm_joined`). A
//   notification that arrives during quiet hours is never pushed; it is in
//   the `feed` reply only, with `holdUntil`.
//
// The requests are PreauClient methods (client.ts), which use the
// decoders below; FeedState keeps the feed's items and unread counts up
// to date from the inbox room's events. Pure data, no DOM.

import type { EventFrame, UserInfo } from "./client.js";

/** Someone the user may write to (`contacts`). */
export interface Contact {
  id: string;
  name: string;
  role: UserInfo["role"];
  /** A pupil's classes; a teacher's classes with the subject (« 3B · Mathématiques »); a parent's children's names. */
  about: string[];
}

export interface ContactsOk {
  contacts: Contact[];
  /** More matched than the limit. */
  more: boolean;
}

/** A member whose quiet hours hold what is sent now, until `until` (ms). */
export interface QuietMember {
  id: string;
  name: string;
  /** When they will be told (ms); {@link isForever} when they are quiet every day. */
  until: number;
}

/** The `dm_start`, `dm_add` and `dm_review` reply. */
export interface DmOk {
  room: string;
  /** False when the conversation existed (a pair writing again). */
  created: boolean;
  /** Every member, the user included. */
  members: UserInfo[];
  /** The other members in quiet hours now. */
  quiet: QuietMember[];
}

/** The `dm_send` reply: the message's position, and whose quiet hours hold its notification. */
export interface DmSentOk {
  room: string;
  epoch: string;
  offset: number;
  ts: number;
  held: QuietMember[];
}

/** One of the user's conversations (`conversations`, latest activity first). */
export interface Conversation {
  room: string;
  /** Every member, the user included. */
  members: UserInfo[];
  /** The latest activity the feed knows of (ms). */
  last: number;
  unread: number;
}

/** The `dm_share` reply: the new thread of `forum`. */
export interface DmSharedOk {
  forum: string;
  thread: number;
  /** The pupil's name is not shown (they did not agree to it). */
  anonymous: boolean;
}

/** What a notification is about. */
export type NotifyWhat = "dm" | "announcement" | "homework" | "reply" | "mention" | "note" | (string & {});

/** One notification of the feed. */
export interface FeedItem {
  /** Its offset in the inbox room. */
  offset: number;
  ts: number;
  what: NotifyWhat;
  /** The room it is about. */
  room: string;
  /** The event it is about, in that room. */
  at?: number;
  /** Empty for a direct message (say who wrote: `by`). */
  title: string;
  preview?: string;
  /** Who it comes from. */
  by?: UserInfo;
  /** Held by quiet hours until then (ms): shown in the feed, never pushed. */
  holdUntil?: number;
  /** Pushed through quiet hours (an urgent staff announcement). */
  urgent: boolean;
  read: boolean;
}

/** Quiet hours: `HH:MM` to `HH:MM` in the school's time zone (through midnight when `end` is earlier), and whole days off. */
export interface QuietHours {
  start: string;
  end: string;
  /** `mon` … `sun`. */
  days: QuietDay[];
}

export type QuietDay = "mon" | "tue" | "wed" | "thu" | "fri" | "sat" | "sun";
export const QUIET_DAYS: readonly QuietDay[] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/** The quiet hours in force for the user (`quiet_hours`, and `feed`'s `quiet`). */
export interface QuietState {
  hours: QuietHours;
  /** The user's own (false: the school's default for their role). */
  own: boolean;
  /** Quiet now, until then (ms). */
  until?: number;
}

/** The `feed` reply. */
export interface NotificationsOk {
  /** The user's inbox room: join it to be told live. */
  room: string;
  /** Newest first. */
  items: FeedItem[];
  /** More notifications before the last one listed. */
  more: boolean;
  /** Unread notifications per room they are about. */
  unread: Record<string, number>;
  totalUnread: number;
  quiet: QuietState;
}

/** Whether `room` is a conversation (`_/dm/…`). */
export function isConversation(room: string): boolean {
  return /^_\/dm\/[0-9a-f]{32}$/.test(room);
}

/** `hold_until` / `until` for someone quiet every day: 9999-12-31T23:59:59.999Z (protocol/README.md, "Quiet hours"). */
export const FOREVER = 253402300799999;

/**
 * An `until` that never comes: the server sends year 9999 ({@link FOREVER};
 * older servers sent 2^64-1) for someone quiet every day (they read their
 * feed; nothing is pushed).
 */
export function isForever(until: number): boolean {
  return !Number.isFinite(until) || until >= FOREVER;
}

/** Quiet hours that quiet nothing: equal times and no day off. */
export function isNoQuiet(h: QuietHours): boolean {
  return h.start === h.end && h.days.length === 0;
}

// ---- decoders -----------------------------------------------------------------

const num = (v: unknown, dflt = 0): number => (typeof v === "number" ? v : typeof v === "bigint" ? Number(v) : dflt);
const optNum = (v: unknown): number | undefined => (typeof v === "number" ? v : typeof v === "bigint" ? Number(v) : undefined);
const str = (v: unknown, dflt = ""): string => (typeof v === "string" ? v : dflt);
const strs = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : []);

function decodeUser(v: any): UserInfo {
  return {
    id: str(v?.id),
    name: typeof v?.name === "string" ? v.name : str(v?.id, "?"),
    role: str(v?.role),
  };
}

const users = (v: unknown): UserInfo[] => (Array.isArray(v) ? v.filter((u) => typeof u?.id === "string").map(decodeUser) : []);

function decodeQuietMembers(v: unknown): QuietMember[] {
  if (!Array.isArray(v)) return [];
  return v.filter((q) => typeof q?.id === "string").map((q) => ({ id: q.id, name: str(q.name, q.id), until: num(q.until) }));
}

export function decodeContactsOk(v: any): ContactsOk {
  const contacts = Array.isArray(v?.contacts)
    ? v.contacts.filter((c: any) => typeof c?.id === "string").map((c: any) => ({ id: c.id, name: str(c.name, c.id), role: str(c.role), about: strs(c.about) }))
    : [];
  return { contacts, more: v?.more === true };
}

export function decodeDmOk(v: any): DmOk {
  return { room: str(v?.room), created: v?.created === true, members: users(v?.members), quiet: decodeQuietMembers(v?.quiet) };
}

export function decodeDmSentOk(v: any): DmSentOk {
  return { room: str(v?.room), epoch: str(v?.epoch), offset: num(v?.offset), ts: num(v?.ts), held: decodeQuietMembers(v?.held) };
}

export function decodeConversations(v: any): Conversation[] {
  if (!Array.isArray(v?.conversations)) return [];
  return v.conversations
    .filter((c: any) => typeof c?.room === "string")
    .map((c: any) => ({ room: c.room, members: users(c.members), last: num(c.last), unread: num(c.unread) }));
}

export function decodeDmSharedOk(v: any): DmSharedOk {
  return { forum: str(v?.forum), thread: num(v?.thread), anonymous: v?.anonymous !== false };
}

/** The fields of a `notify` (an event's body, or a `feed` item), leniently; null without a room. */
export function decodeFeedItem(v: any, offset = num(v?.offset), ts = num(v?.ts)): FeedItem | null {
  if (!v || typeof v !== "object" || typeof v.room !== "string") return null;
  const item: FeedItem = { offset, ts, what: str(v.what), room: v.room, title: str(v.title), urgent: v.urgent === true, read: v.read === true };
  // Optional keys stay absent (not undefined), as on the wire.
  const at = optNum(v.at);
  if (at !== undefined) item.at = at;
  if (typeof v.preview === "string") item.preview = v.preview;
  if (v.by && typeof v.by === "object") item.by = decodeUser(v.by);
  const hold = optNum(v.hold_until);
  if (hold !== undefined) item.holdUntil = hold;
  return item;
}

export function decodeQuietHours(v: any): QuietHours {
  return {
    start: str(v?.start, "00:00"),
    end: str(v?.end, "00:00"),
    days: strs(v?.days).filter((d): d is QuietDay => (QUIET_DAYS as readonly string[]).includes(d)),
  };
}

export function decodeQuietState(v: any): QuietState {
  const q: QuietState = { hours: decodeQuietHours(v?.hours), own: v?.own === true };
  const until = optNum(v?.until);
  if (until !== undefined) q.until = until;
  return q;
}

export function decodeNotificationsOk(v: any): NotificationsOk {
  const items = Array.isArray(v?.items) ? v.items.map((i: any) => decodeFeedItem(i)).filter((i: FeedItem | null): i is FeedItem => i !== null) : [];
  const unread: Record<string, number> = {};
  if (v?.unread && typeof v.unread === "object") {
    for (const [room, n] of Object.entries(v.unread)) if (num(n) > 0) unread[room] = num(n);
  }
  const totalUnread = optNum(v?.total_unread) ?? Object.values(unread).reduce((a, b) => a + b, 0);
  return { room: str(v?.room), items, more: v?.more === true, unread, totalUnread, quiet: decodeQuietState(v?.quiet) };
}

// ---- the feed's state -----------------------------------------------------------

/** What an inbox event changed (FeedState.apply). */
export type FeedChange =
  /** A new notification (pushed: not held). */
  | { kind: "notify"; item: FeedItem }
  /** Read marks moved. */
  | { kind: "read" }
  /** The user is in conversation `room` (new, or new members). */
  | { kind: "joined"; room: string; members: UserInfo[] }
  /**
   * Read the feed again and `load` it: quiet hours ended (`release`: the
   * held notifications are due), the user's quiet hours changed (`quiet`:
   * the reply says until when they are quiet), or a read mark covers
   * notifications older than those loaded (`gap`).
   */
  | { kind: "reload"; reason: "release" | "quiet" | "gap" };

/**
 * The user's feed, kept up to date: `load` a `feed` reply, then `apply`
 * every event of the inbox room (the feed's `room`), live or replayed.
 * Applying an event twice changes nothing, so events received while a
 * `feed` request was on its way may be applied again after `load`.
 *
 * Unread counts are exact, notifications beyond the loaded page included:
 * the server's count per room, less what the page shows, is carried as
 * unseen, and a read mark that covers the whole page clears it. Items
 * held by quiet hours count as the server counts them (unread until read).
 */
export class FeedState {
  room = "";
  more = false;
  quiet: QuietState = { hours: { start: "00:00", end: "00:00", days: [] }, own: false };
  loaded = false;
  private byOffset = new Map<number, FeedItem>();
  /** Unread notifications older than the loaded page, per room. */
  private unseen = new Map<string, number>();
  /** The oldest offset of the loaded page (marks below it reach unloaded items). */
  private oldest = Infinity;

  load(ok: NotificationsOk): void {
    this.room = ok.room;
    this.more = ok.more;
    this.quiet = ok.quiet;
    this.byOffset.clear();
    this.unseen.clear();
    this.oldest = Infinity;
    for (const item of ok.items) {
      this.byOffset.set(item.offset, { ...item });
      this.oldest = Math.min(this.oldest, item.offset);
    }
    const shown = new Map<string, number>();
    for (const item of ok.items) if (!item.read) shown.set(item.room, (shown.get(item.room) ?? 0) + 1);
    for (const [room, n] of Object.entries(ok.unread)) {
      const rest = n - (shown.get(room) ?? 0);
      if (rest > 0) this.unseen.set(room, rest);
    }
    this.loaded = true;
  }

  /** Older items (a `feed` page with `before`): added, counts untouched (they were counted as unseen). */
  loadOlder(ok: NotificationsOk): void {
    for (const item of ok.items) {
      if (this.byOffset.has(item.offset)) continue;
      this.byOffset.set(item.offset, { ...item });
      if (item.offset < this.oldest) {
        this.oldest = item.offset;
        if (!item.read) {
          const n = (this.unseen.get(item.room) ?? 0) - 1;
          if (n > 0) this.unseen.set(item.room, n);
          else this.unseen.delete(item.room);
        }
      }
    }
    this.more = ok.more;
  }

  /** Feeds one event of the inbox room; what it changed, or null. */
  apply(ev: EventFrame): FeedChange | null {
    if (!this.room || ev.room !== this.room) return null;
    const b = ev.body as Record<string, unknown>;
    switch (b.kind) {
      case "notify": {
        if (this.byOffset.has(ev.offset)) return null;
        const item = decodeFeedItem(b, ev.offset, ev.ts);
        if (!item) return null;
        // Pushed live means not held (or held and then released: the feed says so).
        this.byOffset.set(ev.offset, item);
        return { kind: "notify", item };
      }
      case "feed_seen": {
        const through = optNum(b.through);
        if (through === undefined) return null;
        const room = typeof b.room === "string" ? b.room : undefined;
        for (const item of this.byOffset.values()) {
          if (item.offset <= through && (room === undefined || item.room === room)) item.read = true;
        }
        if (this.unseen.size > 0 && (room === undefined || this.unseen.has(room))) {
          // Unloaded notifications are older than the page: a mark through
          // the page's oldest covers them all; an older mark cannot be counted here.
          if (through < this.oldest) return { kind: "reload", reason: "gap" };
          if (room === undefined) this.unseen.clear();
          else this.unseen.delete(room);
        }
        return { kind: "read" };
      }
      case "quiet_hours":
        return { kind: "reload", reason: "quiet" };
      case "feed_release":
        return { kind: "reload", reason: "release" };
      case "dm_joined":
        return typeof b.room === "string" ? { kind: "joined", room: b.room, members: users(b.members) } : null;
      default:
        return null;
    }
  }

  /** The loaded notifications, newest first. */
  items(): FeedItem[] {
    return [...this.byOffset.values()].sort((a, b) => b.offset - a.offset);
  }

  /** Unread notifications about `room`. */
  unread(room: string): number {
    let n = this.unseen.get(room) ?? 0;
    for (const item of this.byOffset.values()) if (!item.read && item.room === room) n++;
    return n;
  }

  /** Unread notifications per room (rooms with none left out). */
  unreadByRoom(): Map<string, number> {
    const counts = new Map(this.unseen);
    for (const item of this.byOffset.values()) if (!item.read) counts.set(item.room, (counts.get(item.room) ?? 0) + 1);
    return counts;
  }

  /** Every unread notification. */
  get total(): number {
    let n = 0;
    for (const c of this.unreadByRoom().values()) n += c;
    return n;
  }

  /** The oldest loaded offset, for the next page (`feed({before})`). */
  get before(): number | undefined {
    return Number.isFinite(this.oldest) ? this.oldest : undefined;
  }
}
