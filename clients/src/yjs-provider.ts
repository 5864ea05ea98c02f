// PreauProvider: syncs a Y.Doc with a préau notes room. The logic is
// y-websocket's (sync step 1/2, updates, awareness from y-protocols), but
// each y-protocols message travels in a `yjs` frame of a PreauClient, and
// the server's accepted updates come back as durable `event`s
// (body.kind "yjs_update").
//
// What it adds to y-websocket (protocol/README.md, "Notes"):
// - After a refused update the local document holds a change the server
//   does not, and Yjs cannot take it back: every later local update
//   depends on it and would be refused (`out_of_sync`). The provider stops
//   sending live updates then. After a transient refusal (`rate_limited`,
//   `overloaded`, `storage_error`, `unavailable`) or `out_of_sync` it keeps
//   the local changes and resynchronises later (its step 2 then carries
//   them). After a permanent one (`read_only`, `muted`, `banned`,
//   `forbidden`, `invalid_update`, `update_too_large`, `document_too_large`)
//   it drops the local divergence: a new Y.Doc, with a new clientID,
//   loaded from the server, announced by a `reset` event so that the app
//   rebinds its editor (`provider.doc` and `provider.awareness` change).
// - A message larger than a frame (offline work) is sent in parts
//   (`more: true`).

import * as Y from "yjs";
import * as encoding from "lib0/encoding";
import * as decoding from "lib0/decoding";
import * as syncProtocol from "y-protocols/sync";
import * as awarenessProtocol from "y-protocols/awareness";
import { PreauClient, PreauError, type EventFrame, type YjsFrame } from "./client.js";

export const messageSync = 0;
export const messageAwareness = 1;
export const messageQueryAwareness = 3;

/** Refusals after which local changes may be kept and sent again by a resync. */
export const TRANSIENT_REFUSALS = new Set(["rate_limited", "overloaded", "storage_error", "unavailable"]);

export interface ResetEvent {
  /** The new document, loaded from the server: bind the editor to it. */
  doc: Y.Doc;
  /** The new awareness (of the new clientID), owned by the provider. */
  awareness: awarenessProtocol.Awareness;
  /** The refusal that made the local changes impossible to save. */
  error: PreauError;
}

export interface ProviderEvents {
  /** true once the server's state (its sync step 2) is applied, false while (re)connecting. */
  synced: boolean;
  /** Unacknowledged update requests. */
  pending: number;
  /** A refused request (read_only, forbidden, muted, invalid_update, ...): the local change was not accepted. */
  error: PreauError;
  /**
   * The local changes since a permanent refusal were dropped: `doc` and
   * `awareness` are new objects, loaded from the server. The old document
   * is left as it was (the app may destroy it); the old awareness, even
   * one the app passed in, is destroyed.
   */
  reset: ResetEvent;
}

export interface PreauProviderOptions {
  awareness?: awarenessProtocol.Awareness;
  /** First delay before a resync after a transient refusal without `retry_after_ms` (doubles up to 30 s). */
  resyncDelayMs?: number;
}

type Listener<T> = (v: T) => void;

/** What a sent message is, for the handling of its reply. */
type Kind = "update" | "step2" | "other";

export class PreauProvider {
  readonly client: PreauClient;
  readonly room: string;
  /** The synced document; replaced after a permanent refusal (see the `reset` event). */
  doc: Y.Doc;
  awareness: awarenessProtocol.Awareness;
  synced = false;
  /** Number of update requests sent and not yet acknowledged. */
  pending = 0;

  private listeners = new Map<keyof ProviderEvents, Set<Listener<any>>>();
  private unsubscribe: Array<() => void> = [];
  private ownsJoin = false;
  private destroyed = false;
  // Awareness refused (a locked note, a muted pupil, or our clientID still
  // owned by a dead connection the server has not noticed yet). Awareness
  // renews itself every 15 s, so it is retried anyway; this flag only
  // avoids reporting the same refusal every time.
  private awarenessRefused = false;
  private ownsAwareness: boolean;
  // Bumped when the document is replaced: replies to what the old one
  // sent are ignored.
  private generation = 0;
  // An update was refused transiently (or out_of_sync): live updates wait
  // for the resync, whose step 2 carries them.
  private diverged = false;
  private resyncTimer: ReturnType<typeof setTimeout> | null = null;
  private resyncDelayMs: number;
  private nextResyncDelayMs: number;

