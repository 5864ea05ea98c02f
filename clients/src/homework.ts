// The homework diary, the *cahier de textes* (protocol/README.md, "Homework
// diary (kind `homework`)"): one room per class, `C/homework/diary`, where
// its teachers record lessons and set homework, its pupils mark homework
// done, and parents read for each child. Days are civil dates,
// "YYYY-MM-DD" strings (no time zone): they are kept as strings here and
// compared as strings, which sorts them correctly.
//
// The requests are PreauClient methods (client.ts), which use the decoders
// below; DiaryView keeps a range of days up to date from the room's
// events. Pure data, no DOM.

import type { EventFrame, UserInfo } from "./client.js";

export type What = "lesson" | "homework";

/** A day, "YYYY-MM-DD". */
export type Day = string;

/** An entry's fields, as `homework_write` sends them. */
export interface NewDiaryEntry {
  what: What;
  subject: string;
  text: string;
  /** A lesson's day, or the day homework was given. */
  date: Day;
  /** Homework only, required for it: the day it is due (from `date` to 366 days after). */
  due?: Day;
  /** Homework only: the teacher's estimate, 1–600 minutes. */
  minutes?: number;
  /** At most 10 http(s) addresses. */
  links?: string[];
  /** Shown to the class at this time (ms since the Unix epoch); until then to its author and staff only. */
  publishAt?: number;
}

/** An entry as the server lists it. `entry` is its id (the offset of its first event). */
export interface DiaryEntry {
  entry: number;
  what: What;
  subject: string;
  text: string;
  date: Day;
  due?: Day;
  minutes?: number;
  links: string[];
  /** Author and time of the version shown. */
  by: UserInfo;
  ts: number;
  /** Who wrote the first version: they (and staff) write new versions. */
  author: UserInfo;
  /** Offset of the version shown, and how many versions there are. */
  version: number;
  versions: number;
  /** Scheduled and not yet public: only its author and staff are given this. */
  publishAt?: number;
  /** A pupil's own mark. */
  done?: boolean;
  /** A parent: which of their children (ids) marked it done. */
  doneBy?: string[];
  /** Teachers of the class and staff: how many pupils marked it done. */
  doneCount?: number;
  /** Teachers and staff, where the school shows names. */
  doneNames?: UserInfo[];
}

export interface HomeworkOk {
  room: string;
  entries: DiaryEntry[];
  more: boolean;
}

/** A child, as a parent's items name them. */
export interface ChildLabel {
  id: string;
  name: string;
}

/** Homework due, across the user's classes (`homework_due`). */
export interface DueItem extends DiaryEntry {
  room: string;
  class: string;
  /** For a parent: the children it is for (empty for everyone else). */
  children: ChildLabel[];
}

export interface DueOk {
  items: DueItem[];
  more: boolean;
}

/** Homework due one day (`homework_load`); days with nothing due are left out. */
export interface DayLoad {
  date: Day;
  items: number;
  /** The sum of the estimates given. */
  minutes: number;
  /** Items without an estimate. */
  unestimated: number;
}

export interface LoadOk {
  room: string;
  days: DayLoad[];
}

/** The user's calendar feed: `https://<server><path>`, until `expires` (ms). */
export interface FeedOk {
  path: string;
  expires: number;
}

/** The one diary of `cls`. */
export function diaryOf(cls: string): string {
  return `${cls}/homework/diary`;
}

/** The day an entry is listed under: a lesson's date, homework's due day. */
export function entryDay(e: Pick<DiaryEntry, "what" | "date" | "due">): Day {
  return e.what === "homework" ? (e.due ?? e.date) : e.date;
}

/** The wire fields of `homework_write` (snake_case, optional ones left out). */
export function entryWire(fields: NewDiaryEntry): Record<string, unknown> {
  return {
    what: fields.what,
    subject: fields.subject,
    text: fields.text,
    date: fields.date,
    due: fields.due,
    minutes: fields.minutes,
    links: fields.links && fields.links.length > 0 ? fields.links : undefined,
    publish_at: fields.publishAt,
  };
}

