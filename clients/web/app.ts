// préau web app: sign in, pick rooms, chat and shared notes. Vanilla DOM.

import * as Y from "yjs";
import { Awareness } from "y-protocols/awareness";
import type { EventFrame, HelloOk, PreauClient, PreauError, Since, UserInfo } from "../src/client.js";
import { PreauProvider, TRANSIENT_REFUSALS } from "../src/yjs-provider.js";
import type { NoteEditor } from "./editor.js";
import { ForumView } from "./forum.js";
import { AgendaRoomView } from "./agenda.js";
import { HOME_KEY, OfflineStore, sessionUser, type ChatCopy, type UserCopy } from "./offline.js";
import { Inbox } from "./inbox.js";
import { isConversation, type FeedItem } from "../src/messages.js";
import {
  ROLE_LABELS,
  UNKNOWN_ROOM_TEXT,
  connectionBadge,
  downloadFile,
  el,
  errorText,
  formatDuration,
  formatTime,
  homeTitle,
  isUnknownRoom,
  moderationText,
  KIND_GROUPS,
  KIND_LABELS,
  isModerator,
  prettyName,
  roomTitle,
  type RoomHooks,
  signIn,
  signOut,
  toast,
  userLabel,
} from "./common.js";

const ROOM_RE = /^[A-Za-z0-9_-]{1,32}\/[a-z]+\/[A-Za-z0-9_.-]{1,64}$/;

/** The views that are no room (web/messages.ts): the conversations, the bell's feed, « Mon compte ». */
const MESSAGES_KEY = "@messages";
const FEED_KEY = "@notifications";
const SETTINGS_KEY = "@settings";
/** « Annonces » (teachers and staff: what they sent, and a new one; web/announce.ts). */
const ANNOUNCES_KEY = "@announces";
/** An announcement's room (src/announce.ts's isAnnouncement, not imported: the chunk's code stays out of the first load). */
const isAnnouncementRoom = (room: string) => room.startsWith("_/announce/");

interface View {
  root: HTMLElement;
  show(): void;
  /** Another room is shown instead (a forum stops marking what arrives as read). */
  hide?(): void;
  /** The view is dropped: it stops listening to the client. */
  dispose(): void;
  /** The directory's rooms, when loaded (the home page lists the week of their agendas). */
  roomsChanged?(rooms: string[]): void;
}

/**
 * Events that are news for a badge: posts and a kind's own new items, not
 * edits, new versions, done marks, moderation or note keystrokes. A
 * scheduled diary entry becomes news when it is published.
 */
function isNews(ev: EventFrame): boolean {
  const k = ev.body.kind;
  if (k === "homework_entry") return ev.body.entry === undefined && ev.body.publish_at === undefined;
  return k === "message" || k === "agenda_item" || k === "homework_publish" || k === "handin_open" || k === "doc_add" || k === "blog_publish";
}

/**
 * The kinds the directory lists, in this order. The diary comes first for
 * pupils and parents (what to do for tomorrow is what they come for);
 * teachers find their conversations first, as before.
 */
function kindsFor(role: string): readonly string[] {
  return isModerator(role) ? ["chat", "forum", "notes", "agenda", "homework", "handin", "docs", "blog"] : ["homework", "handin", "docs", "blog", "chat", "forum", "notes", "agenda"];
}

/** Whether the user has a home page: the week across their classes (or their children's). */
function hasHome(role: string): boolean {
  return role === "parent" || role === "student";
}

/**
 * A view whose code is a chunk loaded when it is first shown (the diary
 * and the home page): the app's first load does not carry it. Offline, the
 * service worker answers with the chunk kept from an earlier load.
 */
class LazyView implements View {
  root = el("div", { className: "lazy-view" }, el("p", { className: "empty", textContent: "Chargement…" }));
  private real?: View;
  private loading?: Promise<void>;
  private disposed = false;
  private rooms?: string[];
  private waiting: Array<(view: View) => void> = [];

  constructor(private make: () => Promise<View>) {}

  /** Runs `fn` with the view once its chunk is loaded (at once if it is). */
  whenReady(fn: (view: View) => void): void {
    if (this.real) fn(this.real);
    else this.waiting.push(fn);
  }

  show(): void {
    if (this.real) return this.real.show();
    this.loading ??= this.make().then(
      (view) => {
        if (this.disposed) return view.dispose();
        this.real = view;
        for (const fn of this.waiting.splice(0)) fn(view);
        if (this.rooms) view.roomsChanged?.(this.rooms);
        this.root.replaceChildren(view.root);
        view.show();
      },
      () => {
        this.loading = undefined; // tried again at the next opening
        this.root.replaceChildren(el("p", { className: "notice", role: "alert", textContent: "Cette page n'a pas pu être chargée : vérifiez la connexion, puis rouvrez-la." }));
      },
    );
  }

  hide(): void {
    this.real?.hide?.();
  }

  dispose(): void {
    this.disposed = true;
    this.real?.dispose();
  }

  roomsChanged(rooms: string[]): void {
    this.rooms = rooms;
    this.real?.roomsChanged?.(rooms);
  }
}

/** Every room is found in the directory: the server lists what exists and what the user may read. */
class App {
  private views = new Map<string, View>();
  private directory = el("nav", { className: "directory", "aria-label": "Salons" });
  private main = el("main", { className: "room", id: "room" });
  private layout = el("div", { className: "layout", "data-view": "list" });
  private current?: string;
  private known = new Set<string>();
  /**
   * What arrived in rooms opened earlier in this visit while another was
   * shown. The app stays joined to every room it opened, so these counts are
   * exact for those rooms; rooms not opened yet have no count until the
   * server keeps read marks for every room (the notification feed).
   */
  private unread = new Map<string, number>();
  /** Whether the directory was loaded from the server (not only from the offline copy). */
  private discovered = false;
  private kinds: readonly string[] = [];
  /** The notification feed: the bell, and unread counts the server keeps. */
  private inbox: Inbox;
  private bell = el("button", { type: "button", className: "bell" }, el("span", { className: "bell-icon", textContent: "🔔", "aria-hidden": "true" }), el("span", { className: "count", hidden: true }));

  /**
   * `store` keeps what is shown on the device (offline.ts); `copy` is the
   * stored user and directory when the app starts offline from them (the
   * client is then still connecting, with the stored `hello` presumed).
   */
  constructor(
    private client: PreauClient,
    private root: HTMLElement,
    private store: OfflineStore | null,
    private copy?: UserCopy,
  ) {
    this.inbox = new Inbox(client);
  }