  constructor(client: PreauClient, room: string, doc: Y.Doc, options: PreauProviderOptions = {}) {
    this.client = client;
    this.room = room;
    this.doc = doc;
    this.ownsAwareness = !options.awareness;
    this.awareness = options.awareness ?? new awarenessProtocol.Awareness(doc);
    this.resyncDelayMs = options.resyncDelayMs ?? 1_000;
    this.nextResyncDelayMs = this.resyncDelayMs;

    doc.on("update", this.onDocUpdate);
    this.awareness.on("update", this.onAwarenessUpdate);
    this.unsubscribe.push(
      client.on("joined", ({ room: r }) => {
        if (r === room) this.startSync();
      }),
      client.on("yjs", (f) => {
        if (f.room === room) this.onYjs(f);
      }),
      client.on("event", (ev) => {
        if (ev.room === room) this.onEvent(ev);
      }),
      client.on("close", () => this.onDisconnect()),
      client.on("removed", ({ room: r, reason, error }) => {
        if (r !== room) return;
        this.setSynced(false);
        this.emit("error", error ?? new PreauError(reason, `removed from ${room}: ${reason}`));
      }),
    );

    if (client.isJoined(room)) {
      // The app joined the room itself: sync on the existing membership.
      this.startSync();
    } else {
      this.ownsJoin = true;
      client.join(room).catch((err: PreauError) => {
        if (err.code === "already_joined") {
          // The app is joining it already: the `joined` event starts sync, and the room is the app's to leave.
          this.ownsJoin = false;
          return;
        }
        if (!this.destroyed) this.emit("error", err);
      });
    }
  }

  on<K extends keyof ProviderEvents>(type: K, fn: Listener<ProviderEvents[K]>): () => void {
    let set = this.listeners.get(type);
    if (!set) this.listeners.set(type, (set = new Set()));
    set.add(fn);
    return () => set!.delete(fn);
  }

  private emit<K extends keyof ProviderEvents>(type: K, v: ProviderEvents[K]): void {
    for (const fn of this.listeners.get(type) ?? []) fn(v);
  }

  /** Resolves when synced with the server and every local update is acknowledged. */
  whenSynced(): Promise<void> {
    if (this.synced && this.pending === 0 && !this.diverged) return Promise.resolve();
    return new Promise((resolve) => {
      const check = () => {
        if (this.synced && this.pending === 0 && !this.diverged) {
          off1();
          off2();
          resolve();
        }
      };
      const off1 = this.on("synced", check);
      const off2 = this.on("pending", check);
    });
  }

  private setSynced(v: boolean): void {
    if (this.synced === v) return;
    this.synced = v;
    this.emit("synced", v);
  }

  private connected(): boolean {
    return this.client.isJoined(this.room) && this.client.state === "open";
  }

  // After every join reply (first join and each reconnection): as
  // y-websocket does on open, send step 1 and our awareness. The server
  // answers with its step 2 (what we lack) and its step 1, which we answer
  // with our step 2 (what we wrote offline, or since a transient refusal).
  private startSync(): void {
    if (this.destroyed) return;
    this.setSynced(false);
    this.awarenessRefused = false;
    this.sendStep1();
    if (this.awareness.getLocalState() !== null) {
      this.sendAwareness([this.doc.clientID]);
    }
    const q = encoding.createEncoder();
    encoding.writeVarUint(q, messageQueryAwareness);
    this.send(encoding.toUint8Array(q), "other");
  }

  private sendStep1(): void {
    const enc = encoding.createEncoder();
    encoding.writeVarUint(enc, messageSync);
    syncProtocol.writeSyncStep1(enc, this.doc);
    this.send(encoding.toUint8Array(enc), "other");
  }

