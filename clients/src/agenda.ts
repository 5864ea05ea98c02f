// The class agenda (protocol/README.md, "Agenda (kind `agenda`)"): dated
// items teachers post for a class, read by its pupils and their parents.
// Requests go through PreauClient.request (they are the agenda's own
// types); AgendaView keeps a date range up to date from the room's events.
// Pure data, no DOM.

import type { EventFrame, PostOk, PreauClient, UserInfo } from "./client.js";

/** An item's fields, as `agenda_add` and `agenda_change` send them (times in ms since the Unix epoch). */
export interface NewAgendaItem {
  title: string;
  starts: number;
  ends?: number;
  allDay?: boolean;
  place?: string;
  details?: string;
}

/** An item as `agenda` gives it. `item` is its id (the offset of its first event). */
export interface AgendaItem {
  item: number;
  title: string;
  starts: number;
  ends?: number;
  allDay: boolean;
  place?: string;
  details?: string;
  by: UserInfo;
  ts: number;
  version: number;
  cancelled: boolean;
  reason?: string;
}

export interface AgendaOk {
  room: string;
  items: AgendaItem[];
  more: boolean;
}

const optNum = (v: unknown): number | undefined => (typeof v === "number" ? v : undefined);
const optStr = (v: unknown): string | undefined => (typeof v === "string" ? v : undefined);

function wire(item: NewAgendaItem): Record<string, unknown> {
  return {
    title: item.title,
    starts: item.starts,
    ends: item.ends,
    all_day: item.allDay || undefined,
    place: item.place,
    details: item.details,
  };
}

/** Adds an item (teachers of the class and staff; the room must be joined). `key` makes a retry safe. */
export function agendaAdd(client: PreauClient, room: string, item: NewAgendaItem, key?: string): Promise<PostOk> {
  return client.request<PostOk>("agenda_add", { room, ...wire(item), key });
}

/** Replaces every field of `item` (a field left out is gone). */
export function agendaChange(client: PreauClient, room: string, item: number, fields: NewAgendaItem): Promise<PostOk> {
  return client.request<PostOk>("agenda_change", { room, item, ...wire(fields) });
}

/** Cancels `item`: it stays listed, marked cancelled. */
export function agendaCancel(client: PreauClient, room: string, item: number, reason?: string): Promise<PostOk> {
  return client.request<PostOk>("agenda_cancel", { room, item, reason });
}

/** The items overlapping `[from, to)` (at most 400 days), without joining. */
export async function agendaList(client: PreauClient, room: string, from: number, to: number, limit?: number): Promise<AgendaOk> {
  return decodeAgendaOk(await client.request<unknown>("agenda", { room, from, to, limit }), room);
}

export function decodeAgendaItem(v: any): AgendaItem | null {
  if (!v || typeof v !== "object" || typeof v.item !== "number" || typeof v.starts !== "number") return null;
  return {
    item: v.item,
    title: String(v.title ?? ""),
    starts: v.starts,
    ends: optNum(v.ends),
    allDay: v.all_day === true,
    place: optStr(v.place),
    details: optStr(v.details),
    by: {
      id: typeof v.by?.id === "string" ? v.by.id : "",
      name: typeof v.by?.name === "string" ? v.by.name : "?",
      role: typeof v.by?.role === "string" ? v.by.role : "",
    },
    ts: optNum(v.ts) ?? 0,
    version: optNum(v.version) ?? v.item,
    cancelled: v.cancelled === true,
    reason: optStr(v.reason),
  };
}

export function decodeAgendaOk(v: any, room = ""): AgendaOk {
  const items = Array.isArray(v?.items) ? v.items.map(decodeAgendaItem).filter((i: AgendaItem | null): i is AgendaItem => i !== null) : [];
  return { room: typeof v?.room === "string" ? v.room : room, items, more: v?.more === true };
}

/**
 * The items of one date range, kept up to date: load them with `agenda`,
 * then feed every event of the room. A new item, a change or a
 * cancellation updates the list; a redacted version (an erasure) makes
 * the item stale: load the range again (`stale` says so).
 */
export class AgendaView {
  private items = new Map<number, AgendaItem>();
  stale = false;

  constructor(readonly room: string, readonly from: number, readonly to: number) {}

  load(ok: AgendaOk): void {
    for (const item of ok.items) this.items.set(item.item, item);
    this.stale = false;
  }

  /** Feeds one event of the room; true if the view changed. */
  apply(ev: EventFrame): boolean {
    if (ev.room !== this.room) return false;
    const b = ev.body as Record<string, unknown>;
    switch (b.kind) {
      case "agenda_item": {
        const starts = optNum(b.starts);
        if (starts === undefined) return false;
        const id = optNum(b.item) ?? ev.offset;
        const ends = optNum(b.ends);
        const before = this.items.get(id);
        const item: AgendaItem = {
          item: id,
          title: String(b.title ?? ""),
          starts,
          ends,
          allDay: b.all_day === true,
          place: optStr(b.place),
          details: optStr(b.details),
          by: ev.from,
          ts: ev.ts,
          version: ev.offset,
          cancelled: before?.cancelled ?? false,
          reason: before?.reason,
        };
        if (starts < this.to && (ends ?? starts) >= this.from) {
          this.items.set(id, item);
        } else if (!this.items.delete(id)) {
          return false;
        }
        return true;
      }
      case "agenda_cancel": {
        const id = optNum(b.item);
        const item = id === undefined ? undefined : this.items.get(id);
        if (!item) return false;
        item.cancelled = true;
        item.reason = optStr(b.reason);
        return true;
      }
      case "moderation": {
        const a = b.action as Record<string, unknown> | undefined;
        if (a?.kind === "redact") this.stale = true;
        return a?.kind === "redact";
      }
      default:
        return false;
    }
  }

  /** The items, by start then id. */
  list(): AgendaItem[] {
    return [...this.items.values()].sort((x, y) => x.starts - y.starts || x.item - y.item);
  }
}