  start(): void {
    const me = this.client.user!;
    this.kinds = kindsFor(me.role);
    const logout = el("button", { className: "secondary", textContent: "Se déconnecter" });
    logout.addEventListener("click", () => void signOut(this.client));
    // Her name opens « Mon compte » (the quiet hours); the bell, the feed.
    // (On a phone, the role is left out: the name needs the room. The words stay « Ana Martin (élève) ».)
    const label = userLabel(me);
    const cut = label.lastIndexOf(" (");
    const account = el(
      "button",
      { type: "button", className: "me", title: "Mon compte et heures calmes" },
      cut > 0 ? el("span", { textContent: label.slice(0, cut) }) : label,
      cut > 0 ? el("span", { className: "me-role", textContent: label.slice(cut) }) : "",
    );
    account.addEventListener("click", () => this.open(SETTINGS_KEY));
    this.bell.addEventListener("click", () => this.open(FEED_KEY));
    const header = el("header", {}, el("h1", { textContent: "préau" }), account, connectionBadge(this.client), this.bell, logout);
    this.main.append(el("p", { className: "empty", textContent: "Choisissez un salon dans la liste." }));
    const aside = el("aside", {}, el("h2", { textContent: "Mes salons" }), this.directory);
    if (isModerator(me.role)) aside.append(this.openForm());
    this.layout.replaceChildren(aside, this.main);
    // Offline (a phone in a tunnel): what was loaded stays readable, and the
    // app says so, and that nothing is sent until the network is back.
    const offline = el("p", {
      className: "offline",
      role: "status",
      hidden: true,
      textContent: "Hors ligne : vous lisez ce qui était déjà chargé. Rien n'est envoyé avant le retour du réseau ; l'application se reconnecte seule.",
    });
    const showState = () => (offline.hidden = this.client.state === "open" && navigator.onLine);
    this.client.on("state", showState);
    showState(); // started offline from the copy: said at once
    for (const change of ["online", "offline"] as const) {
      window.addEventListener(change, () => {
        this.client.networkChanged(change === "online");
        showState();
      });
    }
    this.root.replaceChildren(header, offline, this.layout);

    this.client.on("removed", ({ room, reason }) => {
      // What the device kept of a room the user left is not kept any longer.
      this.store?.deleteRoom(room);
      const why: Record<string, string> = { kick: "Vous avez été retiré", ban: "Vous avez été exclu" };
      toast(`${why[reason] ?? "Vous n'êtes plus membre"} de ${roomTitle(room)}`, "error");
    });
    // The phone's back button returns to the list.
    window.addEventListener("popstate", () => {
      if (this.layout.dataset.view === "room") this.showList(false);
    });

    this.client.on("event", (ev) => {
      if (ev.room === this.current && !document.hidden) return;
      // Conversations and the feed itself are counted by the feed (the server's read marks).
      if (ev.room.startsWith("_/")) return;
      if (ev.from.id === this.client.user?.id || !isNews(ev)) return;
      this.unread.set(ev.room, (this.unread.get(ev.room) ?? 0) + 1);
      this.renderUnread(ev.room);
    });
    // Back to a tab left in the background: what arrived in the room shown is read now.
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && this.current && this.layout.dataset.view === "room") this.markRead(this.current);
    });

    // The feed: its counts join the badges, the bell and the tab's title.
    this.inbox.on(() => this.renderAllUnread());
    this.inbox.start();
    this.renderAllUnread();

    // Online: the directory comes from the server. Started offline: from
    // the copy, until the connection is back (then from the server).
    this.client.on("open", (hello) => this.connected(hello));
    if (this.client.state === "open") this.connected(this.client.hello!);
    else this.renderDirectory(this.client.hello?.classes ?? [], this.copy?.directory ?? []);
    // A link may name the room to open (`?room=3B/forum/aide`, as the console's).
    const wanted = new URLSearchParams(location.search).get("room");
    if (wanted && ROOM_RE.test(wanted)) this.open(wanted);
    // A parent's first screen is their children's week. A pupil's week
    // fills the empty room pane of a wide screen; on a phone, pupils start
    // from their rooms, as before.
    else if (me.role === "parent" || (hasHome(me.role) && matchMedia("(min-width: 760px)").matches)) this.open(HOME_KEY, false);
  }

  /** Connected (first time, or again): who the user is is kept, and the directory is loaded once. */
  private connected(hello: HelloOk): void {
    this.store?.saveHello(hello);
    if (!this.discovered) {
      this.discovered = true;
      void this.discover();
    }
  }

  /** The rooms of the user's classes (a parent's: their children's), kind by kind; kinds the role may not read are left out. */
  private async discover(): Promise<void> {
    const classes = this.client.hello?.classes ?? [];
    const rooms: string[] = [];
    for (const cls of classes) {
      for (const kind of this.kinds) {
        try {
          rooms.push(...(await this.client.rooms(cls, kind)).rooms);
        } catch (err) {
          // The connection went away: the directory shown stays, and is loaded again at the next connection.
          if (["not_connected", "disconnected", "timeout"].includes((err as { code?: string }).code ?? "")) {
            this.discovered = false;
            return;
          }
          // Otherwise forbidden for this role (a parent and pupils' chats), or an older server.
        }
      }
    }
    this.renderDirectory(classes, rooms);
    this.store?.saveDirectory(this.known);
  }

  /** The directory: a section per class, the rooms by kind, and the rooms open in this page. */
  private renderDirectory(classes: string[], rooms: string[]): void {
    this.directory.replaceChildren();
    this.known.clear();
    const role = this.client.user?.role ?? "";
    const home = el("ul", { className: "rooms home-link", "aria-label": "Accueil" });
    if (hasHome(role)) {
      const b = el("button", { type: "button", className: "room-link" }, el("span", { className: "name", textContent: homeTitle(role) }));
      b.addEventListener("click", () => this.open(HOME_KEY));
      home.append(el("li", { "data-room": HOME_KEY }, b));
    }
    const messages = el("button", { type: "button", className: "room-link" }, el("span", { className: "name", textContent: "Messages" }), el("span", { className: "unread", hidden: true }));
    messages.addEventListener("click", () => this.open(MESSAGES_KEY));
    home.append(el("li", { "data-room": MESSAGES_KEY }, messages));
    if (isModerator(role)) {
      const ann = el("button", { type: "button", className: "room-link" }, el("span", { className: "name", textContent: "Annonces" }));
      ann.addEventListener("click", () => this.open(ANNOUNCES_KEY));
      home.append(el("li", { "data-room": ANNOUNCES_KEY }, ann));
    }
    this.directory.append(home);
    if (classes.length === 0) {
      this.directory.append(el("p", { className: "empty", textContent: "Aucune classe n'est associée à votre compte." }));
    }
    for (const cls of classes) {
      this.directory.append(el("section", { className: "class-rooms", "data-class": cls }, el("h3", { textContent: `Classe ${cls}` })));
    }
    for (const r of rooms) this.addToList(r);
    // A teacher's « Devoirs à rendre » is listed before it exists: opening it creates it.
    // So are the class's « Documents de la classe » and « Blog de la classe ».
    if (isModerator(role)) for (const cls of classes) for (const k of ["handin", "docs", "blog"]) this.addToList(`${cls}/${k}/main`);
    for (const r of this.views.keys()) this.addToList(r);
    for (const section of this.directory.querySelectorAll<HTMLElement>("section.class-rooms")) {
      if (!section.querySelector("li")) section.append(el("p", { className: "empty", textContent: "Aucun salon ouvert pour l'instant." }));
    }
    this.markActive();
    this.renderAllUnread();
    this.views.get(HOME_KEY)?.roomsChanged?.([...this.known]);
  }

  /** Teachers and staff open rooms: the server creates a room when one of its class's moderators joins it. */
  private openForm(): HTMLFormElement {
    const classes = this.client.hello?.classes ?? [];
    const cls = classes.length
      ? el("select", { id: "open-class" }, ...classes.map((c) => el("option", { value: c, textContent: c })))
      : el("input", { id: "open-class", placeholder: "3B", autocomplete: "off", maxLength: 32 });
    const kind = el("select", { id: "open-kind" }, ...this.kinds.map((k) => el("option", { value: k, textContent: KIND_LABELS[k] })));
    const name = el("input", { id: "open-name", placeholder: "révisions bac", autocomplete: "off", maxLength: 64 });
    // A class has one diary, which has no name to choose.
    const nameLabel = el("label", { htmlFor: "open-name", textContent: "Nom" });
    kind.addEventListener("change", () => (name.hidden = nameLabel.hidden = kind.value === "homework" || kind.value === "handin" || kind.value === "docs"));
    const form = el(
      "form",
      { className: "open-room" },
      el("h2", { textContent: "Ouvrir un salon" }),
      el("label", { htmlFor: "open-class", textContent: "Classe" }),
      cls,
      el("label", { htmlFor: "open-kind", textContent: "Type" }),
      kind,
      nameLabel,
      name,
      el("button", { type: "submit", textContent: "Ouvrir" }),
    );
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const slug = kind.value === "homework" ? "diary" : kind.value === "handin" || kind.value === "docs" ? "main" : kind.value === "blog" && !name.value.trim() ? "main" : slugify(name.value);
      const room = `${cls.value.trim()}/${kind.value}/${slug}`;
      if (!slug || !ROOM_RE.test(room)) return toast("Indiquez une classe et un nom (lettres, chiffres, tirets).", "error");
      name.value = "";
      this.open(room);
    });
    return form;
  }

  private addToList(room: string): void {
    // Views that are no room, conversations and other rooms outside any class are not listed by class.
    if (this.known.has(room) || room.startsWith("@") || room.startsWith("_/")) return;
    const [cls, kind, name] = room.split("/");
    let section = this.directory.querySelector<HTMLElement>(`section[data-class="${CSS.escape(cls)}"]`);
    if (!section) {
      section = el("section", { className: "class-rooms", "data-class": cls }, el("h3", { textContent: `Classe ${cls}` }));
      this.directory.append(section);
    }
    section.querySelector(":scope > p.empty")?.remove();
    let list = section.querySelector<HTMLElement>(`ul[data-kind="${CSS.escape(kind)}"]`);
    if (!list) {
      list = el("ul", { className: "rooms", "data-kind": kind, "aria-label": KIND_LABELS[kind] ?? kind });
      // The diary's one link already says « Cahier de textes »: its group's heading is for screen readers only.
      const heading = el("h4", { textContent: KIND_GROUPS[kind] ?? kind, className: kind === "homework" || kind === "handin" || kind === "docs" ? "sr-only" : "" });
      const group = el("div", { className: "kind-group", "data-kind": kind }, heading, list);
      const rank = (k: string) => this.kinds.indexOf(k) >>> 0;
      const next = [...section.querySelectorAll<HTMLElement>(":scope > .kind-group")].find((g) => rank(g.dataset.kind ?? "") > rank(kind));
      section.insertBefore(group, next ?? null);
    }
    this.known.add(room);
    const label = kind === "homework" ? "Cahier de textes" : kind === "handin" ? "Devoirs à rendre" : kind === "docs" ? "Documents de la classe" : kind === "blog" && name === "main" ? "Blog de la classe" : prettyName(name);
    const b = el("button", { type: "button", className: "room-link" }, el("span", { className: "name", textContent: label }), el("span", { className: "unread", hidden: true }));
    b.addEventListener("click", () => this.open(room));
    const li = el("li", { "data-room": room, "data-kind": kind }, b);
    const next = [...list.children].find((x) => ((x as HTMLElement).dataset.room ?? "") > room);
    list.insertBefore(li, next ?? null);
    this.markActive();
  }

  /** Shows `room` (or the home page), joining it the first time; `push`: a step the back button undoes. */
  open(room: string, push = true): void {
    // A conversation is shown in « Messages ».
    if (isConversation(room)) {
      this.open(MESSAGES_KEY, push);
      (this.views.get(MESSAGES_KEY) as LazyView).whenReady((v) => (v as unknown as { open(room: string): void }).open(room));
      return;
    }
    let view = this.views.get(room);
    if (!view && room === HOME_KEY) {
      const rooms = [...this.known];
      view = new LazyView(async () => new (await import("./diary.js")).HomeView(this.client, this.store, rooms.filter((r) => r.split("/")[1] === "agenda")));
      this.views.set(room, view);
    }
    if (!view && (room === MESSAGES_KEY || room === FEED_KEY || room === SETTINGS_KEY)) {
      // The messages chunk: loaded the first time one of its views is shown.
      const hooks = { open: (r: string) => this.open(r), settings: () => this.open(SETTINGS_KEY), openItem: (item: FeedItem) => this.openItem(item) };
      view = new LazyView(async () => {
        const m = await import("./messages.js");
        return room === MESSAGES_KEY ? new m.MessagesView(this.client, this.inbox, hooks) : room === FEED_KEY ? new m.FeedView(this.client, this.inbox, hooks) : new m.SettingsView(this.client, this.inbox);
      });
      this.views.set(room, view);
    }
    if (!view && room === ANNOUNCES_KEY) {
      // The announcements chunk, as for an announcement below.
      view = new LazyView(async () => new (await import("./announce.js")).AnnouncesView(this.client, { open: (r) => this.open(r) }));
      this.views.set(room, view);
    }
    if (!view && isAnnouncementRoom(room)) {
      const hooks: RoomHooks = { unknown: () => this.unknown(room), forbidden: () => this.forbidden(room), open: (other) => this.open(other) };
      view = new LazyView(async () => new (await import("./announce.js")).AnnouncementView(this.client, room, hooks));
      this.views.set(room, view);
    }
    if (!view) {
      const kind = room.split("/")[1];
      const hooks: RoomHooks = { unknown: () => this.unknown(room), forbidden: () => this.forbidden(room), open: (other) => this.open(other) };
      view =
        kind === "homework"
          ? new LazyView(async () => new (await import("./diary.js")).DiaryRoomView(this.client, room, hooks, this.store))
          : kind === "handin"
          ? new LazyView(async () => new (await import("./handin.js")).HandinRoomView(this.client, room, hooks))
          : kind === "docs"
          ? new LazyView(async () => new (await import("./docs.js")).DocsRoomView(this.client, room, hooks))
          : kind === "blog"
          ? new LazyView(async () => new (await import("./blog.js")).BlogRoomView(this.client, room, hooks))
          : kind === "notes"
          ? new NotesView(this.client, room, hooks, this.store)
          : kind === "forum"
            ? new ForumView(this.client, room, hooks, this.store)
            : kind === "agenda"
              ? new AgendaRoomView(this.client, room, hooks, this.store)
              : new ChatView(this.client, room, hooks, this.store);
      this.views.set(room, view);
      if (!this.known.has(room)) {
        this.addToList(room);
        this.store?.saveDirectory(this.known);
      }
    }
    if (this.current && this.current !== room) this.views.get(this.current)?.hide?.();
    this.current = room;
    this.markActive();
    this.markRead(room);
    // What the feed says about the room on screen is read (« Messages » says which conversation).
    this.inbox.view(room.startsWith("@") ? undefined : room);
    const back = el("button", { type: "button", className: "secondary back", textContent: "← Salons" });
    back.addEventListener("click", () => this.showList(true));
    this.main.replaceChildren(back, view.root);
    if (this.layout.dataset.view !== "room") {
      this.layout.dataset.view = "room";
      if (push) history.pushState({ room }, "");
    }
    view.show();
  }

  /** Back to the directory (on a phone, the room and the list take the whole screen in turn). */
  private showList(viaHistory: boolean): void {
    this.layout.dataset.view = "list";
    // A phone shows the list alone: nothing on screen is read meanwhile.
    if (!matchMedia("(min-width: 760px)").matches) this.inbox.view(undefined);
    if (viaHistory && history.state?.room) history.back();
  }

  private markRead(room: string): void {
    if (!this.unread.delete(room)) return;
    this.renderUnread(room);
  }

  /**
   * What is new in `room`: what arrived while another room was shown, or
   * what the feed counts about it (the larger: both may count the same
   * news); « Messages »: the feed's conversations.
   */
  private count(room: string): number {
    if (room === MESSAGES_KEY) return this.inbox.unreadMessages();
    return Math.max(this.unread.get(room) ?? 0, this.inbox.unread(room));
  }

  /** The room's badge, and the total in the tab's title (« (3) préau ») and on the bell. */
  private renderUnread(room: string): void {
    const badge = this.directory.querySelector<HTMLElement>(`li[data-room="${CSS.escape(room)}"] .unread`);
    const n = this.count(room);
    if (badge) {
      badge.hidden = n === 0;
      badge.textContent = n > 99 ? "99+" : String(n);
      badge.setAttribute("aria-label", n === 1 ? "1 nouveau" : `${n} nouveaux`);
    }
    const rooms = new Set([...this.unread.keys(), ...this.inbox.state.unreadByRoom().keys()]);
    let total = 0;
    for (const r of rooms) total += Math.max(this.unread.get(r) ?? 0, this.inbox.unread(r));
    document.title = total > 0 ? `(${total}) préau` : "préau";
    const feed = this.inbox.state.total;
    const count = this.bell.querySelector<HTMLElement>(".count")!;
    count.hidden = feed === 0;
    count.textContent = feed > 99 ? "99+" : String(feed);
    this.bell.setAttribute("aria-label", feed === 0 ? "Notifications" : `Notifications : ${feed} non ${feed === 1 ? "lue" : "lues"}`);
  }

  /** Every badge (the feed changed). */
  private renderAllUnread(): void {
    for (const li of this.directory.querySelectorAll<HTMLElement>("li[data-room]")) this.renderUnread(li.dataset.room!);
    this.renderUnread(MESSAGES_KEY);
  }

  /**
   * A notification opened from the feed: what it is about is shown, and
   * read. Rooms outside any class (`_/…`) other than conversations and
   * announcements have no view here yet: the notification is read.
   */
  private openItem(item: FeedItem): void {
    this.inbox.markRead(item.room);
    if (isConversation(item.room) || isAnnouncementRoom(item.room) || (ROOM_RE.test(item.room) && !item.room.startsWith("_/"))) this.open(item.room);
    else toast("Notification lue : elle n'a pas encore de page dans l'application.");
  }

  private markActive(): void {
    for (const li of this.directory.querySelectorAll<HTMLElement>("li[data-room]")) {
      const active = li.dataset.room === this.current;
      li.classList.toggle("active", active);
      li.querySelector("button")?.setAttribute("aria-current", active ? "page" : "false");
    }
  }

  /** Drops a room the server refused from the list and from the views. */
  private drop(room: string, text: string): void {
    this.views.get(room)?.dispose();
    this.views.delete(room);
    this.known.delete(room);
    this.directory.querySelector(`li[data-room="${CSS.escape(room)}"]`)?.remove();
    this.store?.deleteRoom(room);
    this.store?.saveDirectory(this.known);
    if (this.current !== room) {
      toast(`${roomTitle(room)} : ${text}`, "error");
      return;
    }
    this.current = undefined;
    this.main.replaceChildren(
      el("section", { className: "unknown-room", "data-room": room }, el("h2", { textContent: roomTitle(room) }), el("p", { className: "notice", role: "alert", textContent: text })),
    );
  }

  /** No teacher opened `room` yet. Opening it again later tries again. */
  private unknown(room: string): void {
    this.drop(room, UNKNOWN_ROOM_TEXT);
  }

  /** The user may not read `room` (a parent and a pupils' chat). */
  private forbidden(room: string): void {
    this.drop(room, "Vous n'avez pas accès à ce salon.");
  }
}

