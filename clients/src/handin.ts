// Hand-ins, « Devoirs à rendre » (protocol/README.md, "Hand-ins (kind
// `handin`)"): one room per class, `CLASS/handin/main`. Teachers open a
// hand-in with a deadline and the families of files taken; pupils hand in
// (and replace until the deadline) a file uploaded over HTTP (src/files.ts);
// teachers follow who handed in, download the zip and return corrections;
// parents read their children's. The requests go through
// PreauClient.request; the decoders are lenient (unknown keys ignored,
// missing ones take defaults). Pure data, no DOM.

import type { EventFrame, PostOk, PreauClient, UserInfo } from "./client.js";
import { decodeFileRef, type FileRef } from "./files.js";

/** The families of files a hand-in may take (none: any the store takes). */
export type FileFamily = "document" | "image" | "audio" | "video";
export const FILE_FAMILIES: readonly FileFamily[] = ["document", "image", "audio", "video"];

/** A pupil's status: `todo` past the deadline is shown as missing by clients. */
export type HandinStatus = "todo" | "handed_in" | "late" | "returned";

export interface NewHandin {
  title: string;
  instructions?: string;
  /** Deadline, ms since the epoch (later than now, within 400 days). */
  due: number;
  /** For these pupils only (ids); or `group`; or neither: the class's pupils. */
  pupils?: string[];
  group?: string;
  accepts?: FileFamily[];
  /** A first submission after `due` is taken, marked late. */
  late?: boolean;
  /** The diary entry it comes from (an offset in `CLASS/homework/diary`). */
  entry?: number;
}

export interface HandinReturned {
  offset: number;
  ts: number;
  by: UserInfo;
  file?: FileRef;
  comment: string;
}

/** One pupil's row: their status, their file, the correction returned. */
export interface PupilRow {
  pupil: UserInfo;
  status: HandinStatus;
  submitted?: number;
  file?: FileRef;
  /** How many times they replaced their work. */
  replaced: number;
  returned?: HandinReturned;
}

export interface HandinCounts {
  pupils: number;
  /** Every pupil who handed in (late ones and those returned included). */
  handedIn: number;
  late: number;
  returned: number;
}

export interface HandinView {
  /** Its id: the offset of its `handin_open`. */
  handin: number;
  title: string;
  instructions: string;
  due: number;
  late: boolean;
  accepts: FileFamily[];
  /** `class:C`, `group:G` or `pupils`. */
  to: string;
  by: UserInfo;
  ts: number;
  entry?: number;
  /** Teachers and staff. */
  counts?: HandinCounts;
  /** A pupil's own row; a parent's, one per child. */
  mine: PupilRow[];
}

export interface HandinStatusOk {
  room: string;
  handin: HandinView;
  /** A row per pupil, sorted by name. */
  pupils: PupilRow[];
}

/** A hand-in room's event, decoded (`handinEventOf`). */
export type HandinEvent =
  | { kind: "handin_open"; handin: number; title: string; due: number; pupils: string[]; accepts: FileFamily[]; late: boolean }
  | { kind: "handin_change"; handin: number; due?: number; late?: boolean }
  | { kind: "handin_submit"; handin: number; pupil: UserInfo; file?: FileRef; late: boolean }
  | { kind: "handin_return"; handin: number; pupil: string; file?: FileRef; comment: string };

/** The class's hand-in room. */
export function handinRoom(cls: string): string {
  return `${cls}/handin/main`;
}

const str = (v: unknown, d = ""): string => (typeof v === "string" ? v : d);
const num = (v: unknown): number => (typeof v === "number" && Number.isFinite(v) ? v : 0);

function decodeUser(v: any): UserInfo {
  if (!v || typeof v !== "object") return { id: "", name: "", role: "student" };
  return { id: str(v.id), name: str(v.name, str(v.id)), role: str(v.role, "student") as UserInfo["role"] };
}

function families(v: unknown): FileFamily[] {
  return Array.isArray(v) ? (v.filter((f) => (FILE_FAMILIES as readonly unknown[]).includes(f)) as FileFamily[]) : [];
}

export function decodePupilRow(v: any): PupilRow {
  const status = ["todo", "handed_in", "late", "returned"].includes(v?.status) ? (v.status as HandinStatus) : "todo";
  const row: PupilRow = { pupil: decodeUser(v?.pupil), status, replaced: num(v?.replaced) };
  if (typeof v?.submitted === "number") row.submitted = v.submitted;
  const file = decodeFileRef(v?.file);
  if (file) row.file = file;
  const r = v?.returned;
  if (r && typeof r === "object") {
    row.returned = { offset: num(r.offset), ts: num(r.ts), by: decodeUser(r.by), comment: str(r.comment) };
    const f = decodeFileRef(r.file);
    if (f) row.returned.file = f;
  }
  return row;
}