const optNum = (v: unknown): number | undefined => (typeof v === "number" ? v : undefined);
const optStr = (v: unknown): string | undefined => (typeof v === "string" ? v : undefined);
const strs = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : []);
const isDay = (v: unknown): v is Day => typeof v === "string" && /^\d{4}-\d{2}-\d{2}$/.test(v);

function decodeUser(v: any): UserInfo {
  return {
    id: typeof v?.id === "string" ? v.id : "",
    name: typeof v?.name === "string" ? v.name : typeof v?.id === "string" ? v.id : "?",
    role: typeof v?.role === "string" ? v.role : "",
  };
}

/** An entry from a listing, leniently (unknown keys ignored); null without an id or a day. */
export function decodeDiaryEntry(v: any): DiaryEntry | null {
  if (!v || typeof v !== "object" || typeof v.entry !== "number" || !isDay(v.date)) return null;
  const e: DiaryEntry = {
    entry: v.entry,
    what: v.what === "homework" ? "homework" : "lesson",
    subject: String(v.subject ?? ""),
    text: String(v.text ?? ""),
    date: v.date,
    links: strs(v.links),
    by: decodeUser(v.by),
    ts: optNum(v.ts) ?? 0,
    // Older servers did not say: the author of the version shown.
    author: decodeUser(v.author ?? v.by),
    version: optNum(v.version) ?? v.entry,
    versions: optNum(v.versions) ?? 1,
  };
  // Optional keys stay absent (not undefined), as on the wire.
  if (isDay(v.due)) e.due = v.due;
  if (typeof v.minutes === "number") e.minutes = v.minutes;
  if (typeof v.publish_at === "number") e.publishAt = v.publish_at;
  if (typeof v.done === "boolean") e.done = v.done;
  if (Array.isArray(v.done_by)) e.doneBy = strs(v.done_by);
  if (typeof v.done_count === "number") e.doneCount = v.done_count;
  if (Array.isArray(v.done_names)) e.doneNames = v.done_names.map(decodeUser);
  return e;
}

export function decodeHomeworkOk(v: any, room = ""): HomeworkOk {
  const entries = Array.isArray(v?.entries) ? v.entries.map(decodeDiaryEntry).filter((e: DiaryEntry | null): e is DiaryEntry => e !== null) : [];
  return { room: optStr(v?.room) ?? room, entries, more: v?.more === true };
}

export function decodeDueOk(v: any): DueOk {
  const items: DueItem[] = [];
  for (const raw of Array.isArray(v?.items) ? v.items : []) {
    const e = decodeDiaryEntry(raw);
    if (!e || typeof raw.room !== "string") continue;
    const children = Array.isArray(raw.children)
      ? raw.children.filter((c: any) => typeof c?.id === "string").map((c: any) => ({ id: c.id, name: typeof c.name === "string" ? c.name : c.id }))
      : [];
    items.push({ ...e, room: raw.room, class: optStr(raw.class) ?? raw.room.split("/")[0], children });
  }
  return { items, more: v?.more === true };
}

export function decodeLoadOk(v: any, room = ""): LoadOk {
  const days: DayLoad[] = [];
  for (const d of Array.isArray(v?.days) ? v.days : []) {
    if (!isDay(d?.date)) continue;
    days.push({ date: d.date, items: optNum(d.items) ?? 0, minutes: optNum(d.minutes) ?? 0, unestimated: optNum(d.unestimated) ?? 0 });
  }
  return { room: optStr(v?.room) ?? room, days };
}

export function decodeFeedOk(v: any): FeedOk {
  return { path: String(v?.path ?? ""), expires: optNum(v?.expires) ?? 0 };
}