function isOpen(client: PreauClient): boolean {
  return client.state === "open";
}

/** A room name from what a teacher typed: « Révisions bac » → `revisions-bac`. */
function slugify(text: string): string {
  return text
    .normalize("NFD")
    .replace(/[\u0300-\u036f]/g, "")
    .toLowerCase()
    .replace(/[^a-z0-9_.-]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 64);
}

// ---- chat -------------------------------------------------------------------

class ChatView implements View {
  root: HTMLElement;
  private list = el("ol", { className: "messages" });
  private older = el("button", { className: "secondary older", textContent: "Messages plus anciens", hidden: true });
  private typingLine = el("p", { className: "typing" });
  private membersLine = el("p", { className: "members" });
  private notice = el("p", { className: "notice", hidden: true });
  private input = el("input", { className: "composer-input", placeholder: "Écrire un message…", maxLength: 4000 });
  private send = el("button", { type: "submit", textContent: "Envoyer" });
  private items = new Map<number, HTMLElement>();
  private oldest = Infinity;
  private members = new Map<string, UserInfo>();
  // Display names of users met in this room: moderation events name their target by id.
  private names = new Map<string, string>();
  private typers = new Map<string, { name: string; until: number }>();
  private lastTyping = 0;
  private mutedUntil = 0;
  /** The room is read-only (only moderators write). */
  private readOnly = false;
  /** Shown from the offline copy, not joined yet: nothing can be sent. */
  private offline = false;
  /** The events shown (tombstones in place of deleted messages), for the offline copy. */
  private shown = new Map<number, EventFrame>();
  /** The events shown run without a gap up to the client's position: the copy may be saved. */
  private complete = false;
  private started = false;
  private unsubscribe: Array<() => void> = [];
  private typingTimer: ReturnType<typeof setInterval>;

