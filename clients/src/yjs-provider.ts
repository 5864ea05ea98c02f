// PreauProvider: syncs a Y.Doc with a préau notes room. The logic is
// y-websocket's (sync step 1/2, updates, awareness from y-protocols), but
// each y-protocols message travels in a `yjs` frame of a PreauClient, and
// the server's accepted updates come back as durable `event`s
// (body.kind "yjs_update").

import * as Y from "yjs";
import * as encoding from "lib0/encoding";
import * as decoding from "lib0/decoding";
import * as syncProtocol from "y-protocols/sync";
import * as awarenessProtocol from "y-protocols/awareness";
import { PreauClient, PreauError, type EventFrame, type YjsFrame } from "./client.js";

export const messageSync = 0;
export const messageAwareness = 1;
export const messageQueryAwareness = 3;

export interface ProviderEvents {
  /** true once the server's state (its sync step 2) is applied, false while (re)connecting. */
  synced: boolean;
  /** Unacknowledged update requests. */
  pending: number;
  /** A refused request (read_only, forbidden, muted, invalid_update, ...): the local change was not accepted. */
  error: PreauError;
}

export interface PreauProviderOptions {
  awareness?: awarenessProtocol.Awareness;
}

type Listener<T> = (v: T) => void;

export class PreauProvider {
  readonly client: PreauClient;
  readonly room: string;
  readonly doc: Y.Doc;
  readonly awareness: awarenessProtocol.Awareness;
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

  constructor(client: PreauClient, room: string, doc: Y.Doc, options: PreauProviderOptions = {}) {
    this.client = client;
    this.room = room;
    this.doc = doc;
    this.ownsAwareness = !options.awareness;
    this.awareness = options.awareness ?? new awarenessProtocol.Awareness(doc);

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
    if (this.synced && this.pending === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const check = () => {
        if (this.synced && this.pending === 0) {
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

  // After every join reply (first join and each reconnection): as
  // y-websocket does on open, send step 1 and our awareness. The server
  // answers with its step 2 (what we lack) and its step 1, which we answer
  // with our step 2 (what we wrote offline).
  private startSync(): void {
    if (this.destroyed) return;
    this.setSynced(false);
    this.awarenessRefused = false;
    const enc = encoding.createEncoder();
    encoding.writeVarUint(enc, messageSync);
    syncProtocol.writeSyncStep1(enc, this.doc);
    this.send(encoding.toUint8Array(enc), false);
    if (this.awareness.getLocalState() !== null) {
      this.sendAwareness([this.doc.clientID]);
    }
    const q = encoding.createEncoder();
    encoding.writeVarUint(q, messageQueryAwareness);
    this.send(encoding.toUint8Array(q), false);
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
            this.send(encoding.toUint8Array(enc), true);
          }
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

  private onDocUpdate = (update: Uint8Array, origin: unknown): void => {
    if (origin === this || this.destroyed) return;
    // Offline: nothing to send; the step 1/2 exchange after the re-join
    // carries every change made meanwhile.
    if (!this.client.isJoined(this.room) || this.client.state !== "open") return;
    const enc = encoding.createEncoder();
    encoding.writeVarUint(enc, messageSync);
    syncProtocol.writeUpdate(enc, update);
    this.send(encoding.toUint8Array(enc), true);
  };

  private onAwarenessUpdate = (
    { added, updated, removed }: { added: number[]; updated: number[]; removed: number[] },
    origin: unknown,
  ): void => {
    if (origin === this) return;
    this.sendAwareness(added.concat(updated, removed));
  };

  private sendAwareness(clients: number[]): void {
    if (!this.client.isJoined(this.room) || this.client.state !== "open") return;
    // Only our own state: the server refuses entries for clientIDs owned by
    // other connections.
    const own = clients.filter((c) => c === this.doc.clientID);
    if (own.length === 0) return;
    const enc = encoding.createEncoder();
    encoding.writeVarUint(enc, messageAwareness);
    encoding.writeVarUint8Array(enc, awarenessProtocol.encodeAwarenessUpdate(this.awareness, own));
    this.send(encoding.toUint8Array(enc), false);
  }

  private send(data: Uint8Array, isUpdate: boolean): void {
    if (isUpdate) this.bumpPending(1);
    this.client.yjs(this.room, data).then(
      () => {
        if (isUpdate) this.bumpPending(-1);
      },
      (err: PreauError) => {
        if (isUpdate) this.bumpPending(-1);
        // A lost connection is not an error: re-sync redoes the exchange.
        if (err.code === "disconnected" || err.code === "not_connected" || this.destroyed) return;
        if (!isUpdate) {
          if (this.awarenessRefused) return;
          this.awarenessRefused = true;
        }
        this.emit("error", err);
      },
    );
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