export function decodeHandinView(v: any): HandinView {
  const h: HandinView = {
    handin: num(v?.handin),
    title: str(v?.title),
    instructions: str(v?.instructions),
    due: num(v?.due),
    late: v?.late === true,
    accepts: families(v?.accepts),
    to: str(v?.to),
    by: decodeUser(v?.by),
    ts: num(v?.ts),
    mine: Array.isArray(v?.mine) ? v.mine.map(decodePupilRow) : [],
  };
  if (typeof v?.entry === "number") h.entry = v.entry;
  const c = v?.counts;
  if (c && typeof c === "object") h.counts = { pupils: num(c.pupils), handedIn: num(c.handed_in), late: num(c.late), returned: num(c.returned) };
  return h;
}

export function decodeHandinsOk(v: any): HandinView[] {
  return Array.isArray(v?.handins) ? v.handins.map(decodeHandinView) : [];
}

export function decodeHandinStatusOk(v: any): HandinStatusOk {
  return { room: str(v?.room), handin: decodeHandinView(v?.handin), pupils: Array.isArray(v?.pupils) ? v.pupils.map(decodePupilRow) : [] };
}

/** Opens a hand-in (teachers of the class, staff); its id is the reply's `offset`. */
export function handinOpen(client: PreauClient, room: string, h: NewHandin): Promise<PostOk> {
  return client.request<PostOk>("handin_open", {
    room,
    title: h.title,
    instructions: h.instructions,
    due: h.due,
    pupils: h.pupils,
    group: h.group,
    accepts: h.accepts?.length ? h.accepts : undefined,
    late: h.late,
    entry: h.entry,
  });
}

/** Moves the deadline, or changes whether late work is taken (at least one). */
export function handinChange(client: PreauClient, room: string, handin: number, change: { due?: number; late?: boolean }): Promise<PostOk> {
  return client.request<PostOk>("handin_change", { room, handin, due: change.due, late: change.late });
}

/** A pupil hands in (or replaces, until the deadline) `file`, a finished upload of theirs. */
export function handinSubmit(client: PreauClient, room: string, handin: number, file: string): Promise<PostOk> {
  return client.request<PostOk>("handin_submit", { room, handin, file });
}

/** Returns a correction to one pupil: a corrected file (an upload of the teacher's) and/or a comment. */
export function handinReturn(client: PreauClient, room: string, handin: number, pupil: string, correction: { file?: string; comment?: string }): Promise<PostOk> {
  return client.request<PostOk>("handin_return", { room, handin, pupil, file: correction.file, comment: correction.comment || undefined });
}

/** The room's hand-ins the user may read, latest first (teachers: with counts; pupils and parents: with their rows). */
export async function handins(client: PreauClient, room: string): Promise<HandinView[]> {
  return decodeHandinsOk(await client.request<unknown>("handins", { room }));
}

/** One hand-in followed by its teachers: a row per pupil, sorted by name. */
export async function handinStatus(client: PreauClient, room: string, handin: number): Promise<HandinStatusOk> {
  return decodeHandinStatusOk(await client.request<unknown>("handin_status", { room, handin }));
}

/** A hand-in room's event (`handin_*`), or null. */
export function handinEventOf(ev: EventFrame): HandinEvent | null {
  const b = ev.body as Record<string, unknown>;
  switch (b.kind) {
    case "handin_open":
      return { kind: "handin_open", handin: ev.offset, title: str(b.title), due: num(b.due), pupils: Array.isArray(b.pupils) ? b.pupils.filter((p): p is string => typeof p === "string") : [], accepts: families(b.accepts), late: b.late === true };
    case "handin_change": {
      const e: HandinEvent = { kind: "handin_change", handin: num(b.handin) };
      if (typeof b.due === "number") e.due = b.due;
      if (typeof b.late === "boolean") e.late = b.late;
      return e;
    }
    case "handin_submit":
      return { kind: "handin_submit", handin: num(b.handin), pupil: ev.from, file: decodeFileRef(b.file), late: b.late === true };
    case "handin_return":
      return { kind: "handin_return", handin: num(b.handin), pupil: str(b.pupil), file: decodeFileRef(b.file), comment: str(b.comment) };
    default:
      return null;
  }
}