  private onYjs(frame: YjsFrame): void {
    const dec = decoding.createDecoder(frame.data);
    const type = decoding.readVarUint(dec);
    switch (type) {
      case messageSync: {
        const syncType = decoding.readVarUint(dec);
        if (syncType === syncProtocol.messageYjsSyncStep1) {
          const sv = decoding.readVarUint8Array(dec);
          const update = Y.encodeStateAsUpdate(this.doc, sv);
          // An empty step 2 would be a write for nothing (and refused to readers).
          if (!isEmptyUpdate(update)) {
            const enc = encoding.createEncoder();
            encoding.writeVarUint(enc, messageSync);
            syncProtocol.writeSyncStep2(enc, this.doc, sv);
            this.send(encoding.toUint8Array(enc), "step2");
          }
          // This step 2 carries whatever was held back: live updates may
          // flow again (they follow it on the same connection).
          this.endDivergence();
        } else if (syncType === syncProtocol.messageYjsSyncStep2) {
          syncProtocol.readSyncStep2(dec, this.doc, this);
          this.setSynced(true);
        } else if (syncType === syncProtocol.messageYjsUpdate) {
          syncProtocol.readUpdate(dec, this.doc, this);
        }
        break;
      }
      case messageAwareness:
        awarenessProtocol.applyAwarenessUpdate(this.awareness, decoding.readVarUint8Array(dec), this);
        break;
      case messageQueryAwareness:
        this.sendAwareness([...this.awareness.getStates().keys()]);
        break;
      default:
        break; // unknown y-protocols message: ignore
    }
  }

  private onEvent(ev: EventFrame): void {
    if (ev.body.kind !== "yjs_update") return;
    const data = ev.body.data;
    if (!(data instanceof Uint8Array)) return;
    try {
      // Our own updates come back too: applying them again is a no-op.
      Y.applyUpdate(this.doc, data, this);
    } catch (err) {
      this.emit("error", new PreauError("invalid_update", `bad update at offset ${ev.offset}: ${String(err)}`));
    }
  }

  private onDocUpdate = (update: Uint8Array, origin: unknown, doc: Y.Doc): void => {
    if (origin === this || this.destroyed || doc !== this.doc) return;
    // Held back after a refusal: the resync's step 2 will carry it.
    if (this.diverged) return;
    // Offline: nothing to send; the step 1/2 exchange after the re-join
    // carries every change made meanwhile.
    if (!this.connected()) return;
    const enc = encoding.createEncoder();
    encoding.writeVarUint(enc, messageSync);
    syncProtocol.writeUpdate(enc, update);
    this.send(encoding.toUint8Array(enc), "update");
  };

  private onAwarenessUpdate = (
    { added, updated, removed }: { added: number[]; updated: number[]; removed: number[] },
    origin: unknown,
  ): void => {
    if (origin === this) return;
    this.sendAwareness(added.concat(updated, removed));
  };

  private sendAwareness(clients: number[]): void {
    if (!this.connected()) return;
    // Only our own state: the server refuses entries for clientIDs owned by
    // other connections.
    const own = clients.filter((c) => c === this.doc.clientID);
    if (own.length === 0) return;
    const enc = encoding.createEncoder();
    encoding.writeVarUint(enc, messageAwareness);
    encoding.writeVarUint8Array(enc, awarenessProtocol.encodeAwarenessUpdate(this.awareness, own));
    this.send(encoding.toUint8Array(enc), "other");
  }

  /** Largest `data` per frame: the frame limit minus the request's envelope. */
  private partSize(): number {
    const max = this.client.hello?.limits?.max_frame_bytes ?? 65_536;
    return Math.max(1_024, max - this.room.length - 64);
  }

  private send(data: Uint8Array, kind: Kind): void {
    const generation = this.generation;
    const isUpdate = kind !== "other";
    if (isUpdate) this.bumpPending(1);
    this.sendMessage(data).then(
      () => {
        if (isUpdate) this.bumpPending(-1);
      },
      (err: PreauError) => {
        if (isUpdate) this.bumpPending(-1);
        // A lost connection is not an error: re-sync redoes the exchange.
        if (err.code === "disconnected" || err.code === "not_connected" || this.destroyed) return;
        // Sent from a document since replaced: its fate no longer matters.
        if (generation !== this.generation) return;
        if (!isUpdate) {
          if (this.awarenessRefused) return;
          this.awarenessRefused = true;
          this.emit("error", err);
          return;
        }
        this.refused(err, kind);
      },
    );
  }

