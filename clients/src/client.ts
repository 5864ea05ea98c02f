// PreauClient: one préau session (protocol v1, see protocol/README.md) over a
// WebSocket that comes back by itself. It keeps, per joined room, the epoch
// and the last offset seen, so that after a network loss every room is
// re-joined with `since` and nothing is lost or shown twice.

import { decode, encode } from "@msgpack/msgpack";
import {
  decodeDueOk,
  decodeFeedOk,
  decodeHomeworkOk,
  decodeLoadOk,
  entryWire,
  type Day,
  type DueOk,
  type FeedOk,
  type HomeworkOk,
  type LoadOk,
  type NewDiaryEntry,
} from "./homework.js";
import {
  decodeContactsOk,
  decodeConversations,
  decodeDmOk,
  decodeDmSentOk,
  decodeDmSharedOk,
  decodeNotificationsOk,
  decodeQuietState,
  type ContactsOk,
  type Conversation,
  type DmOk,
  type DmSentOk,
  type DmSharedOk,
  type NotificationsOk,
  type QuietHours,
  type QuietState,
} from "./messages.js";

export const SUBPROTOCOL = "preau.v1";

export type Role = "student" | "teacher" | "parent" | "staff" | (string & {});

export interface UserInfo {
  id: string;
  name: string;
  role: Role;
}

export interface Limits {
  max_frame_bytes: number;
  max_message_len: number;
  max_rooms: number;
  history_page_max: number;
  ping_interval_ms: number;
}

/** One of a parent's children, as their token lists them. */
export interface ChildInfo {
  id: string;
  name: string;
  /** Empty: the token does not say which of the parent's classes are theirs. */
  classes?: string[];
}

export interface HelloOk {
  user: UserInfo;
  classes: string[];
  /** A parent's children (absent for others). */
  children?: ChildInfo[];
  node: string;
  version: string;
  limits: Limits;
}

export interface EventBody {
  kind: string;
  [key: string]: unknown;
}

export interface EventFrame {
  type: "event";
  room: string;
  epoch: string;
  offset: number;
  ts: number;
  from: UserInfo;
  body: EventBody;
}

export interface Since {
  epoch: string;
  offset: number;
}

export interface Recovery {
  recovered: boolean;
  reason?: string;
}

export interface JoinOk {
  room: string;
  epoch: string;
  head: number;
  first: number;
  members: UserInfo[];
  member_count: number;
  pinned: number[];
  /** Only moderators may write (a read-only room, a locked note); missing from older servers: false. */
  read_only?: boolean;
  recovery?: Recovery;
  events: EventFrame[];
}

export interface PostOk {
  room: string;
  epoch: string;
  offset: number;
  ts: number;
}

export interface HistoryOk {
  room: string;
  epoch: string;
  head: number;
  first: number;
  more: boolean;
  events: EventFrame[];
}

export interface RoomViewMember {
  user: UserInfo;
  muted_until?: number;
  banned: boolean;
}

export interface RoomView {
  room: string;
  members: RoomViewMember[];
  muted: Record<string, number>;
  banned: string[];
  slow_mode: number;
  read_only: boolean;
  pinned: number[];
  recent_messages: number;
  open_reports: EventFrame[];
}

export type ModerationAction =
  | { kind: "redact"; offset: number; reason?: string }
  | { kind: "mute"; user: string; seconds: number; reason?: string; announce?: boolean }
  | { kind: "unmute"; user: string }
  | { kind: "kick"; user: string; reason?: string; announce?: boolean }
  | { kind: "ban"; user: string; reason?: string; announce?: boolean }
  | { kind: "unban"; user: string }
  | { kind: "slow_mode"; seconds: number }
  // forums: with `thread`, locks (or unlocks) that thread only
  | { kind: "read_only"; on: boolean; thread?: number }
  | { kind: "pin"; offset: number }
  | { kind: "unpin"; offset: number }
  | { kind: "resolve"; report: number; dismissed: boolean }
  // notes: validate the current state as a named version (and lock the draft)
  | { kind: "validate"; label: string; lock?: boolean }
  // forums: opens the forum or replaces its settings (the class's own moderators only)
  | { kind: "configure"; flavour: Flavour; classes: string[]; moderators: string[] };

/** What a forum is for: `debate` (only moderators open threads), `help` (answers are marked), `interclass`. */
export type Flavour = "debate" | "help" | "interclass" | (string & {});

export interface ForumSettings {
  flavour: Flavour;
  /** Other classes whose pupils and teachers read and post. */
  classes: string[];
  /** Teachers (user ids) who moderate besides the class's own. */
  moderators: string[];
}

/** One thread of a forum's thread list. */
export interface ThreadInfo {
  /** The offset of the thread's first post: the thread's id. */
  thread: number;
  /** Absent once the first post was deleted. */
  title?: string;
  from: UserInfo;
  ts: number;
  /** Offset and time of the thread's last post (its last activity). */
  last_offset: number;
  last_ts: number;
  /** Posts after the first one (deleted ones included). */
  replies: number;
  /** Posts after the user's read mark, not counting their own. */
  unread: number;
  /** The post marked as the answer (help forums). */
  answer?: number;
  locked: boolean;
  pinned: boolean;
  deleted: boolean;
}

export interface ThreadsOk {
  room: string;
  settings: ForumSettings;
  /** Pinned threads first, then by last activity, newest first. */
  threads: ThreadInfo[];
  more: boolean;
}

export interface NoteVersion {
  version: number;
  label: string;
  by: UserInfo;
  ts: number;
  offset: number;
}