/**
 * The entries of a range of days `[from, to]` of one diary, kept up to
 * date: load them with `homework`, then feed every event of the room.
 *
 * - `homework_entry` without `entry`: a new entry (its id is the offset);
 *   with `entry`: a new version, every field replaced (the marks stay: they
 *   are about the entry, not the version).
 * - `homework_publish`: a scheduled entry is public now. A pupil or a
 *   parent never saw it, so it is new to them.
 * - `homework_done`: the server sends it only to the pupil who marked and
 *   to their parents, so `from` is either the viewer (their own mark) or
 *   one of a parent's children. Teachers get no marks live, only counts in
 *   listings.
 * - `moderation` redact of an entry's id: the entry was deleted. Any other
 *   redaction (a version, after a teacher's erasure; a done mark, after a
 *   pupil's) cannot be undone from here: `stale` asks for a reload.
 */
export class DiaryView {
  private entries = new Map<number, DiaryEntry>();
  stale = false;

  /** `me`: the viewer's user id (their own done marks are `done`, others' are a parent's children's). */
  constructor(
    readonly room: string,
    readonly from: Day,
    readonly to: Day,
    readonly me: string,
  ) {}

  load(ok: HomeworkOk): void {
    this.entries.clear();
    for (const e of ok.entries) this.entries.set(e.entry, e);
    this.stale = false;
  }

  get(entry: number): DiaryEntry | undefined {
    return this.entries.get(entry);
  }

  /** Feeds one event of the room; true if the view changed. */
  apply(ev: EventFrame): boolean {
    if (ev.room !== this.room) return false;
    const b = ev.body as Record<string, unknown>;
    switch (b.kind) {
      case "homework_entry":
      case "homework_publish": {
        const publish = b.kind === "homework_publish";
        const id = optNum(b.entry) ?? (publish ? undefined : ev.offset);
        if (id === undefined || !isDay(b.date)) return false;
        const before = this.entries.get(id);
        const e: DiaryEntry = {
          entry: id,
          what: b.what === "homework" ? "homework" : "lesson",
          subject: String(b.subject ?? ""),
          text: String(b.text ?? ""),
          date: b.date,
          links: strs(b.links),
          by: ev.from,
          ts: ev.ts,
          author: before?.author ?? ev.from,
          version: publish ? (optNum(b.version) ?? ev.offset) : ev.offset,
          // A version of an entry this view did not hold has at least two.
          versions: publish ? (before?.versions ?? 1) : b.entry === undefined ? 1 : (before?.versions ?? 1) + 1,
        };
        if (isDay(b.due)) e.due = b.due;
        if (typeof b.minutes === "number") e.minutes = b.minutes;
        // Still scheduled: only its author and staff are shown this event.
        const at = optNum(b.publish_at);
        if (!publish && at !== undefined && at > ev.ts) e.publishAt = at;
        if (before?.done !== undefined) e.done = before.done;
        if (before?.doneBy) e.doneBy = before.doneBy;
        if (before?.doneCount !== undefined) e.doneCount = before.doneCount;
        if (before?.doneNames) e.doneNames = before.doneNames;
        const day = entryDay(e);
        if (day >= this.from && day <= this.to) {
          this.entries.set(id, e);
          return true;
        }
        // Moved out of the range.
        return this.entries.delete(id);
      }
      case "homework_done": {
        const id = optNum(b.entry);
        const e = id === undefined ? undefined : this.entries.get(id);
        if (!e || typeof b.done !== "boolean") return false;
        if (ev.from.id === this.me) {
          e.done = b.done;
        } else {
          const by = new Set(e.doneBy ?? []);
          if (b.done) by.add(ev.from.id);
          else by.delete(ev.from.id);
          e.doneBy = [...by].sort();
        }
        return true;
      }
      case "moderation": {
        const a = b.action as Record<string, unknown> | undefined;
        if (a?.kind !== "redact" || typeof a.offset !== "number") return false;
        if (this.entries.delete(a.offset)) return true;
        this.stale = true;
        return true;
      }
      default:
        return false;
    }
  }

  /** The entries, by day then id (as the server lists them). */
  list(): DiaryEntry[] {
    return [...this.entries.values()].sort((x, y) => {
      const dx = entryDay(x);
      const dy = entryDay(y);
      if (dx !== dy) return dx < dy ? -1 : 1;
      return x.entry - y.entry;
    });
  }
}