  /** Sends one y-protocols message, in parts if it is larger than a frame; settles with the first failure. */
  private async sendMessage(data: Uint8Array): Promise<unknown> {
    const size = this.partSize();
    if (data.length <= size) return this.client.yjs(this.room, data);
    const parts: Array<Promise<unknown>> = [];
    for (let at = 0; at < data.length; at += size) {
      const last = at + size >= data.length;
      parts.push(this.client.yjs(this.room, data.subarray(at, at + size), !last));
    }
    // Pipelined; the first refusal is the cause (later parts of a dropped
    // message are refused as a consequence).
    let result: unknown = null;
    let failure: unknown = undefined;
    for (const p of parts) {
      try {
        result = await p;
      } catch (err) {
        failure ??= err;
      }
    }
    if (failure !== undefined) throw failure;
    return result;
  }

  /** An update (or step 2) was refused: resync later, or drop the local divergence. */
  private refused(err: PreauError, kind: Kind): void {
    this.emit("error", err);
    const transient = TRANSIENT_REFUSALS.has(err.code) || (err.code === "out_of_sync" && kind === "update");
    if (!transient) {
      this.reset(err);
      return;
    }
    this.diverged = true;
    if (this.resyncTimer) return;
    const delay = err.retryAfterMs ?? this.nextResyncDelayMs;
    this.nextResyncDelayMs = Math.min(30_000, this.nextResyncDelayMs * 2);
    this.resyncTimer = setTimeout(() => {
      this.resyncTimer = null;
      // Offline now: the re-join's sync is the resync.
      if (!this.destroyed && this.diverged && this.connected()) this.sendStep1();
    }, delay);
  }

  private endDivergence(): void {
    if (!this.diverged) return;
    this.diverged = false;
    this.nextResyncDelayMs = this.resyncDelayMs;
    if (this.resyncTimer) clearTimeout(this.resyncTimer);
    this.resyncTimer = null;
  }

  /**
   * Drops the local divergence after a permanent refusal: a new document
   * (new clientID: the old one's refused clocks must never be reused),
   * loaded from the server; a new awareness with the same local fields.
   */
  private reset(err: PreauError): void {
    if (this.destroyed) return;
    this.generation += 1;
    this.endDivergence();
    const old = { doc: this.doc, awareness: this.awareness };
    const local = old.awareness.getLocalState();
    // The old clientID's cursor goes away for the others.
    awarenessProtocol.removeAwarenessStates(old.awareness, [old.doc.clientID], "reset");
    old.doc.off("update", this.onDocUpdate);
    old.awareness.off("update", this.onAwarenessUpdate);
    // Its clientID is the dropped document's: of no use any more, even if
    // the app made it (destroying it also stops its 15 s timer).
    old.awareness.destroy();

    const doc = new Y.Doc({ gc: old.doc.gc });
    const awareness = new awarenessProtocol.Awareness(doc);
    if (local) awareness.setLocalState({ ...local });
    this.doc = doc;
    this.awareness = awareness;
    this.ownsAwareness = true;
    doc.on("update", this.onDocUpdate);
    awareness.on("update", this.onAwarenessUpdate);
    this.emit("reset", { doc, awareness, error: err });
    this.setSynced(false);
    // Offline: the re-join syncs the new document.
    if (this.connected()) this.startSync();
  }

  private bumpPending(delta: number): void {
    this.pending += delta;
    this.emit("pending", this.pending);
  }

  private onDisconnect(): void {
    this.setSynced(false);
    // As y-websocket: other users' cursors/names are stale once offline.
    const others = [...this.awareness.getStates().keys()].filter((c) => c !== this.doc.clientID);
    awarenessProtocol.removeAwarenessStates(this.awareness, others, this);
  }

  /** Stops syncing; leaves the room if the provider joined it. */
  destroy(): void {
    if (this.destroyed) return;
    // Tell the others we are gone before the listeners are removed.
    awarenessProtocol.removeAwarenessStates(this.awareness, [this.doc.clientID], "local");
    this.destroyed = true;
    if (this.resyncTimer) clearTimeout(this.resyncTimer);
    this.resyncTimer = null;
    this.doc.off("update", this.onDocUpdate);
    this.awareness.off("update", this.onAwarenessUpdate);
    for (const off of this.unsubscribe.splice(0)) off();
    if (this.ownsAwareness) this.awareness.destroy();
    if (this.ownsJoin) this.client.leave(this.room).catch(() => {});
  }
}

/** A Yjs v1 update with no structs and an empty delete set. */
export function isEmptyUpdate(update: Uint8Array): boolean {
  return update.length === 2 && update[0] === 0 && update[1] === 0;
}