export interface PresenceFrame {
  type: "presence";
  room: string;
  action: "join" | "leave";
  user: UserInfo;
}

export interface TypingFrame {
  type: "typing";
  room: string;
  user: UserInfo;
}

export interface YjsFrame {
  type: "yjs";
  room: string;
  data: Uint8Array;
}

/** An `error` reply, or a local failure (`not_connected`, `disconnected`, `timeout`). */
export class PreauError extends Error {
  readonly code: string;
  readonly retryAfterMs?: number;
  constructor(code: string, message: string, retryAfterMs?: number) {
    super(message);
    this.name = "PreauError";
    this.code = code;
    this.retryAfterMs = retryAfterMs;
  }
}

/** What a browser's WebSocket and the `ws` package both offer. */
export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: any) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: any) => void) | null;
}
export type WebSocketCtor = new (url: string, protocols?: string | string[]) => WebSocketLike;

export interface PreauClientOptions {
  /** `ws://host/ws` or `wss://host/ws`. */
  url: string;
  /** A JWT, or a function called at every (re)connection, so an expired token can be renewed. */
  token: string | (() => string | Promise<string>);
  /** Defaults to `globalThis.WebSocket` (browsers); pass `ws`'s `WebSocket` in Node. */
  WebSocket?: WebSocketCtor;
  /** First reconnection delay [500 ms], doubled at each failure up to `backoffMaxMs` [30 s], jittered. */
  backoffMs?: number;
  backoffMaxMs?: number;
  /** A request without reply after this long is rejected with `timeout` [20 s]. */
  requestTimeoutMs?: number;
  /** No open socket after this long: give up this attempt and retry [10 s]. */
  connectTimeoutMs?: number;
}

export type ConnectionState = "idle" | "connecting" | "open" | "closed";

export interface ClientEvents {
  /** Authenticated, first time and after every reconnection. */
  open: HelloOk;
  /** The socket closed; `willReconnect` false means the client stopped (see `fatal`). */
  close: { code: number; reason: string; willReconnect: boolean; retryInMs?: number };
  state: ConnectionState;
  /** A durable event of a joined room, live or replayed, each offset once and in order. */
  event: EventFrame;
  presence: PresenceFrame;
  typing: TypingFrame;
  yjs: YjsFrame;
  /** A join reply, for `join()` and for every automatic re-join (`rejoin: true`). */
  joined: { room: string; data: JoinOk; rejoin: boolean };
  /** Outcome of a join with `since`. `caughtUp`: a too_far_behind gap was filled from `history`. */
  recovery: { room: string; recovered: boolean; reason?: string; caughtUp?: boolean };
  /** The room's timeline could not be recovered: drop it and reload with `history({before: head + 1})`. */
  reset: { room: string; epoch: string; head: number; reason: string };
  /** The client is no longer a member: kicked, banned, or a re-join was refused. */
  removed: { room: string; reason: string; error?: PreauError; event?: EventFrame };
  /** The client stopped for good (bad token, protocol violation): it will not reconnect. */
  fatal: PreauError;
  /** Every decoded frame, unknown types included. */
  frame: Record<string, unknown>;
}

type Listener<T> = (value: T) => void;

interface Pending {
  resolve: (data: any) => void;
  reject: (err: PreauError) => void;
  timer: ReturnType<typeof setTimeout>;
  /** Runs synchronously when the reply is read, before any later frame. */
  onReply?: (frame: Record<string, any>) => void;
}

interface RoomState {
  epoch?: string;
  /** Last offset delivered to the app (or the join's head). */
  offset: number;
  /** Whether `offset` may be sent as `since` (false before the first join reply without one). */
  known: boolean;
  joined: boolean;
  /** `join()` calls waiting for the next join reply of this room. */
  waiters: Array<{ resolve: (d: JoinOk) => void; reject: (e: PreauError) => void }>;
  /** Live events held back while a too_far_behind gap is filled from history. */
  held: EventFrame[] | null;
}

/** Errors after which the same post, sent again with the same key, may succeed. */
const RETRYABLE = new Set(["disconnected", "not_connected", "timeout", "unavailable", "overloaded", "storage_error"]);

