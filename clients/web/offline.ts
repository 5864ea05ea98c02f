// The offline copy: what the web app loaded, kept on the device so that a
// pupil who reloads the page (or gets the tab back) without network can
// still read it. Stored in IndexedDB through idb-keyval, per user:
//
//   ["user", id]        → the user's `hello` (who they are, their classes)
//                          and the directory of rooms last shown;
//   ["room", id, room]  → one room as last shown: a chat's last events, a
//                          forum's thread list and the posts of the threads
//                          opened, an agenda's items, a note's text, a
//                          diary's week; the home page's week under "@home".
//
// Bounded: MAX_EVENTS events per room, MAX_ROOMS rooms per user (the least
// recently saved go first), MAX_DIRECTORY names in the directory.
//
// Its lifetime is the sign-in's, and the sign-in lives in sessionStorage
// (common.ts): the token goes when the tab is closed, and without a token
// nothing could be read from this copy anyway. So the copy is wiped:
// - at sign-out ("Se déconnecter"), before the page reloads;
// - when the saved token is refused (expired, revoked);
// - at any start of the app that finds no token in the tab (the tab that
//   wrote it was closed: browsers give no reliable moment to wipe
//   IndexedDB as a tab closes, so it is done at the next start);
// - for every other user, as soon as someone signs in: a second pupil on
//   the same phone never reads the first one's rooms, and the first one's
//   copy does not linger.
// Pupils' messages are minors' data: it is kept no longer than that.

import { clear, createStore, del, get, keys, set, update, type UseStore } from "idb-keyval";
import type { EventFrame, HelloOk, Since, ThreadsOk } from "../src/client.js";
import type { AgendaItem } from "../src/agenda.js";
import type { DiaryEntry, DueItem } from "../src/homework.js";

export const MAX_EVENTS = 200;
export const MAX_ROOMS = 20;
export const MAX_DIRECTORY = 300;
/** Saves of one room are grouped: a busy chat writes at most this often. */
const SAVE_DELAY_MS = 400;

const DB_NAME = "preau-offline";
const STORE_NAME = "copies";

export interface UserCopy {
  hello: HelloOk;
  /** The rooms the directory listed, sorted. */
  directory: string[];
  /** Rooms with a stored copy, most recently saved first (at most MAX_ROOMS). */
  rooms: string[];
  saved: number;
}

export interface ChatCopy {
  kind: "chat";
  /** Where a `join` with `since` resumes: the client's position when saved. */
  since: Since;
  /** The events shown, in offset order (the last MAX_EVENTS). */
  events: EventFrame[];
  /** Older events exist on the server. */
  more: boolean;
}

export interface ThreadCopy {
  thread: number;
  events: EventFrame[];
  more: boolean;
}

export interface ForumCopy {
  kind: "forum";
  threads: ThreadsOk;
  /** The threads opened, most recently opened first. */
  posts: ThreadCopy[];
}

/** An agenda's week as last shown (`from`, its Monday), with the homework due in it from the class's diary. */
export interface AgendaCopy {
  kind: "agenda";
  /** Absent from copies kept before the week view (they held eight weeks from their day). */
  from?: string;
  items: AgendaItem[];
  homework?: DiaryEntry[];
}

/** A diary's week as last shown: the copy is read offline for that week. */
export interface DiaryCopy {
  kind: "homework";
  from: string;
  to: string;
  entries: DiaryEntry[];
  /** A parent's children in this class, to say whose mark is whose. */
  children?: Array<{ id: string; name: string }>;
}

/** The home page's week (under the key {@link HOME_KEY}): homework due across classes, and the classes' agenda. */
export interface WeekCopy {
  kind: "week";
  from: string;
  to: string;
  items: DueItem[];
  agenda: Array<AgendaItem & { room: string }>;
}

/** The home page is kept like a room, under a name no room can have. */
export const HOME_KEY = "@home";

export interface NoteCopy {
  kind: "notes";
  text: string;
}

export type RoomCopy = (ChatCopy | ForumCopy | AgendaCopy | NoteCopy | DiaryCopy | WeekCopy) & { room: string; saved: number };
/** What a view hands to {@link OfflineStore.saveRoom}. */
export type RoomContent = ChatCopy | ForumCopy | AgendaCopy | NoteCopy | DiaryCopy | WeekCopy;

// Opened on first use: idb-keyval's createStore opens the database at once.
let db: UseStore | null = null;
function store(): UseStore {
  db ??= createStore(DB_NAME, STORE_NAME);
  return db;
}

/** Set by wipeOfflineCopy: nothing is written any more in this page (a save scheduled before must not bring data back). */
let wiped = false;
const timers = new Set<ReturnType<typeof setTimeout>>();

/** Whether this browser can keep a copy (IndexedDB may be missing, or refused in some private modes). */
function available(): boolean {
  return typeof indexedDB !== "undefined" && !wiped;
}

/** IndexedDB failures (quota, private mode) cost the offline copy, never the app. */
function quietly<T>(p: Promise<T>): Promise<T | undefined> {
  return p.catch((err: unknown) => {
    console.warn("préau: offline copy unavailable", err);
    return undefined;
  });
}

/**
 * Deletes every copy, of every user. `stopWriting` (sign-out, a refused
 * token): this page writes nothing more either, not even a save already
 * scheduled, until it reloads.
 */
export async function wipeOfflineCopy(stopWriting: boolean): Promise<void> {
  if (stopWriting) {
    wiped = true;
    for (const t of timers) clearTimeout(t);
    timers.clear();
  }
  if (typeof indexedDB === "undefined") return;
  await quietly(clear(store()));
}