  constructor(
    private client: PreauClient,
    private room: string,
    private hooks: RoomHooks,
    private store: OfflineStore | null = null,
  ) {
    this.root = el("section", { className: "chat", "data-room": room });
    this.input.setAttribute("aria-label", "Message");
    const composer = el("form", { className: "composer" }, this.input, this.send);
    composer.addEventListener("submit", (ev) => {
      ev.preventDefault();
      void this.post();
    });
    this.input.addEventListener("input", () => this.typing());
    this.older.addEventListener("click", () => void this.loadOlder());
    this.root.append(
      el("h2", { textContent: roomTitle(room) }),
      this.membersLine,
      el("div", { className: "scroller" }, this.older, this.list),
      this.typingLine,
      this.notice,
      composer,
    );
    this.typingTimer = setInterval(() => this.renderTyping(), 1000);
  }

  dispose(): void {
    clearInterval(this.typingTimer);
    for (const off of this.unsubscribe.splice(0)) off();
  }

  show(): void {
    if (!this.started) {
      this.started = true;
      this.wire();
      void this.join();
    }
    this.input.focus();
  }

  private wire(): void {
    const c = this.client;
    const on: PreauClient["on"] = (type, fn) => {
      const off = c.on(type, fn);
      this.unsubscribe.push(off);
      return off;
    };
    on("event", (ev) => {
      if (ev.room !== this.room) return;
      this.add(ev);
      // Their message arrived: they are no longer typing it.
      if (this.typers.delete(ev.from.id)) this.renderTyping();
      this.scrollToEnd();
    });
    on("presence", (p) => {
      if (p.room !== this.room) return;
      this.names.set(p.user.id, p.user.name);
      if (p.action === "join") this.members.set(p.user.id, p.user);
      else this.members.delete(p.user.id);
      this.renderMembers();
    });
    on("typing", (t) => {
      if (t.room !== this.room) return;
      this.typers.set(t.user.id, { name: t.user.name, until: Date.now() + 5000 });
      this.renderTyping();
    });
    on("joined", ({ room, data }) => {
      if (room !== this.room) return;
      this.offline = false;
      this.readOnly = data.read_only === true;
      this.updateComposer();
      this.members = new Map(data.members.map((m) => [m.id, m]));
      for (const m of data.members) this.names.set(m.id, m.name);
      this.renderMembers();
    });
    // The timeline could not be recovered after a long disconnection: reload it.
    on("reset", ({ room, head }) => {
      if (room !== this.room) return;
      this.items.clear();
      this.shown.clear();
      this.complete = false;
      this.list.replaceChildren();
      this.oldest = Infinity;
      void this.loadPage(head + 1).then(() => this.loaded());
    });
  }