/** A post's idempotency key: 16 random bytes, hex. */
function newKey(): string {
  const bytes = new Uint8Array(16);
  globalThis.crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// Close codes after which reconnecting with the same token cannot help.
const FATAL_CLOSES = new Set([1003, 4000, 4001]);

export class PreauClient {
  readonly url: string;
  user?: UserInfo;
  hello?: HelloOk;
  state: ConnectionState = "idle";

  private opts: Required<Omit<PreauClientOptions, "token" | "url" | "WebSocket">>;
  private tokenSource: PreauClientOptions["token"];
  private Ctor: WebSocketCtor;
  private ws: WebSocketLike | null = null;
  private nextId = 1;
  private pending = new Map<number, Pending>();
  private wanted = new Map<string, RoomState>();
  private listeners = new Map<keyof ClientEvents, Set<Listener<any>>>();
  private attempt = 0;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private heartbeat: ReturnType<typeof setInterval> | null = null;
  private firstOpen: { resolve: (h: HelloOk) => void; reject: (e: PreauError) => void } | null = null;

  constructor(options: PreauClientOptions) {
    this.url = options.url;
    this.tokenSource = options.token;
    const Ctor = options.WebSocket ?? (globalThis as any).WebSocket;
    if (!Ctor) throw new Error("no WebSocket implementation: pass options.WebSocket");
    this.Ctor = Ctor;
    this.opts = {
      backoffMs: options.backoffMs ?? 500,
      backoffMaxMs: options.backoffMaxMs ?? 30_000,
      requestTimeoutMs: options.requestTimeoutMs ?? 20_000,
      connectTimeoutMs: options.connectTimeoutMs ?? 10_000,
    };
  }

  // ---- events -------------------------------------------------------------

  on<K extends keyof ClientEvents>(type: K, fn: Listener<ClientEvents[K]>): () => void {
    let set = this.listeners.get(type);
    if (!set) this.listeners.set(type, (set = new Set()));
    set.add(fn);
    return () => set!.delete(fn);
  }

  private emit<K extends keyof ClientEvents>(type: K, value: ClientEvents[K]): void {
    for (const fn of this.listeners.get(type) ?? []) {
      // One faulty listener must not break the frame loop (and the dedup state).
      try {
        fn(value);
      } catch (err) {
        console.error(`préau: ${String(type)} listener failed`, err);
      }
    }
  }

  // ---- connection ---------------------------------------------------------

  /** Connects (and keeps reconnecting). Resolves at the first successful `hello`. */
  connect(): Promise<HelloOk> {
    if (this.state === "open" && this.hello) return Promise.resolve(this.hello);
    const p = new Promise<HelloOk>((resolve, reject) => (this.firstOpen = { resolve, reject }));
    if (this.state === "idle" || this.state === "closed") {
      this.attempt = 0;
      void this.open();
    }
    return p;
  }

  /** Stops for good: closes the socket, rejects what is pending, forgets the rooms. */
  close(): void {
    this.stop(new PreauError("closed", "client closed"));
    this.wanted.clear();
  }

  /**
   * Who the app believes it is before the server says so: a web app that
   * starts offline from its stored copy shows that user's rooms. Only
   * while not connected; the next `hello` replaces it.
   */
  presume(hello: HelloOk): void {
    if (this.state === "open") return;
    this.hello = hello;
    this.user = hello.user;
  }

  /** True while the room is wanted (joined, or to be re-joined after a reconnection). */
  isJoined(room: string): boolean {
    return this.wanted.get(room)?.joined ?? false;
  }

  /** The position a `join` with `since` would resume from. */
  position(room: string): Since | undefined {
    const st = this.wanted.get(room);
    return st?.epoch && st.known ? { epoch: st.epoch, offset: st.offset } : undefined;
  }

  /**
   * Test and UI hook: drops the socket as a network loss would (no close
   * frame is awaited), so the usual reconnect-and-recover path runs.
   */
  dropConnection(): void {
    const ws = this.ws;
    if (!ws) return;
    const anyWs = ws as any;
    if (typeof anyWs.terminate === "function") anyWs.terminate();
    else this.lost(1006, "dropped by the client");
  }

  /** The token, for the file routes over HTTP (src/files.ts: `Authorization: Bearer`). */
  async token(): Promise<string> {
    return typeof this.tokenSource === "function" ? await this.tokenSource() : this.tokenSource;
  }

  /** The HTTP address of the server behind `url` (`wss://h/ws` → `https://h`), for the file routes. */
  get httpUrl(): string {
    return this.url.replace(/^ws/, "http").replace(/\/ws\/?(\?.*)?$/, "");
  }

  private setState(s: ConnectionState): void {
    if (this.state === s) return;
    this.state = s;
    this.emit("state", s);
  }

  private async open(): Promise<void> {
    this.setState("connecting");
    let token: string;
    try {
      token = typeof this.tokenSource === "function" ? await this.tokenSource() : this.tokenSource;
    } catch (err) {
      this.scheduleReconnect(0, `token: ${String(err)}`);
      return;
    }
    if (this.state !== "connecting") return; // closed meanwhile
    let ws: WebSocketLike;
    try {
      ws = new this.Ctor(this.url, SUBPROTOCOL);
    } catch (err) {
      this.scheduleReconnect(0, String(err));
      return;
    }
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    // A flaky network can leave a handshake hanging: treat it as a failure.
    const connectTimer = setTimeout(() => {
      if (this.ws === ws && this.state === "connecting") this.lost(1006, "connect timeout");
    }, this.opts.connectTimeoutMs);
    ws.onopen = () => {
      this.send({ type: "hello", id: this.allocId(), token }, (frame) => {
        clearTimeout(connectTimer);
        if (frame.type === "ok") this.authenticated(frame.data as HelloOk);
        // An error reply is followed by the server's close, handled in onclose.
      }).catch(() => {
        /* handled by onReply and onclose */
      });
    };
    ws.onmessage = (ev) => {
      if (this.ws === ws) this.receive(ev.data);
    };
    ws.onerror = () => {
      /* onclose follows and decides */
    };
    ws.onclose = (ev) => {
      clearTimeout(connectTimer);
      if (this.ws === ws) this.lost(ev.code, ev.reason);
    };
  }

  private authenticated(hello: HelloOk): void {
    this.hello = hello;
    this.user = hello.user;
    this.attempt = 0;
    this.setState("open");
    this.startHeartbeat(hello.limits?.ping_interval_ms ?? 25_000);
    // Re-join before telling the app, so its requests queue behind the joins.
    for (const [room, st] of this.wanted) this.sendJoin(room, st.known);
    this.emit("open", hello);
    this.firstOpen?.resolve(hello);
    this.firstOpen = null;
  }

  // Browsers notice a dead TCP connection late; an application ping that
  // gets no answer lets the client reconnect within seconds instead.
  private startHeartbeat(intervalMs: number): void {
    this.stopHeartbeat();
    const ws = this.ws;
    this.heartbeat = setInterval(() => {
      if (this.ws !== ws || this.state !== "open") return;
      this.request("ping", {}, Math.min(10_000, intervalMs)).catch((err: PreauError) => {
        if (err.code === "timeout" && this.ws === ws) this.lost(1006, "ping timeout");
      });
    }, intervalMs);
  }

  private stopHeartbeat(): void {
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = null;
  }

  /**
   * The device's network went away or came back (the browser's `offline`
   * and `online` events). Offline: the socket is given up now rather than
   * at the next unanswered ping, so the app can say so at once. Online: a
   * pending reconnection is tried now, not after its backoff.
   */
  networkChanged(online: boolean): void {
    if (this.state === "closed") return;
    if (!online) {
      if (this.ws) this.lost(1006, "offline");
      return;
    }
    if (this.state === "connecting" && this.retryTimer) {
      clearTimeout(this.retryTimer);
      this.retryTimer = null;
      this.attempt = 0;
      void this.open();
    }
  }

  /** The current socket is gone (closed by the server, or lost). */
  private lost(code: number, reason: string): void {
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try {
        ws.close();
      } catch {
        /* already closing */
      }
    }
    this.stopHeartbeat();
    this.failPending(new PreauError("disconnected", `connection lost (${code})`));
    for (const st of this.wanted.values()) st.held = null;
    if (this.state === "closed") return;
    const expiredWithStaticToken = code === 4002 && typeof this.tokenSource === "string";
    if (FATAL_CLOSES.has(code) || expiredWithStaticToken) {
      const err = new PreauError(closeCodeName(code), `server closed the connection: ${code} ${reason}`);
      this.emit("close", { code, reason, willReconnect: false });
      this.stop(err);
      this.emit("fatal", err);
      return;
    }
    this.scheduleReconnect(code, reason);
  }

  private scheduleReconnect(code: number, reason: string): void {
    this.setState("connecting");
    const base = Math.min(this.opts.backoffMaxMs, this.opts.backoffMs * 2 ** this.attempt);
    // Full-ish jitter: a whole school reconnecting after a Wi-Fi blip must not
    // hit the server in lockstep.
    const delay = Math.round(base * (0.5 + Math.random() * 0.5));
    this.attempt = Math.min(this.attempt + 1, 20);
    this.emit("close", { code, reason, willReconnect: true, retryInMs: delay });
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (this.state === "connecting") void this.open();
    }, delay);
  }

  private stop(err: PreauError): void {
    this.setState("closed");
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.stopHeartbeat();
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try {
        ws.close(1000, "bye");
      } catch {
        /* not open yet */
      }
    }
    this.failPending(err);
    for (const st of this.wanted.values()) {
      for (const w of st.waiters.splice(0)) w.reject(err);
    }
    this.firstOpen?.reject(err);
    this.firstOpen = null;
  }

  private failPending(err: PreauError): void {
    const all = [...this.pending.values()];
    this.pending.clear();
    for (const p of all) {
      clearTimeout(p.timer);
      p.reject(err);
    }
  }

  // ---- frames -------------------------------------------------------------

  private allocId(): number {
    const id = this.nextId;
    this.nextId = this.nextId >= 0xffffffff ? 1 : this.nextId + 1; // ids are u32
    return id;
  }

  /** Sends a frame; with `onReply`, registers a pending request for its `id`. */
  private send(frame: Record<string, unknown>, onReply?: (f: Record<string, any>) => void): Promise<any> {
    const ws = this.ws;
    if (!ws || ws.readyState !== 1) {
      return Promise.reject(new PreauError("not_connected", "not connected to préau"));
    }
    const id = frame.id as number;
    const p = new Promise<any>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new PreauError("timeout", `no reply to ${String(frame.type)}`));
      }, this.opts.requestTimeoutMs);
      this.pending.set(id, { resolve, reject, timer, onReply });
    });
    // ignoreUndefined: optional fields are omitted, as the server's own encoder does.
    ws.send(encode(frame, { ignoreUndefined: true }));
    return p;
  }

  /**
   * Sends any request (`type` plus fields) and resolves with the `ok` data.
   * The typed helpers below use it; it also serves requests added later
   * (notes, forums) without a new client release.
   */
  request<T = unknown>(type: string, fields: Record<string, unknown> = {}, timeoutMs?: number): Promise<T> {
    if (this.state !== "open") {
      return Promise.reject(new PreauError("not_connected", "not connected to préau"));
    }
    const id = this.allocId();
    const p = this.send({ type, id, ...fields });
    if (timeoutMs !== undefined) {
      const pend = this.pending.get(id);
      if (pend) {
        clearTimeout(pend.timer);
        pend.timer = setTimeout(() => {
          this.pending.delete(id);
          pend.reject(new PreauError("timeout", `no reply to ${type}`));
        }, timeoutMs);
      }
    }
    return p as Promise<T>;
  }

  private receive(raw: unknown): void {
    let frame: any;
    try {
      const bytes = raw instanceof ArrayBuffer ? new Uint8Array(raw) : (raw as Uint8Array);
      frame = decode(bytes);
    } catch {
      return; // not MessagePack: nothing the server should send; ignore it
    }
    // Lenient by contract: a frame we do not understand is skipped.
    if (!frame || typeof frame !== "object" || typeof frame.type !== "string") return;
    this.emit("frame", frame);
    switch (frame.type) {
      case "ok":
      case "error":
        this.settle(frame);
        break;
      case "event":
        if (isEvent(frame)) this.deliver(frame, true);
        break;
      case "presence":
        if (this.wanted.has(frame.room)) this.emit("presence", frame as PresenceFrame);
        break;
      case "typing":
        if (this.wanted.has(frame.room)) this.emit("typing", frame as TypingFrame);
        break;
      case "yjs":
        if (frame.data instanceof Uint8Array) this.emit("yjs", frame as YjsFrame);
        break;
      default:
        break; // unknown server frame type: ignored (forward compatibility)
    }
  }

  private settle(frame: Record<string, any>): void {
    if (typeof frame.id !== "number") return; // reply to a request sent without id
    const p = this.pending.get(frame.id);
    if (!p) return;
    this.pending.delete(frame.id);
    clearTimeout(p.timer);
    p.onReply?.(frame);
    if (frame.type === "ok") p.resolve(frame.data ?? null);
    else {
      const retry = typeof frame.retry_after_ms === "number" ? frame.retry_after_ms : undefined;
      p.reject(new PreauError(String(frame.code), String(frame.message ?? frame.code), retry));
    }
  }

  /** Hands a durable event to the app once: offsets at or below the last seen are duplicates. */
  private deliver(ev: EventFrame, live: boolean): void {
    const st = this.wanted.get(ev.room);
    if (!st) return; // left meanwhile
    if (live && st.held) {
      st.held.push(ev);
      return;
    }
    if (st.epoch === ev.epoch && st.known && ev.offset <= st.offset) return;
    st.epoch = ev.epoch;
    st.offset = ev.offset;
    st.known = true;
    this.emit("event", ev);
    if (ev.body?.kind === "moderation") this.checkRemoved(ev);
  }

  // A kick or ban of our own user is the room's last frame: stop tracking it,
  // so the room is not re-joined behind the moderator's back.
  private checkRemoved(ev: EventFrame): void {
    const action = ev.body.action as { kind?: string; user?: string } | undefined;
    if (!action || action.user !== this.user?.id) return;
    if (action.kind !== "kick" && action.kind !== "ban") return;
    this.wanted.delete(ev.room);
    this.emit("removed", { room: ev.room, reason: action.kind, event: ev });
  }

  // ---- rooms --------------------------------------------------------------

  /**
   * Joins a room and keeps it joined across reconnections. Before the
   * connection is up, resolves once it is (the join waits).
   */
  join(room: string, since?: Since): Promise<JoinOk> {
    if (this.wanted.has(room)) {
      return Promise.reject(new PreauError("already_joined", `${room} is already joined`));
    }
    const st: RoomState = {
      epoch: since?.epoch,
      offset: since?.offset ?? 0,
      known: since !== undefined,
      joined: false,
      waiters: [],
      held: null,
    };
    this.wanted.set(room, st);
    const p = new Promise<JoinOk>((resolve, reject) => st.waiters.push({ resolve, reject }));
    if (this.state === "open") this.sendJoin(room, false);
    return p;
  }

  private sendJoin(room: string, rejoin: boolean): void {
    const st = this.wanted.get(room);
    if (!st) return;
    st.joined = false;
    // A note is re-synced by its provider's step 1/step 2 exchange, which
    // sends exactly what is missing; replaying its updates too would only
    // double the transfer (and compaction often makes it fail anyway).
    const isNote = room.split("/")[1] === "notes";
    const since = st.epoch && st.known && !isNote ? { epoch: st.epoch, offset: st.offset } : undefined;
    const id = this.allocId();
    this.send({ type: "join", id, room, since }, (frame) => {
      if (this.wanted.get(room) !== st) return; // left while joining
      if (frame.type === "ok") this.joined(room, st, frame.data as JoinOk, since, rejoin);
      else {
        const err = new PreauError(String(frame.code), String(frame.message), frame.retry_after_ms);
        this.wanted.delete(room);
        for (const w of st.waiters.splice(0)) w.reject(err);
        if (rejoin) this.emit("removed", { room, reason: "rejoin_failed", error: err });
      }
    }).catch(() => {
      // A lost connection: the room stays wanted and is re-joined on reconnect;
      // the waiters resolve then. Error replies were handled above.
    });
  }

  // Runs synchronously on the join reply, before the room's live events.
  private joined(room: string, st: RoomState, data: JoinOk, since: Since | undefined, rejoin: boolean): void {
    st.joined = true;
    const rec = data.recovery;
    if (since && rec?.recovered) {
      for (const ev of data.events ?? []) if (isEvent(ev)) this.deliver(ev, false);
      st.epoch = data.epoch;
      st.offset = Math.max(st.offset, data.head);
      this.emit("recovery", { room, recovered: true });
    } else if (since && rec && rec.reason === "too_far_behind" && data.epoch === since.epoch) {
      // The events still exist: page forward through history instead of
      // dropping the timeline. Live events wait in `held` meanwhile.
      st.held = [];
      void this.catchUp(room, st, since.offset, data.head);
    } else if (since && rec) {
      st.epoch = data.epoch;
      st.offset = data.head;
      st.known = true;
      this.emit("recovery", { room, recovered: false, reason: rec.reason });
      this.emit("reset", { room, epoch: data.epoch, head: data.head, reason: rec.reason ?? "unknown" });
    } else {
      st.epoch = data.epoch;
      st.offset = data.head;
      st.known = true;
    }
    this.emit("joined", { room, data, rejoin });
    for (const w of st.waiters.splice(0)) w.resolve(data);
  }

  private async catchUp(room: string, st: RoomState, from: number, head: number): Promise<void> {
    let after = from;
    try {
      for (;;) {
        const page = await this.history(room, { after, before: head + 1, limit: this.hello?.limits.history_page_max });
        for (const ev of page.events) if (isEvent(ev)) this.deliver(ev, false);
        if (!page.more || page.events.length === 0) break;
        after = page.events[page.events.length - 1].offset;
      }
    } catch (err) {
      // Disconnected: the next re-join resumes from what was delivered
      // (`lost` already dropped the held events). Anything else (retention
      // caught up with us): the app must reload.
      if (this.wanted.get(room) !== st || st.held === null) return;
      if (err instanceof PreauError && err.code === "disconnected") return;
      const held = st.held;
      st.held = null;
      st.offset = Math.max(st.offset, head);
      this.emit("recovery", { room, recovered: false, reason: "too_far_behind" });
      this.emit("reset", { room, epoch: st.epoch ?? "", head, reason: "too_far_behind" });
      for (const ev of held ?? []) this.deliver(ev, false);
      return;
    }
    if (this.wanted.get(room) !== st) return;
    st.offset = Math.max(st.offset, head);
    const held = st.held ?? [];
    st.held = null;
    this.emit("recovery", { room, recovered: false, reason: "too_far_behind", caughtUp: true });
    for (const ev of held) this.deliver(ev, false);
  }

  /** Leaves a room (and stops re-joining it). */
  async leave(room: string): Promise<void> {
    const st = this.wanted.get(room);
    this.wanted.delete(room);
    for (const w of st?.waiters.splice(0) ?? []) w.reject(new PreauError("not_joined", "left"));
    if (this.state !== "open") return;
    try {
      await this.request("leave", { room });
    } catch (err) {
      // not_joined: the server had already dropped us (kick); fine.
      if (!(err instanceof PreauError && err.code === "not_joined")) throw err;
    }
  }

  // ---- requests -------------------------------------------------------------

  /**
   * Posts a message and waits for its durable ack. The post carries an
   * idempotency `key`, and a post that fails for a reason that may pass
   * (connection lost, `unavailable`, `overloaded`, `storage_error`,
   * `timeout`) is sent again with the same key once reconnected, up to
   * `retries` times: the server stores it once even if the first attempt
   * was stored after all (a Redis reply that timed out). `rate_limited`
   * is the pupil's own pace: it is not retried, the app says so.
   */
  async post(room: string, text: string, opts: { key?: string; retries?: number } = {}): Promise<PostOk> {
    const key = opts.key ?? newKey();
    const retries = opts.retries ?? 5;
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.request<PostOk>("post", { room, text, key });
      } catch (err) {
        if (!(err instanceof PreauError) || !RETRYABLE.has(err.code) || attempt >= retries) throw err;
        const wait = err.retryAfterMs ?? Math.min(250 * 2 ** attempt, 5_000);
        await new Promise((resolve) => setTimeout(resolve, wait));
        await this.whenOpen(30_000);
      }
    }
  }

  /** Resolves once the connection is open (authenticated), or after `maxMs`. */
  private whenOpen(maxMs: number): Promise<void> {
    if (this.state === "open") return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        off();
        resolve();
      }, maxMs);
      const off = this.on("open", () => {
        clearTimeout(timer);
        off();
        resolve();
      });
    });
  }

  history(room: string, page: { before?: number; after?: number; limit?: number } = {}): Promise<HistoryOk> {
    return this.request<HistoryOk>("history", { room, ...page });
  }

  typing(room: string): Promise<void> {
    return this.request<void>("typing", { room });
  }

  moderate(room: string, action: ModerationAction): Promise<PostOk> {
    return this.request<PostOk>("moderate", { room, action });
  }

  report(room: string, offset: number, reason?: string): Promise<PostOk> {
    return this.request<PostOk>("report", { room, offset, reason });
  }

  roomView(room: string): Promise<RoomView> {
    return this.request<RoomView>("room_view", { room });
  }

  ping(): Promise<void> {
    return this.request<void>("ping");
  }

  /**
   * Sends a y-protocols message (notes); resolves with `PostOk`, or null if
   * it changed nothing (or, with `more`, once the part is received). With
   * `more`, `data` is a part of a message that continues in the next `yjs`
   * frame for this room (messages larger than a frame).
   */
  yjs(room: string, data: Uint8Array, more?: boolean): Promise<PostOk | null> {
    return this.request<PostOk | null>("yjs", { room, data, more: more || undefined });
  }

  /** Lists the existing rooms of one kind in a class (`{rooms}`). */
  async rooms(cls: string, kind: string): Promise<{ rooms: string[] }> {
    const data = await this.request<any>("rooms", { class: cls, kind });
    const rooms = Array.isArray(data?.rooms) ? data.rooms.filter((r: unknown): r is string => typeof r === "string") : [];
    return { rooms };
  }

  // ---- forums -------------------------------------------------------------

  /** Opens a thread in a forum: its first post, whose offset is the thread's id. */
  newThread(room: string, title: string, text: string): Promise<PostOk> {
    return this.request<PostOk>("post", { room, text, title });
  }

  /**
   * Replies in `thread`, optionally answering one of its posts (`replyTo`)
   * and quoting it (`quote`, at most 500 bytes, needs `replyTo`).
   */
  reply(room: string, thread: number, text: string, opts: { replyTo?: number; quote?: string } = {}): Promise<PostOk> {
    return this.request<PostOk>("post", { room, text, thread, reply_to: opts.replyTo, quote: opts.quote });
  }

  /** A new version of one's own post (`title` only for a thread's first post). */
  edit(room: string, offset: number, text: string, title?: string): Promise<PostOk> {
    return this.request<PostOk>("edit", { room, offset, text, title });
  }

  /** Marks `offset` as the answer of a help thread; `null` removes the mark. */
  answer(room: string, thread: number, offset: number | null): Promise<PostOk> {
    // `offset` is required on the wire: nil (not absent) unmarks.
    return this.request<PostOk>("answer", { room, thread, offset });
  }

  /** A page of the thread list (read permission; joining is not needed). */
  async threads(room: string, page: { before?: number; limit?: number } = {}): Promise<ThreadsOk> {
    return decodeThreadsOk(await this.request<unknown>("threads", { room, ...page }), room);
  }

  /** Moves the user's read mark of `thread` forward to `offset` (never back). */
  async markRead(room: string, thread: number, offset: number): Promise<void> {
    await this.request("mark_read", { room, thread, offset });
  }

  /** A page of one thread's events (posts, edits, answers), paged like `history`. */
  threadHistory(room: string, thread: number, page: { before?: number; after?: number; limit?: number } = {}): Promise<HistoryOk> {
    return this.request<HistoryOk>("history", { room, ...page, thread });
  }

  /** Opens a forum, or replaces its settings (`configure`). */
  configureForum(room: string, settings: { flavour: Flavour; classes?: string[]; moderators?: string[] }): Promise<PostOk> {
    return this.moderate(room, {
      kind: "configure",
      flavour: settings.flavour,
      classes: settings.classes ?? [],
      moderators: settings.moderators ?? [],
    });
  }

  /** Locks one thread (pupils' posts, edits and answers there get `read_only`), or unlocks it. */
  lockThread(room: string, thread: number, on = true): Promise<PostOk> {
    return this.moderate(room, { kind: "read_only", on, thread });
  }

  /** Pins a thread (listed first) by pinning its first post, or unpins it. */
  pinThread(room: string, thread: number, on = true): Promise<PostOk> {
    return this.moderate(room, on ? { kind: "pin", offset: thread } : { kind: "unpin", offset: thread });
  }

  /** Validates a note's current state as a version (the `validate` moderation action). */
  noteValidate(room: string, label: string, lock?: boolean): Promise<PostOk> {
    return this.moderate(room, { kind: "validate", label, lock });
  }

  noteVersions(room: string): Promise<{ versions: NoteVersion[] }> {
    return this.request("note_versions", { room });
  }

  noteExport(room: string, format: "text" | "markdown" | "yjs", version?: number): Promise<{ format: string; content: string | Uint8Array }> {
    return this.request("note_export", { room, format, version });
  }

  // ---- homework diary (see homework.ts) ------------------------------------

  /**
   * Writes a diary entry (teachers of the class and staff; the room must be
   * joined): a new one, or with `entry` a new version of it, every field
   * replaced. `key` makes a retry of a new entry safe.
   */
  homeworkWrite(room: string, fields: NewDiaryEntry, opts: { entry?: number; key?: string } = {}): Promise<PostOk> {
    return this.request<PostOk>("homework_write", { room, entry: opts.entry, ...entryWire(fields), key: opts.entry === undefined ? opts.key : undefined });
  }

  /** A pupil marks homework `entry` done (or not). */
  homeworkDone(room: string, entry: number, done: boolean): Promise<PostOk> {
    return this.request<PostOk>("homework_done", { room, entry, done });
  }

  /** Deletes an entry, every version with it (its author or a moderator): a redaction of its first event. */
  homeworkDelete(room: string, entry: number, reason?: string): Promise<PostOk> {
    return this.moderate(room, { kind: "redact", offset: entry, reason });
  }

  /** The entries whose day (a lesson's date, homework's due day) is in `[from, to]`, without joining. */
  async homework(room: string, from: Day, to: Day, limit?: number): Promise<HomeworkOk> {
    return decodeHomeworkOk(await this.request<unknown>("homework", { room, from, to, limit }), room);
  }

  /** Homework due each day of `[from, to]` (at most 62 days), for a teacher choosing a due day. */
  async homeworkLoad(room: string, from: Day, to: Day): Promise<LoadOk> {
    return decodeLoadOk(await this.request<unknown>("homework_load", { room, from, to }), room);
  }

  /** Homework due in `[from, to]` in the diaries of all the user's classes (a parent's: labelled by child). */
  async homeworkDue(from: Day, to: Day, limit?: number): Promise<DueOk> {
    return decodeDueOk(await this.request<unknown>("homework_due", { from, to, limit }));
  }

  /**
   * The address of the user's calendar feed (agenda and homework): the
   * active one, or a new one when there is none; with `fresh`, a new one
   * whatever, and every address of the last one stops working.
   */
  async calendarFeed(fresh = false): Promise<FeedOk> {
    return decodeFeedOk(await this.request<unknown>("calendar_feed", fresh ? { new: true } : {}));
  }

  /** Stops the feed's address; `revoked` says whether one was active. */
  async calendarFeedRevoke(): Promise<{ revoked: boolean }> {
    const data = await this.request<any>("calendar_feed_revoke");
    return { revoked: data?.revoked === true };
  }

  // ---- direct messages and the notification feed (see messages.ts) ---------

  /** The people the user may write to whose name contains `query` (case and accents aside), by name. */
  async contacts(opts: { query?: string; limit?: number } = {}): Promise<ContactsOk> {
    const query = opts.query?.trim() || undefined;
    return decodeContactsOk(await this.request<unknown>("contacts", { query, limit: opts.limit }));
  }

  /** A conversation with `to` (user ids): the existing one for a pair. */
  async dmStart(to: string[]): Promise<DmOk> {
    return decodeDmOk(await this.request<unknown>("dm_start", { to }));
  }

  /** Adds `users` to a conversation (by the school's rules). */
  async dmAdd(room: string, users: string[]): Promise<DmOk> {
    return decodeDmOk(await this.request<unknown>("dm_add", { room, users }));
  }

  /**
   * Sends a message in a conversation; resolves once it is durable, with
   * whose quiet hours hold its notification (`held`). As with `post`, it
   * carries an idempotency `key` and is sent again with it after a failure
   * that may pass: the server stores it (and notifies) once.
   */
  async dmSend(room: string, text: string, opts: { key?: string; retries?: number } = {}): Promise<DmSentOk> {
    const key = opts.key ?? newKey();
    const retries = opts.retries ?? 5;
    for (let attempt = 0; ; attempt++) {
      try {
        return decodeDmSentOk(await this.request<unknown>("dm_send", { room, text, key }));
      } catch (err) {
        if (!(err instanceof PreauError) || !RETRYABLE.has(err.code) || attempt >= retries) throw err;
        const wait = err.retryAfterMs ?? Math.min(250 * 2 ** attempt, 5_000);
        await new Promise((resolve) => setTimeout(resolve, wait));
        await this.whenOpen(30_000);
      }
    }
  }

  /** The user's conversations, latest activity first, with unread counts. */
  async conversations(): Promise<Conversation[]> {
    return decodeConversations(await this.request<unknown>("conversations"));
  }

  /** A pupil lets their name be shown (or not) when a teacher shares their question with the class. */
  dmPrefs(room: string, named: boolean): Promise<PostOk> {
    return this.request<PostOk>("dm_prefs", { room, named });
  }

  /** A teacher turns pupil message `at` into a new thread of forum `forum`, to answer it for the whole class. */
  async dmShare(room: string, at: number, forum: string, title?: string): Promise<DmSharedOk> {
    return decodeDmSharedOk(await this.request<unknown>("dm_share", { room, at, forum, title }));
  }

  /** Staff open a conversation one of its members reported (written in it for its members). */
  async dmReview(room: string): Promise<DmOk> {
    return decodeDmOk(await this.request<unknown>("dm_review", { room }));
  }

  /** The newest notifications (before inbox offset `before`), the unread counts, the quiet hours. */
  async feed(page: { before?: number; limit?: number } = {}): Promise<NotificationsOk> {
    return decodeNotificationsOk(await this.request<unknown>("feed", page));
  }

  /** Marks read every notification (of `room` only, when given) through inbox offset `through` (the latest by default). */
  feedRead(opts: { room?: string; through?: number } = {}): Promise<PostOk> {
    return this.request<PostOk>("feed_read", { room: opts.room, through: opts.through });
  }

  /** The quiet hours in force for the user. */
  async quietHours(): Promise<QuietState> {
    return decodeQuietState(await this.request<unknown>("quiet_hours"));
  }

  /** Sets the user's own quiet hours. */
  setQuietHours(hours: QuietHours): Promise<PostOk> {
    return this.request<PostOk>("quiet_hours", { hours: { start: hours.start, end: hours.end, days: hours.days } });
  }

  /** Back to the school's quiet hours for the user's role. */
  defaultQuietHours(): Promise<PostOk> {
    return this.request<PostOk>("quiet_hours", { default: true });
  }
}

