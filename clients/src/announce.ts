// Announcements (protocol/README.md, "Announcements (kind `announce`)"):
// one room `_/announce/<32 hex>` per announcement, sent to diffusion lists
// (a class, its parents, its teachers; for staff also a level, every
// teacher, the staff, the whole school). Recipients join it and read its
// `announce` event, then say they opened it (`announce_read`) and, when
// asked, acknowledge it (`announce_ack`); the sender follows the receipts
// live in the room and asks `announce_status` for who has not read it.
// The requests go through PreauClient.request; the decoders are lenient
// (unknown keys ignored, missing ones take defaults). Pure data, no DOM.

import type { EventFrame, PostOk, PreauClient, UserInfo } from "./client.js";

/**
 * A diffusion list: `school`, `staff`, `teachers` (staff only),
 * `level:L` (staff only), `class:C` / `group:C` (pupils), `parents:C`,
 * `teachers:C` (staff, and teachers of `C`).
 */
export type AnnounceTarget = "school" | "staff" | "teachers" | `level:${string}` | `class:${string}` | `group:${string}` | `parents:${string}` | `teachers:${string}`;

export interface NewAnnouncement {
  targets: AnnounceTarget[];
  title: string;
  text: string;
  /** Ask each recipient to acknowledge it (« lu et approuvé »). */
  ack?: boolean;
  /** Staff only: its notifications pass quiet hours (and it is written in the audit log). */
  urgent?: boolean;
  /** Idempotency key: sent again with the same key, it is the same announcement, sent once. */
  key?: string;
}

/** The `announce` reply: the announcement's room and how many people it was sent to. */
export interface AnnounceOk {
  room: string;
  recipients: number;
}

/** A pupil none of whose recipient parents opened the announcement. */
export interface FamilyNotRead {
  /** The pupil's name. */
  child: string;
  /** Their first class. */
  class?: string;
  /** The names of their parents among the recipients. */
  parents: string[];
}

/** The `announce_status` reply (the sender and staff). */
export interface AnnounceStatus {
  room: string;
  title: string;
  recipients: number;
  /** Recipients who opened or acknowledged it. */
  read: number;
  /** Acknowledgement was asked. */
  ack: boolean;
  acked: number;
  /** Sorted by name, at most 500. */
  notRead: UserInfo[];
  /** Empty unless `ack`. */
  notAcked: UserInfo[];
  familiesNotRead: FamilyNotRead[];
}

/** One announcement the user sent (`announcements`, latest first). */
export interface SentAnnouncement {
  room: string;
  title: string;
  ts: number;
  recipients: number;
}

/** The announcement itself, as its room's `announce` event gives it. */
export interface Announcement {
  room: string;
  offset: number;
  ts: number;
  from: UserInfo;
  title: string;
  text: string;
  targets: string[];
  count: number;
  ack: boolean;
  urgent: boolean;
}

/** A receipt, as the sender (and staff) see it live in the room. */
export interface AnnounceReceipt {
  kind: "read" | "ack";
  /** The recipient. */
  from: UserInfo;
  ts: number;
}

/** True for an announcement's room (`_/announce/<hex>`). */
export function isAnnouncement(room: string): boolean {
  return room.startsWith("_/announce/");
}

const str = (v: unknown, d = ""): string => (typeof v === "string" ? v : d);
const num = (v: unknown): number => (typeof v === "number" && Number.isFinite(v) ? v : 0);

function decodeUser(v: any): UserInfo | null {
  if (!v || typeof v !== "object" || typeof v.id !== "string") return null;
  return { id: v.id, name: str(v.name, v.id), role: (str(v.role, "student") as UserInfo["role"]) };
}

const users = (v: unknown): UserInfo[] => (Array.isArray(v) ? v.map(decodeUser).filter((u): u is UserInfo => u !== null) : []);

export function decodeAnnounceOk(v: any): AnnounceOk {
  return { room: str(v?.room), recipients: num(v?.recipients) };
}

export function decodeAnnounceStatus(v: any): AnnounceStatus {
  const families = Array.isArray(v?.families_not_read) ? v.families_not_read : [];
  return {
    room: str(v?.room),
    title: str(v?.title),
    recipients: num(v?.recipients),
    read: num(v?.read),
    ack: v?.ack === true,
    acked: num(v?.acked),
    notRead: users(v?.not_read),
    notAcked: users(v?.not_acked),
    familiesNotRead: families
      .filter((f: any) => f && typeof f.child === "string")
      .map((f: any) => {
        const family: FamilyNotRead = { child: f.child, parents: Array.isArray(f.parents) ? f.parents.filter((p: unknown) => typeof p === "string") : [] };
        if (typeof f.class === "string") family.class = f.class;
        return family;
      }),
  };
}

export function decodeSentList(v: any): SentAnnouncement[] {
  const sent = Array.isArray(v?.sent) ? v.sent : [];
  return sent.filter((s: any) => s && typeof s.room === "string").map((s: any) => ({ room: s.room, title: str(s.title), ts: num(s.ts), recipients: num(s.recipients) }));
}

/** Sends an announcement (teachers to their own classes' lists, staff to any). */
export async function announce(client: PreauClient, a: NewAnnouncement): Promise<AnnounceOk> {
  return decodeAnnounceOk(
    await client.request<unknown>("announce", { targets: a.targets, title: a.title, text: a.text, ack: a.ack || undefined, urgent: a.urgent || undefined, key: a.key }),
  );
}

/** A recipient opened it (stored once per reader; a repeat within the hour gets the first `PostOk`). */
export function announceRead(client: PreauClient, room: string): Promise<PostOk> {
  return client.request<PostOk>("announce_read", { room });
}

/** A recipient acknowledges it (« lu et approuvé »; counts as read too). */
export function announceAck(client: PreauClient, room: string): Promise<PostOk> {
  return client.request<PostOk>("announce_ack", { room });
}

/** Counts, and who has not read or acknowledged it (the sender and staff only). */
export async function announceStatus(client: PreauClient, room: string): Promise<AnnounceStatus> {
  return decodeAnnounceStatus(await client.request<unknown>("announce_status", { room }));
}

/** The announcements the user sent, latest first. */
export async function announcements(client: PreauClient): Promise<SentAnnouncement[]> {
  return decodeSentList(await client.request<unknown>("announcements", {}));
}

/** The announcement in a room event (`body.kind == "announce"`), or null. */
export function announcementOf(ev: EventFrame): Announcement | null {
  const b = ev.body as Record<string, unknown>;
  if (b.kind !== "announce") return null;
  return {
    room: ev.room,
    offset: ev.offset,
    ts: ev.ts,
    from: ev.from,
    title: str(b.title),
    text: str(b.text),
    targets: Array.isArray(b.targets) ? b.targets.filter((t): t is string => typeof t === "string") : [],
    count: num(b.count),
    ack: b.ack === true,
    urgent: b.urgent === true,
  };
}

/** A receipt in a room event (`announce_read` / `announce_ack`), or null. */
export function receiptOf(ev: EventFrame): AnnounceReceipt | null {
  const k = (ev.body as { kind?: unknown }).kind;
  if (k !== "announce_read" && k !== "announce_ack") return null;
  return { kind: k === "announce_ack" ? "ack" : "read", from: ev.from, ts: ev.ts };
}