  private async join(): Promise<void> {
    // Not connected (the app started offline, or the network is gone):
    // the stored copy is shown at once, read-only, and the join waits for
    // the connection, then resumes from the copy's position with `since`,
    // so what was posted meanwhile comes once and nothing is shown twice.
    let since: Since | undefined;
    if (this.client.state !== "open") {
      this.offline = true;
      const copy = await this.store?.loadRoom(this.room);
      if (copy?.kind === "chat" && copy.events.length > 0 && this.items.size === 0) since = this.restore(copy);
      // (The state may have changed during the read.)
      else if (!isOpen(this.client)) this.setNotice("Non disponible hors ligne : ce salon n'avait pas été chargé.");
      this.updateComposer();
    }
    try {
      const data = await this.client.join(this.room, since);
      // With `since`, the reply carried what was missed (or it is being
      // paged in, or a `reset` reloads the view): no page to load.
      if (!since || !data.recovery) await this.loadPage(data.head + 1);
      this.loaded();
    } catch (err) {
      if ((err as { code?: string }).code === "already_joined") return;
      if (isUnknownRoom(err)) return this.hooks.unknown();
      if ((err as { code?: string }).code === "forbidden") return this.hooks.forbidden();
      // Not joined (banned…): nothing can be sent from here.
      this.input.disabled = this.send.disabled = true;
      this.setNotice(errorText(err));
    }
  }

  /** The stored copy, shown until the server answers; returns the position it was saved at. */
  private restore(copy: ChatCopy): Since {
    for (const ev of copy.events) this.add(ev);
    this.older.hidden = !copy.more;
    this.scrollToEnd();
    return copy.since;
  }

  /** The view holds the room's latest events: from now on they are kept on the device. */
  private loaded(): void {
    this.complete = true;
    this.save();
  }

  private save(): void {
    if (!this.store || !this.complete) return;
    this.store.saveRoom(this.room, () => {
      const since = this.client.position(this.room);
      if (!since || this.shown.size === 0) return null;
      const events = [...this.shown.values()].sort((a, b) => a.offset - b.offset);
      return { kind: "chat", since, events, more: !this.older.hidden };
    });
  }

  private async loadPage(before: number): Promise<void> {
    const page = await this.client.history(this.room, { before, limit: 50 });
    const atEnd = this.list.childElementCount === 0;
    for (const ev of page.events) this.add(ev);
    this.older.hidden = !page.more;
    if (atEnd) this.scrollToEnd();
  }

  private async loadOlder(): Promise<void> {
    const scroller = this.list.parentElement!;
    const fromBottom = scroller.scrollHeight - scroller.scrollTop;
    try {
      await this.loadPage(this.oldest);
    } catch (err) {
      toast(errorText(err), "error");
    }
    scroller.scrollTop = scroller.scrollHeight - fromBottom; // keep the reader's place
  }

  /** Inserts or replaces the item at `ev.offset`, in offset order. */
  private add(ev: EventFrame): void {
    const item = this.render(ev);
    if (!item) return;
    const existing = this.items.get(ev.offset);
    if (existing) existing.replaceWith(item);
    else {
      const next = [...this.items.keys()].filter((o) => o > ev.offset).sort((a, b) => a - b)[0];
      if (next === undefined) this.list.append(item);
      else this.list.insertBefore(item, this.items.get(next)!);
    }
    this.items.set(ev.offset, item);
    this.shown.set(ev.offset, ev);
    this.oldest = Math.min(this.oldest, ev.offset);
    this.save();
  }

  private render(ev: EventFrame): HTMLElement | null {
    this.names.set(ev.from.id, ev.from.name);
    const staff = isModerator(ev.from.role);
    const meta = el(
      "span",
      { className: "meta" },
      el("b", { textContent: ev.from.name }),
      staff ? el("span", { className: "role-tag", textContent: ROLE_LABELS[ev.from.role] ?? ev.from.role }) : "",
      ` ${formatTime(ev.ts)}`,
    );
    const b = ev.body;
    switch (b.kind) {
      case "message": {
        const li = el("li", { className: staff ? "message from-staff" : "message", "data-offset": ev.offset }, meta, el("p", { className: "text", textContent: String(b.text) }));
        if (ev.from.id !== this.client.user?.id) {
          const report = el("button", { className: "link report", textContent: "Signaler", title: "Signaler ce message à l'enseignant" });
          report.addEventListener("click", () => void this.report(ev));
          li.append(report);
        }
        return li;
      }
      case "redacted": {
        const by = (b.by as UserInfo | undefined)?.name ?? "un modérateur";
        const why = b.reason ? ` (${String(b.reason)})` : "";
        return el("li", { className: "message redacted", "data-offset": ev.offset }, meta, el("p", { textContent: `Message supprimé par ${by}${why}` }));
      }
      case "moderation": {
        this.applyModeration(ev);
        const action = b.action as { kind?: string };
        // A deletion shows once: as the tombstone in the message's place.
        if (action.kind === "redact") return null;
        // What is done to one pupil reaches the class only when the teacher
        // chose to announce it: the server withholds it otherwise.
        return el("li", { className: "system", "data-offset": ev.offset, textContent: moderationText(ev, (id) => this.names.get(id)) });
      }
      default:
        return null; // unknown kinds are shown as nothing (the spec's rule)
    }
  }