const num = (v: unknown, dflt = 0): number => (typeof v === "number" ? v : dflt);
const strs = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : []);

function decodeUser(v: any): UserInfo {
  return {
    id: typeof v?.id === "string" ? v.id : "",
    name: typeof v?.name === "string" ? v.name : typeof v?.id === "string" ? v.id : "?",
    role: typeof v?.role === "string" ? v.role : "",
  };
}

/** Forum settings from any map: missing keys take their defaults (a never-configured forum is a debate). */
export function decodeForumSettings(v: any): ForumSettings {
  return {
    flavour: typeof v?.flavour === "string" ? v.flavour : "debate",
    classes: strs(v?.classes),
    moderators: strs(v?.moderators),
  };
}

/** A thread list entry, leniently: unknown keys ignored, missing ones defaulted; null if it has no thread id. */
export function decodeThreadInfo(v: any): ThreadInfo | null {
  if (!v || typeof v !== "object" || typeof v.thread !== "number") return null;
  const t: ThreadInfo = {
    thread: v.thread,
    from: decodeUser(v.from),
    ts: num(v.ts),
    last_offset: num(v.last_offset, v.thread),
    last_ts: num(v.last_ts, num(v.ts)),
    replies: num(v.replies),
    unread: num(v.unread),
    locked: v.locked === true,
    pinned: v.pinned === true,
    deleted: v.deleted === true,
  };
  // Optional keys stay absent (not undefined), as on the wire.
  if (typeof v.title === "string") t.title = v.title;
  if (typeof v.answer === "number") t.answer = v.answer;
  return t;
}

export function decodeThreadsOk(v: any, room = ""): ThreadsOk {
  const threads = Array.isArray(v?.threads) ? v.threads.map(decodeThreadInfo).filter((t: ThreadInfo | null): t is ThreadInfo => t !== null) : [];
  return {
    room: typeof v?.room === "string" ? v.room : room,
    settings: decodeForumSettings(v?.settings),
    threads,
    more: v?.more === true,
  };
}

function isEvent(f: any): f is EventFrame {
  return (
    f &&
    typeof f.room === "string" &&
    typeof f.epoch === "string" &&
    typeof f.offset === "number" &&
    f.body !== null &&
    typeof f.body === "object" &&
    typeof f.body.kind === "string"
  );
}

function closeCodeName(code: number): string {
  switch (code) {
    case 1003:
      return "unsupported_data";
    case 4000:
      return "protocol_violation";
    case 4001:
      return "unauthorized";
    case 4002:
      return "token_expired";
    default:
      return "closed";
  }
}