/** Deletes the copies of every user but `userId` (someone signed in). */
export async function forgetOtherUsers(userId: string): Promise<void> {
  if (!available()) return;
  await quietly(
    (async () => {
      for (const key of await keys(store())) {
        if (Array.isArray(key) && key[1] !== userId) await del(key, store());
      }
    })(),
  );
}

/** One user's copy. */
export class OfflineStore {
  private pending = new Map<string, { timer: ReturnType<typeof setTimeout>; content: () => RoomContent | null }>();

  constructor(readonly userId: string) {}

  private userKey(): IDBValidKey {
    return ["user", this.userId];
  }

  private roomKey(room: string): IDBValidKey {
    return ["room", this.userId, room];
  }

  async loadUser(): Promise<UserCopy | undefined> {
    if (!available()) return undefined;
    const copy = await quietly(get<UserCopy>(this.userKey(), store()));
    // A copy of someone else (it cannot be, keys are per user) is never shown.
    return copy?.hello?.user?.id === this.userId ? copy : undefined;
  }

  async loadRoom(room: string): Promise<RoomCopy | undefined> {
    if (!available()) return undefined;
    return quietly(get<RoomCopy>(this.roomKey(room), store()));
  }

  saveHello(hello: HelloOk): void {
    if (!available() || hello.user.id !== this.userId) return;
    void quietly(update<UserCopy>(this.userKey(), (old) => ({ directory: [], rooms: [], ...old, hello, saved: Date.now() }), store()));
  }

  saveDirectory(rooms: Iterable<string>): void {
    if (!available()) return;
    const directory = [...rooms].sort().slice(0, MAX_DIRECTORY);
    void quietly(
      update<UserCopy | undefined>(this.userKey(), (old) => (old ? { ...old, directory, saved: Date.now() } : old), store()),
    );
  }

  /**
   * Saves a room soon (saves of one room within SAVE_DELAY_MS are one
   * write). `content` is read when the write happens, so the latest state
   * is written; null skips the write (nothing worth keeping yet).
   */
  saveRoom(room: string, content: () => RoomContent | null): void {
    if (!available()) return;
    const prev = this.pending.get(room);
    if (prev) {
      prev.content = content;
      return;
    }
    const timer = setTimeout(() => {
      timers.delete(timer);
      const entry = this.pending.get(room);
      this.pending.delete(room);
      const value = entry?.content();
      if (value) void this.write(room, value);
    }, SAVE_DELAY_MS);
    timers.add(timer);
    this.pending.set(room, { timer, content });
  }

  /** Forgets one room (the server refused it: unknown, forbidden, banned). */
  deleteRoom(room: string): void {
    const prev = this.pending.get(room);
    if (prev) {
      clearTimeout(prev.timer);
      timers.delete(prev.timer);
      this.pending.delete(room);
    }
    if (!available()) return;
    void quietly(
      (async () => {
        await del(this.roomKey(room), store());
        await update<UserCopy | undefined>(this.userKey(), (old) => (old ? { ...old, rooms: old.rooms.filter((r) => r !== room) } : old), store());
      })(),
    );
  }

  private async write(room: string, content: RoomContent): Promise<void> {
    if (!available()) return;
    const copy = { ...bounded(content), room, saved: Date.now() } as RoomCopy;
    await quietly(
      (async () => {
        await set(this.roomKey(room), copy, store());
        // The room goes first in the list; past MAX_ROOMS the oldest copies go.
        let evicted: string[] = [];
        await update<UserCopy | undefined>(
          this.userKey(),
          (old) => {
            if (!old) return old;
            const rooms = [room, ...old.rooms.filter((r) => r !== room)];
            evicted = rooms.slice(MAX_ROOMS);
            return { ...old, rooms: rooms.slice(0, MAX_ROOMS) };
          },
          store(),
        );
        for (const r of evicted) await del(this.roomKey(r), store());
      })(),
    );
  }
}

/** The content cut to its bounds: MAX_EVENTS events per room. */
function bounded(content: RoomContent): RoomContent {
  switch (content.kind) {
    case "chat":
      return { ...content, events: content.events.slice(-MAX_EVENTS), more: content.more || content.events.length > MAX_EVENTS };
    case "forum": {
      // The threads opened most recently keep their posts first, within MAX_EVENTS in all.
      let left = MAX_EVENTS;
      const posts: ThreadCopy[] = [];
      for (const t of content.posts) {
        if (left <= 0) break;
        const events = t.events.slice(-left);
        left -= events.length;
        posts.push({ ...t, events, more: t.more || events.length < t.events.length });
      }
      const threads = { ...content.threads, threads: content.threads.threads.slice(0, MAX_EVENTS), more: content.threads.more || content.threads.threads.length > MAX_EVENTS };
      return { ...content, threads, posts };
    }
    case "agenda":
      return { ...content, items: content.items.slice(0, MAX_EVENTS), homework: content.homework?.slice(0, MAX_EVENTS) };
    case "homework":
      return { ...content, entries: content.entries.slice(0, MAX_EVENTS) };
    case "week":
      return { ...content, items: content.items.slice(0, MAX_EVENTS), agenda: content.agenda.slice(0, MAX_EVENTS) };
    case "notes":
      return content;
  }
}

// ---- the session ------------------------------------------------------------

/** sessionStorage key of the signed-in user's id, set beside the token (common.ts). */
export const SESSION_USER_KEY = "preau.user";

/** The user this tab signed in last, while its token is kept. */
export function sessionUser(): string | null {
  try {
    return sessionStorage.getItem(SESSION_USER_KEY);
  } catch {
    return null;
  }
}