  private applyModeration(ev: EventFrame): void {
    const action = ev.body.action as { kind: string; user?: string; offset?: number; reason?: string };
    const me = this.client.user?.id;
    if (action.kind === "redact" && action.offset !== undefined) {
      const target = this.items.get(action.offset);
      if (target) {
        // Same place, now a tombstone, as the server stores it.
        this.add({ ...ev, offset: action.offset, from: (ev.body.target_from as UserInfo) ?? ev.from, ts: (ev.body.target_ts as number) ?? ev.ts, body: { kind: "redacted", by: ev.from, reason: action.reason } });
      }
    }
    if (action.user === me && action.kind === "mute") {
      this.mutedUntil = Number(ev.body.until ?? 0);
      this.updateComposer();
    }
    if (action.user === me && action.kind === "unmute") {
      this.mutedUntil = 0;
      this.updateComposer();
    }
    if (action.kind === "read_only" && (action as { thread?: number }).thread === undefined) {
      this.readOnly = (action as { on?: boolean }).on === true;
      this.updateComposer();
    }
  }

  private updateComposer(): void {
    // Offline, the "Signaler" buttons go too (style.css): nothing can be sent.
    this.root.classList.toggle("offline-copy", this.offline);
    if (this.offline) {
      // Shown from the offline copy: whether the pupil may write (muted,
      // read-only room) is known again once joined.
      this.input.disabled = this.send.disabled = true;
      if (this.notice.hidden) this.setNotice("Hors ligne : lecture seule jusqu'au retour du réseau.");
      return;
    }
    const left = this.mutedUntil - Date.now();
    const muted = left > 0;
    const closed = this.readOnly && !isModerator(this.client.user?.role ?? "");
    this.input.disabled = this.send.disabled = muted || closed;
    this.setNotice(
      muted ? `Vous êtes en sourdine (encore ${formatDuration(left)}).` : closed ? "Ce salon est en lecture seule : seuls les enseignants peuvent y écrire." : "",
    );
    if (muted) setTimeout(() => this.updateComposer(), Math.min(left + 50, 60_000));
  }

  private setNotice(text: string): void {
    this.notice.textContent = text;
    this.notice.hidden = !text;
  }

  private async post(): Promise<void> {
    const text = this.input.value.trim();
    if (!text) return;
    this.send.disabled = true;
    try {
      await this.client.post(this.room, text);
      this.input.value = "";
    } catch (err) {
      toast(errorText(err), "error");
    } finally {
      this.send.disabled = this.mutedUntil > Date.now() || (this.readOnly && !isModerator(this.client.user?.role ?? ""));
      this.input.focus();
    }
  }

  // At most one typing request per 2 s: the server forwards one per second anyway.
  private typing(): void {
    const now = Date.now();
    if (now - this.lastTyping < 2000 || !this.input.value) return;
    this.lastTyping = now;
    this.client.typing(this.room).catch(() => {});
  }

  private async report(ev: EventFrame): Promise<void> {
    const reason = prompt("Pourquoi signalez-vous ce message ? (facultatif)");
    if (reason === null) return;
    try {
      await this.client.report(this.room, ev.offset, reason.trim() || undefined);
      toast("Signalement envoyé à l'enseignant.");
    } catch (err) {
      toast(errorText(err), "error");
    }
  }

  private renderMembers(): void {
    const names = [...this.members.values()].map((m) => m.name).sort((a, b) => a.localeCompare(b, "fr"));
    this.membersLine.textContent = names.length ? `En ligne : ${names.join(", ")}` : "";
  }

  private renderTyping(): void {
    const now = Date.now();
    for (const [id, t] of this.typers) if (t.until < now) this.typers.delete(id);
    const names = [...this.typers.values()].map((t) => t.name);
    this.typingLine.textContent =
      names.length === 0 ? "" : names.length === 1 ? `${names[0]} écrit…` : `${names.join(", ")} écrivent…`;
  }

  private scrollToEnd(): void {
    const s = this.list.parentElement!;
    s.scrollTop = s.scrollHeight;
  }
}

// ---- notes ------------------------------------------------------------------

class NotesView implements View {
  root: HTMLElement;
  private host = el("div", { className: "note-editor" });
  private status = el("p", { className: "status" });
  private people = el("p", { className: "members" });
  private notice = el("p", { className: "notice", hidden: true });
  private tools = el("div", { className: "note-tools" });
  private versionsEl = el("ol", { className: "versions-list", hidden: true });
  private previewEl = el("div", { className: "note-preview", hidden: true, "aria-live": "polite" });
  private previewTimer: ReturnType<typeof setInterval> | null = null;
  private editor?: NoteEditor;
  private started = false;
  private teardown: Array<() => void> = [];

  constructor(
    private client: PreauClient,
    private room: string,
    private hooks: RoomHooks,
    private store: OfflineStore | null = null,
  ) {
    this.root = el("section", { className: "notes", "data-room": room });
    this.root.append(
      el("h2", { textContent: roomTitle(room) }),
      this.people,
      this.notice,
      this.tools,
      this.versionsEl,
      el("div", { className: "note-panes" }, this.host, this.previewEl),
      this.status,
    );
    this.buildTools();
  }

  /** The editor's text, for tests (`window.preau.app`). */
  text(): string {
    return this.editor?.text() ?? "";
  }

  dispose(): void {
    if (this.previewTimer) clearInterval(this.previewTimer);
    for (const off of this.teardown.splice(0)) off();
  }

  /** The rendered Markdown beside the editor (below it on a phone), kept up to date while shown. */
  private async togglePreview(button: HTMLButtonElement): Promise<void> {
    if (!this.previewEl.hidden) {
      this.previewEl.hidden = true;
      button.setAttribute("aria-pressed", "false");
      if (this.previewTimer) clearInterval(this.previewTimer);
      this.previewTimer = null;
      return;
    }
    const { renderMarkdown } = await import("./preview.js");
    let shown: string | null = null;
    const render = () => {
      const text = this.text();
      if (text === shown) return;
      shown = text;
      this.previewEl.replaceChildren(renderMarkdown(text));
    };
    render();
    this.previewEl.hidden = false;
    button.setAttribute("aria-pressed", "true");
    this.previewTimer = setInterval(render, 500);
  }

  /** Export for everyone; validation and versions for teachers and staff. */
  private buildTools(): void {
    const exportDraft = el("button", { type: "button", className: "secondary", textContent: "Exporter (Markdown)" });
    exportDraft.addEventListener("click", () => void this.download());
    this.tools.append(exportDraft);
    const preview = el("button", { type: "button", className: "secondary", id: "note-preview-toggle", textContent: "Aperçu" });
    preview.setAttribute("aria-pressed", "false");
    preview.addEventListener("click", () => void this.togglePreview(preview));
    this.tools.append(preview);
    const versions = el("button", { type: "button", className: "secondary", textContent: "Versions validées" });
    versions.addEventListener("click", () => void this.toggleVersions());
    this.tools.append(versions);
    // The print view: the rendered note alone (the browser saves it as PDF).
    const print = el("button", { type: "button", className: "secondary", textContent: "Imprimer / PDF" });
    print.addEventListener("click", async () => {
      if (this.previewEl.hidden) await this.togglePreview(preview);
      window.print();
    });
    this.tools.append(print);
    if (!isModerator(this.client.user?.role ?? "")) return;
    const validate = el("button", { type: "button", id: "note-validate", textContent: "Valider cette version" });
    validate.addEventListener("click", () => void this.validate());
    this.tools.append(validate);
  }

