// The notification feed as the app shell follows it (in the first load:
// the bell's count is there from the start; the feed's list, the
// conversations and the settings are the messages chunk, web/messages.ts).
//
// After each `hello` it reads the feed, joins the user's inbox room (the
// client re-joins it after a reconnection, and replays what was missed),
// and keeps a FeedState from its events. A `feed_release` (quiet hours
// ended), a change of quiet hours or a read mark it cannot count reads
// the feed again. What arrives about the room on screen is marked read.

import type { EventFrame, PreauClient } from "../src/client.js";
import { FeedState, isConversation, type FeedChange } from "../src/messages.js";

export class Inbox {
  readonly state = new FeedState();
  /** The room on screen, if any: its notifications are read as they arrive. */
  private viewing?: string;
  private listeners = new Set<(change: FeedChange | null) => void>();
  private loading: Promise<void> | null = null;
  private again = false;
  /** Inbox events received while a `feed` request is out, applied again once it is loaded. */
  private buffer: EventFrame[] | null = null;
  private started = false;
  /**
   * Read marks sent and not yet back as `feed_seen` (room, or "" for all):
   * each mark is an event stored in the inbox, so the same one is not sent
   * twice (a feed item opened, then its room shown).
   */
  private marking = new Map<string, number>();

  constructor(private client: PreauClient) {}

  start(): void {
    if (this.started) return;
    this.started = true;
    this.client.on("event", (ev) => this.event(ev));
    this.client.on("open", () => void this.refresh());
    this.client.on("reset", ({ room }) => {
      if (room === this.state.room) void this.refresh();
    });
    // Back to a tab left in the background: what arrived in the room shown is read now.
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && this.viewing) this.markRead(this.viewing);
    });
    if (this.client.state === "open") void this.refresh();
  }

  /** Called with what changed (null: the feed was read again) after each change. */
  on(fn: (change: FeedChange | null) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private emit(change: FeedChange | null): void {
    for (const fn of this.listeners) {
      try {
        fn(change);
      } catch (err) {
        console.error("préau: feed listener failed", err);
      }
    }
  }

  /** Reads the feed again (one request at a time; a call meanwhile reads once more after it). */
  refresh(): Promise<void> {
    if (this.loading) {
      this.again = true;
      return this.loading;
    }
    this.loading = (async () => {
      do {
        this.again = false;
        this.buffer = [];
        try {
          let ok = await this.client.feed();
          if (!this.client.isJoined(ok.room)) {
            try {
              await this.client.join(ok.room);
            } catch (err) {
              // Already asked for (being re-joined after a reconnection): fine.
              if ((err as { code?: string }).code !== "already_joined") throw err;
            }
            // Read again once joined: nothing falls between the reply and the join.
            ok = await this.client.feed();
          }
          this.state.load(ok);
          for (const ev of this.buffer) this.state.apply(ev);
          this.emit(null);
        } catch {
          // Offline or refused: the next connection reads it again.
        } finally {
          this.buffer = null;
        }
      } while (this.again);
    })().finally(() => (this.loading = null));
    return this.loading;
  }

  private event(ev: EventFrame): void {
    if (!ev.room.startsWith("_/inbox/")) return;
    this.buffer?.push(ev);
    const change = this.state.apply(ev);
    if (!change) return;
    if (change.kind === "reload") {
      void this.refresh();
      return;
    }
    if (change.kind === "read") this.marking.clear();
    if (change.kind === "notify") {
      this.marking.delete(change.item.room);
      this.marking.delete("");
      if (change.item.room === this.viewing && !document.hidden) this.markRead(change.item.room);
    }
    this.emit(change);
  }

  /** The room now on screen (undefined: none): what arrives about it is read. */
  view(room: string | undefined): void {
    this.viewing = room;
    if (room) this.markRead(room);
  }

  /** Marks `room`'s notifications read (all of them without `room`), when there are any. */
  markRead(room?: string): void {
    if (room !== undefined && this.state.unread(room) === 0) return;
    if (room === undefined && this.state.total === 0) return;
    if (this.client.state !== "open") return;
    const key = room ?? "";
    const sent = this.marking.get(key) ?? this.marking.get("");
    if (sent !== undefined && Date.now() - sent < 5_000) return;
    this.marking.set(key, Date.now());
    this.client.feedRead(room === undefined ? {} : { room }).catch(() => {
      this.marking.delete(key); // read again at the next opening
    });
  }

  /** Unread notifications about `room`. */
  unread(room: string): number {
    return this.state.unread(room);
  }

  /** Unread notifications about conversations (the « Messages » badge). */
  unreadMessages(): number {
    let n = 0;
    for (const [room, count] of this.state.unreadByRoom()) if (isConversation(room)) n += count;
    return n;
  }
}