  private async validate(): Promise<void> {
    const label = prompt("Nom de la version validée (ex. « Chapitre 3, version finale ») :");
    if (!label?.trim()) return;
    const lock = confirm("Verrouiller la note après validation ? (les élèves ne pourront plus la modifier)");
    try {
      await this.client.noteValidate(this.room, label.trim(), lock);
      toast(`Version « ${label.trim()} » validée${lock ? ", note verrouillée" : ""}.`);
      if (!this.versionsEl.hidden) await this.loadVersions();
    } catch (err) {
      toast(errorText(err), "error");
    }
  }

  private async toggleVersions(): Promise<void> {
    this.versionsEl.hidden = !this.versionsEl.hidden;
    if (!this.versionsEl.hidden) await this.loadVersions();
  }

  private async loadVersions(): Promise<void> {
    try {
      const { versions } = await this.client.noteVersions(this.room);
      const items = versions.map((v) => {
        const get = el("button", { type: "button", className: "link", textContent: "Exporter" });
        get.addEventListener("click", () => void this.download(v.version, v.label));
        const compare = el("button", { type: "button", className: "link compare", textContent: "Comparer avec le brouillon" });
        compare.addEventListener("click", () => void this.compare(v.version, v.label));
        return el("li", { "data-version": v.version }, `« ${v.label} », validée par ${v.by.name} le ${formatTime(v.ts)} `, get, compare);
      });
      this.versionsEl.replaceChildren(...(items.length ? items : [el("li", { textContent: "Aucune version validée pour l'instant." })]));
    } catch (err) {
      toast(errorText(err), "error");
    }
  }

  /** What changed between a validated version and the draft, line by line. */
  private async compare(version: number, label: string): Promise<void> {
    try {
      const [{ diffLines }, old] = await Promise.all([import("diff"), this.client.noteExport(this.room, "text", version)]);
      const before = typeof old.content === "string" ? old.content : "";
      const parts = diffLines(before, this.text());
      const lines = parts.map((part) => {
        const tag = part.added ? "ins" : part.removed ? "del" : "span";
        return el(tag, { textContent: part.value });
      });
      const changed = parts.some((p) => p.added || p.removed);
      this.previewEl.replaceChildren(
        el("h3", { textContent: `Différences entre « ${label} » et le brouillon` }),
        changed ? el("pre", { className: "diff" }, ...lines) : el("p", { textContent: "Aucune différence : le brouillon est identique à cette version." }),
      );
      if (this.previewTimer) clearInterval(this.previewTimer);
      this.previewTimer = null;
      this.previewEl.hidden = false;
    } catch (err) {
      toast(errorText(err), "error");
    }
  }

  /** Downloads the draft (or a validated version) as Markdown. */
  private async download(version?: number, label?: string): Promise<void> {
    try {
      const out = await this.client.noteExport(this.room, "markdown", version);
      downloadFile(`${this.room.split("/")[2]}${label ? `-${label}` : ""}.md`, out.content, "text/markdown");
    } catch (err) {
      toast(errorText(err), "error");
    }
  }

  show(): void {
    if (this.started) return;
    this.started = true;
    if (this.client.state !== "open") void this.showOffline();
    else this.loadEditor();
  }

  /**
   * Not connected: the note's last text kept on the device, read-only (the
   * editor needs the server's state to merge into); the editor comes once
   * the connection is back.
   */
  private async showOffline(): Promise<void> {
    this.tools.hidden = true;
    const copy = await this.store?.loadRoom(this.room);
    if (this.client.state === "open") return this.online();
    const text = copy?.kind === "notes" ? copy.text : undefined;
    if (text !== undefined) {
      this.host.replaceChildren(el("pre", { className: "note-offline", tabIndex: 0, textContent: text }));
      this.notice.textContent = "Hors ligne : dernière version chargée de cette note, en lecture seule.";
    } else {
      this.notice.textContent = "Non disponible hors ligne : cette note n'avait pas été chargée.";
    }
    this.notice.hidden = false;
    const off = this.client.on("open", () => this.online());
    this.teardown.push(off);
  }

  private online(): void {
    if (this.editor || this.status.textContent) return; // already starting
    this.host.replaceChildren();
    this.notice.hidden = true;
    this.tools.hidden = false;
    this.loadEditor();
  }

  private loadEditor(): void {
    this.status.textContent = "Chargement de l'éditeur…";
    // The editor is a separate chunk: the app's first load does not carry it.
    import("./editor.js").then(
      (editor) => this.start(editor),
      () => {
        this.started = false;
        this.status.textContent = "L'éditeur n'a pas pu être chargé : vérifiez la connexion et rouvrez la note.";
      },
    );
  }

  private start({ bindEditor, colourOf }: typeof import("./editor.js")): void {
    const doc = new Y.Doc();
    const awareness = new Awareness(doc);
    const me = this.client.user!;
    // The server overwrites id, name and role with the token's; the
    // colour is ours, for collaborators' cursors.
    const identity = { id: me.id, name: me.name, role: me.role, ...colourOf(me.id) };
    awareness.setLocalStateField("user", identity);
    const provider = new PreauProvider(this.client, this.room, doc, { awareness });
    this.editor = bindEditor(this.host, doc.getText("content"), awareness, "Contenu de la note");
    // The note's text is kept on the device once in sync with the server
    // (an empty document before that is no copy of the note).
    const saveText = () => {
      if (!provider.synced) return;
      this.store?.saveRoom(this.room, () => (provider.synced ? { kind: "notes", text: provider.doc.getText("content").toString() } : null));
    };
    doc.on("update", saveText);
    provider.on("synced", saveText);
    this.teardown.push(() => {
      this.editor?.destroy();
      provider.destroy();
      awareness.destroy();
    });

    const renderStatus = () => {
      this.status.textContent = !provider.synced
        ? "Synchronisation…"
        : provider.pending > 0
          ? `${provider.pending} modification(s) en cours d'envoi…`
          : "Enregistré";
    };
    provider.on("synced", renderStatus);
    provider.on("pending", renderStatus);
    renderStatus();

    const renderPeople = () => {
      const names = new Set<string>();
      for (const [id, s] of provider.awareness.getStates()) {
        if (id !== provider.doc.clientID && s.user?.name) names.add(String(s.user.name));
      }
      this.people.textContent = names.size ? `Avec vous : ${[...names].join(", ")}` : "Personne d'autre sur cette note.";
    };
    awareness.on("change", renderPeople);
    renderPeople();

    // Whether the note is locked for us, and until when we are muted: the
    // editor is read-only meanwhile (each refused keystroke would cost a
    // reset).
    let locked = false;
    let mutedTimer: ReturnType<typeof setTimeout> | null = null;
    const setReadOnly = (ro: boolean) => this.editor?.setReadOnly(ro);

    // A refused change cannot be taken back in a Yjs document: the provider
    // replaces it with the server's (see PreauProvider's `reset`); the
    // editor follows, and the pupil is told what was lost and why.
    provider.on("reset", ({ doc: fresh, awareness: freshAwareness, error }) => {
      const wasReadOnly = this.editor?.readOnly() ?? false;
      this.editor?.destroy();
      freshAwareness.setLocalStateField("user", identity);
      this.editor = bindEditor(this.host, fresh.getText("content"), freshAwareness, "Contenu de la note");
      fresh.on("update", saveText);
      setReadOnly(wasReadOnly);
      freshAwareness.on("change", renderPeople);
      renderPeople();
      this.notice.textContent = `Vos dernières modifications n'ont pas été enregistrées : ${lostReason(error)}`;
      this.notice.hidden = false;
    });
    const unmute = () => {
      if (mutedTimer) clearTimeout(mutedTimer);
      mutedTimer = null;
      setReadOnly(locked);
      if (!locked) this.notice.hidden = true;
    };
    provider.on("error", (err) => {
      // The join was refused: nobody opened this note yet, or it is not ours to read.
      if (isUnknownRoom(err)) return this.hooks.unknown();
      if (err.code === "forbidden" && !provider.synced) return this.hooks.forbidden();
      if (TRANSIENT_REFUSALS.has(err.code) || err.code === "out_of_sync") {
        // Kept locally and sent again shortly (a resync).
        this.notice.textContent = `${errorText(err)}. Vos modifications seront renvoyées automatiquement.`;
        this.notice.hidden = false;
        return;
      }
      // Otherwise the provider drops the refused changes: the `reset`
      // that follows says so.
      if (err.code === "read_only" || err.code === "forbidden" || err.code === "banned") {
        locked = err.code === "read_only" ? true : locked;
        setReadOnly(true);
      } else if (err.code === "muted") {
        setReadOnly(true);
        if (mutedTimer) clearTimeout(mutedTimer);
        // setTimeout holds at most ~24 days; a longer mute waits for `unmute`.
        if (err.retryAfterMs && err.retryAfterMs < 2 ** 31) mutedTimer = setTimeout(unmute, err.retryAfterMs);
      }
    });
    // Locked already: said on opening, before any keystroke is refused.
    const offJoined = this.client.on("joined", ({ room, data }) => {
      if (room !== this.room || isModerator(this.client.user?.role ?? "")) return;
      locked = data.read_only === true;
      setReadOnly(locked || mutedTimer !== null);
      this.notice.textContent = locked ? "Cette note est verrouillée par l'enseignant." : "";
      this.notice.hidden = !locked;
    });
    this.teardown.push(offJoined);
    const offEvent = this.client.on("event", (ev) => {
      if (ev.room !== this.room || ev.body.kind !== "moderation") return;
      const a = ev.body.action as { kind: string; on?: boolean; lock?: boolean; user?: string };
      toast(moderationText(ev));
      if (a.kind === "validate" && !this.versionsEl.hidden) void this.loadVersions();
      if (isModerator(this.client.user?.role ?? "")) return;
      if ((a.kind === "read_only" && a.on) || (a.kind === "validate" && a.lock)) {
        locked = true;
        setReadOnly(true);
        this.notice.textContent = "Cette note est verrouillée par l'enseignant.";
        this.notice.hidden = false;
      } else if (a.kind === "read_only" && a.on === false) {
        locked = false;
        setReadOnly(mutedTimer !== null);
        this.notice.hidden = true;
      } else if (a.kind === "unmute" && a.user === this.client.user?.id) {
        unmute();
      }
    });
    this.teardown.push(offEvent);
  }
}

/** Why a pupil's changes to a note were dropped, for « … n'ont pas été enregistrées : <ici> ». */
function lostReason(err: PreauError): string {
  const reasons: Record<string, string> = {
    read_only: "la note est verrouillée.",
    forbidden: "vous pouvez lire cette note, pas la modifier.",
    muted: "vous êtes en sourdine sur cette note.",
    banned: "vous êtes exclu de cette note.",
    document_too_large: "la note a atteint sa taille maximale.",
    update_too_large: "la modification est trop volumineuse.",
    out_of_sync: "la note a changé entre-temps ; elle a été rechargée.",
  };
  return reasons[err.code] ?? "le serveur les a refusées ; la note a été rechargée.";
}

// ---- start ------------------------------------------------------------------

/**
 * The service worker (sw.ts, built to /sw.js so that its scope is the
 * whole site) keeps the app's own files so that a reload without network
 * still starts the app; what the app shows comes from the offline copy
 * (offline.ts). Registered once the page has loaded, so it takes nothing
 * from the first load.
 */
function registerServiceWorker(): void {
  if (!("serviceWorker" in navigator)) return;
  const register = async () => {
    try {
      const alreadyControlled = navigator.serviceWorker.controller !== null;
      await navigator.serviceWorker.register("/sw.js");
      if (alreadyControlled) return;
      // The files of this first load were fetched before the worker was
      // there: it fetches them once more, to keep them (Workbox's
      // `CACHE_URLS` message; the worker decides what it keeps).
      const reg = await navigator.serviceWorker.ready;
      const keep = (urls: string[]) => reg.active?.postMessage({ type: "CACHE_URLS", payload: { urlsToCache: urls } });
      keep([location.pathname + location.search, ...performance.getEntriesByType("resource").map((e) => e.name)]);
      // Until the worker controls the page, files fetched meanwhile (a lazy
      // view opened at once: the diary, the messages) do not go through it
      // either: they are sent to it as they load.
      if (navigator.serviceWorker.controller === null) {
        const observer = new PerformanceObserver((list) => keep(list.getEntries().map((e) => e.name)));
        observer.observe({ type: "resource" });
        navigator.serviceWorker.addEventListener(
          "controllerchange",
          () => {
            observer.disconnect();
            keep(performance.getEntriesByType("resource").map((e) => e.name));
          },
          { once: true },
        );
      }
    } catch (err) {
      // Files served from elsewhere (`?ws=` while developing), or a browser that refuses: the app works online all the same.
      console.warn("préau: no service worker", err);
    }
  };
  if (document.readyState === "complete") void register();
  else window.addEventListener("load", () => void register(), { once: true });
}

/** Started offline: the stored user, or (no copy after all) once connected. */
async function presumeUser(client: PreauClient, store: OfflineStore | null): Promise<UserCopy | undefined> {
  const copy = await store?.loadUser();
  if (client.state === "open") return undefined;
  if (copy) {
    client.presume(copy.hello);
    return copy;
  }
  await new Promise<void>((resolve) => {
    const off = client.on("open", () => {
      off();
      resolve();
    });
  });
  return undefined;
}

const root = document.getElementById("app")!;
const resumeOffline = async (userId: string) => (await new OfflineStore(userId).loadUser()) !== undefined;
void signIn(root, undefined, { resumeOffline }).then(async (client) => {
  const userId = client.user?.id ?? sessionUser();
  const store = userId ? new OfflineStore(userId) : null;
  const copy = client.state === "open" ? undefined : await presumeUser(client, store);
  const app = new App(client, root, store, copy);
  app.start();
  (window as any).preau = { client, app }; // for debugging from the console
  registerServiceWorker();
});
