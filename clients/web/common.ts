// Shared by the web app and the teacher console: sign-in (pasted token or
// demo users), the client, and small DOM helpers.

import { PreauClient, PreauError, type EventFrame, type UserInfo } from "../src/client.js";
import { SESSION_USER_KEY, forgetOtherUsers, sessionUser, wipeOfflineCopy } from "./offline.js";

/** Same-origin `/ws`, unless `?ws=` says otherwise (serving the files from elsewhere while developing). */
export function wsUrl(): string {
  const override = new URLSearchParams(location.search).get("ws");
  if (override) return override;
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
}

export interface DemoUser {
  label: string;
  user: string;
  name: string;
  role: string;
  /** One class, or several comma-separated (a parent's children's). */
  class: string;
  /** A parent's children, as the demo mode takes them: `id:name:CLASS[+CLASS]`, comma-separated. */
  children?: string;
}

export const DEMO_USERS: DemoUser[] = [
  { label: "Élève (Ana, 3B)", user: "ana", name: "Ana Martin", role: "student", class: "3B" },
  { label: "Élève (Bilal, 3B)", user: "bilal", name: "Bilal Haddad", role: "student", class: "3B" },
  { label: "Enseignant (M. Durand, 3B)", user: "t-durand", name: "M. Durand", role: "teacher", class: "3B" },
  // Léo's class: without a teacher of 4A, his side of the parent's week would stay empty.
  { label: "Enseignante (Mme Roux, 4A)", user: "t-roux", name: "Mme Roux", role: "teacher", class: "4A" },
  {
    label: "Parent (Mme Martin : Ana en 3B, Léo en 4A)",
    user: "p-martin",
    name: "Mme Martin",
    role: "parent",
    class: "3B,4A",
    children: "ana:Ana Martin:3B,leo:Léo Martin:4A",
  },
];

/** A token from the server's demo mode (`preau serve --demo`), or null when it is off. */
export async function demoToken(u: Pick<DemoUser, "user" | "name" | "role" | "class" | "children">): Promise<string | null> {
  const q = new URLSearchParams({ user: u.user, name: u.name, role: u.role, class: u.class });
  if (u.children) q.set("children", u.children);
  try {
    const r = await fetch(`/dev/token?${q}`);
    if (r.status !== 200) return null;
    const body = (await r.json()) as { token?: unknown };
    return typeof body.token === "string" ? body.token : null;
  } catch {
    return null;
  }
}

const TOKEN_KEY = "preau.token";

export interface SignInOptions {
  /**
   * A saved token is being resumed and the device is offline (or the first
   * connection attempt failed): may the app start from its offline copy of
   * `userId`? If it resolves true while the client is still not
   * connected, signIn resolves with that client (state `connecting`; it
   * keeps trying, and connects by itself once the network is back).
   */
  resumeOffline?: (userId: string) => Promise<boolean>;
}

/**
 * Shows the sign-in form in `root` until a token authenticates, then
 * resolves with the connected client. The token stays in sessionStorage so
 * a reload does not sign out (and closing the tab does); the user's id
 * stays beside it, to find the offline copy (offline.ts) when a reload
 * happens without network.
 */
export function signIn(root: HTMLElement, demoFilter: (u: DemoUser) => boolean = () => true, options: SignInOptions = {}): Promise<PreauClient> {
  return new Promise((resolve) => {
    root.replaceChildren();
    const form = el("form", { className: "signin" });
    const label = el("label", { htmlFor: "token", textContent: "Jeton de connexion (fourni par l'ENT)" });
    const area = el("textarea", { id: "token", rows: 4, placeholder: "eyJ…", spellcheck: false });
    const submit = el("button", { type: "submit", textContent: "Se connecter" });
    const error = el("p", { className: "error", role: "alert" });
    const demo = el("div", { className: "demo", hidden: true });
    form.append(el("h2", { textContent: "Connexion" }), label, area, submit, error, demo);
    root.append(form);

    // Sign-in through the ENT when the server offers it: the token box
    // is then for development only, folded away.
    void fetch("/auth/config")
      .then((r) => (r.ok ? r.json() : null))
      .then((config: { oidc?: boolean; label?: string } | null) => {
        if (!config?.oidc) return;
        const back = location.pathname + location.search;
        const ent = el("a", { className: "button ent", href: `/auth/login?return=${encodeURIComponent(back)}`, textContent: config.label ?? "Se connecter avec l'ENT" });
        const dev = el("details", { className: "dev-token" }, el("summary", { textContent: "Jeton de développement" }), label, area, submit);
        form.replaceChildren(el("h2", { textContent: "Connexion" }), ent, error, dev, demo);
      })
      .catch(() => {});

    // The app starts once: connected, or earlier from the offline copy.
    let started = false;
    const start = (client: PreauClient) => {
      if (started) return;
      started = true;
      root.replaceChildren();
      resolve(client);
    };

    const attempt = async (token: string, resuming = false) => {
      error.textContent = "";
      submit.disabled = true;
      const client = new PreauClient({ url: wsUrl(), token });
      try {
        const connected = client.connect();
        if (resuming) resumeOffline(client);
        const hello = await connected;
        sessionStorage.setItem(TOKEN_KEY, token);
        sessionStorage.setItem(SESSION_USER_KEY, hello.user.id);
        // Whoever signed in on this device before: their copy goes now.
        void forgetOtherUsers(hello.user.id);
        start(client);
      } catch (err) {
        client.close();
        sessionStorage.removeItem(TOKEN_KEY);
        sessionStorage.removeItem(SESSION_USER_KEY);
        // The saved token was refused (expired, revoked): the sign-in is
        // over, and so is the offline copy's lifetime.
        if (resuming) await wipeOfflineCopy(started);
        // Started offline, refused once back online: back to the sign-in form.
        if (started) return location.reload();
        error.textContent = signInError(err);
      } finally {
        submit.disabled = false;
      }
    };

    // A saved token and no network: the app may start from its offline
    // copy rather than wait on the sign-in form.
    const resumeOffline = (client: PreauClient) => {
      const userId = sessionUser();
      const canResume = options.resumeOffline;
      if (!userId || !canResume) return;
      const tryOffline = async () => {
        off();
        if (started || client.state !== "connecting") return;
        if ((await canResume(userId)) && client.state === "connecting") start(client);
      };
      // Offline from the start, or the server unreachable at the first attempt.
      let off = () => {};
      if (!navigator.onLine) void tryOffline();
      else off = client.on("close", ({ willReconnect }) => void (willReconnect && tryOffline()));
    };

    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const token = area.value.trim();
      if (token) void attempt(token);
    });

    // Demo buttons only when the server's demo mode answers.
    const users = DEMO_USERS.filter(demoFilter);
    void demoToken(users[0]).then((probe) => {
      if (probe === null) return;
      demo.hidden = false;
      demo.append(el("p", { textContent: "Mode démonstration :" }));
      for (const u of users) {
        const b = el("button", { type: "button", textContent: u.label, className: "secondary" });
        b.addEventListener("click", async () => {
          const t = await demoToken(u);
          if (t) void attempt(t);
        });
        demo.append(b);
      }
    });

    // Back from the ENT: the token is in the fragment (never sent to a
    // server); it leaves the address bar at once.
    const fromEnt = new URLSearchParams(location.hash.slice(1)).get("token");
    if (fromEnt) {
      history.replaceState(history.state, "", location.pathname + location.search);
      void attempt(fromEnt);
      return;
    }
    const saved = sessionStorage.getItem(TOKEN_KEY);
    if (saved) void attempt(saved, true);
    // No sign-in in this tab: whatever copy an earlier tab left (closed
    // without signing out) has outlived its sign-in. See offline.ts.
    else void wipeOfflineCopy(false);
  });
}

/** A parent's child, as `hello` names them (from their token). */
export interface ChildHint {
  id: string;
  name?: string;
  classes?: string[];
}

/** The children of the signed-in parent, as `hello` gives them (none for others). */
export function helloChildren(client: PreauClient): ChildHint[] {
  return (client.hello?.children ?? []).map((c) => ({ id: c.id, name: c.name, classes: c.classes?.length ? c.classes : undefined }));
}

/** Signs out: the token and the offline copy go (pupils' data does not stay on a shared device), then the page reloads. */
export async function signOut(client: PreauClient): Promise<void> {
  client.close();
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(SESSION_USER_KEY);
  // Awaited: a reload could abort the deletion.
  await wipeOfflineCopy(true);
  location.reload();
}

function signInError(err: unknown): string {
  const code = err instanceof PreauError ? err.code : "";
  switch (code) {
    case "unauthorized":
      return "Jeton refusé : demandez-en un nouveau à l'ENT.";
    case "token_expired":
      return "Ce jeton a expiré : reconnectez-vous à l'ENT.";
    default:
      return "Connexion impossible au serveur.";
  }
}

/**
 * Why a pupil cannot enter a room: rooms exist once a teacher of the class
 * (or staff) opens them, and the server answers `unknown_room` before that.
 */
export const UNKNOWN_ROOM_TEXT = "Ce salon n'existe pas encore : votre enseignant doit l'ouvrir.";

/** Whether `err` says the room does not exist (nobody opened it yet). */
export function isUnknownRoom(err: unknown): boolean {
  return err instanceof PreauError && err.code === "unknown_room";
}

/** French labels for the error codes a user can meet. */
export function errorText(err: unknown): string {
  if (!(err instanceof PreauError)) return String(err);
  const wait = err.retryAfterMs ? ` (encore ${formatDuration(err.retryAfterMs)})` : "";
  const texts: Record<string, string> = {
    muted: "Vous êtes en sourdine dans ce salon",
    banned: "Vous êtes exclu de ce salon",
    read_only: "Ce salon est en lecture seule",
    slow_mode: "Mode lent : patientez avant de réécrire",
    rate_limited: "Trop de messages, ralentissez",
    forbidden: "Action non autorisée",
    invalid_room: "Nom de salon invalide (classe/type/nom, ex. 3B/chat/general)",
    unknown_room: UNKNOWN_ROOM_TEXT,
    not_editable: "Ce message ne peut plus être modifié : quelqu'un y a répondu, ou le délai de modification est passé",
    invalid_field: "Contenu refusé (champ vide ou trop long)",
    storage_error: "Le serveur n'a pas pu enregistrer : réessayez",
    overloaded: "Serveur surchargé : réessayez dans un instant",
    unavailable: "Serveur momentanément indisponible : réessayez",
    not_joined: "Rejoignez d'abord le salon",
    message_too_long: "Message trop long",
    not_connected: "Hors ligne : reconnexion en cours",
    disconnected: "Connexion perdue : le message n'a peut-être pas été envoyé",
    unknown_target: "Cible introuvable",
    too_many_rooms: "Trop de salons ouverts",
  };
  return (texts[err.code] ?? `Erreur : ${err.message}`) + wait;
}

export function formatDuration(ms: number): string {
  const s = Math.ceil(ms / 1000);
  if (s < 60) return `${s} s`;
  const m = Math.ceil(s / 60);
  if (m < 60) return `${m} min`;
  return `${Math.floor(m / 60)} h ${m % 60 ? `${m % 60} min` : ""}`.trim();
}

const timeFmt = new Intl.DateTimeFormat("fr-FR", { hour: "2-digit", minute: "2-digit" });
const dateTimeFmt = new Intl.DateTimeFormat("fr-FR", { dateStyle: "short", timeStyle: "short" });

export function formatTime(ts: number): string {
  const d = new Date(ts);
  return Date.now() - ts < 20 * 3600_000 ? timeFmt.format(d) : dateTimeFmt.format(d);
}

export const FLAVOUR_LABELS: Record<string, string> = {
  debate: "débat",
  help: "entraide",
  interclass: "interclasses",
};

export const ROLE_LABELS: Record<string, string> = {
  student: "élève",
  teacher: "enseignant",
  parent: "parent",
  staff: "personnel",
};

export function userLabel(u: UserInfo): string {
  return `${u.name} (${ROLE_LABELS[u.role] ?? u.role})`;
}

/** `document.createElement` with properties, typed. */
export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Partial<Record<string, unknown>> = {},
  ...children: Array<Node | string>
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k.startsWith("data-")) node.setAttribute(k, String(v));
    else if (k === "role") node.setAttribute("role", String(v));
    else (node as any)[k] = v;
  }
  node.append(...children);
  return node;
}

/** A status line that says whether the connection is up. */
export function connectionBadge(client: PreauClient): HTMLElement {
  const badge = el("span", { className: "badge" });
  const show = () => {
    const labels: Record<string, string> = {
      open: "En ligne",
      connecting: "Reconnexion…",
      closed: "Déconnecté",
      idle: "…",
    };
    badge.textContent = labels[client.state];
    badge.dataset.state = client.state;
  };
  client.on("state", show);
  show();
  return badge;
}

/** A short message at the bottom of the screen. */
export function toast(text: string, kind: "info" | "error" = "info"): void {
  const t = el("div", { className: `toast ${kind}`, textContent: text, role: "status" });
  document.body.append(t);
  setTimeout(() => t.remove(), 4000);
}

/** A moderation event (or an audit entry's action) in French. */
export function moderationText(
  ev: EventFrame,
  nameOf: (id: string) => string | undefined = () => undefined,
  titleOf: (thread: number) => string | undefined = () => undefined,
): string {
  const a = ev.body.action as Record<string, unknown>;
  const who = ev.from.name;
  const user = typeof a.user === "string" ? (nameOf(a.user) ?? a.user) : "";
  const reason = a.reason ? ` (${String(a.reason)})` : "";
  switch (a.kind) {
    case "redact":
      return `${who} a supprimé un message${reason}.`;
    case "mute":
      return `${who} a mis ${user} en sourdine pour ${formatDuration(Number(a.seconds) * 1000)}${reason}.`;
    case "unmute":
      return `${who} a rendu la parole à ${user}.`;
    case "kick":
      return `${who} a retiré ${user} du salon${reason}.`;
    case "ban":
      return `${who} a exclu ${user}${reason}.`;
    case "unban":
      return `${who} a levé l'exclusion de ${user}.`;
    case "slow_mode":
      return Number(a.seconds) > 0 ? `${who} a activé le mode lent (${String(a.seconds)} s).` : `${who} a désactivé le mode lent.`;
    case "read_only":
      if (typeof a.thread === "number") {
        // A thread is named by its title, never by its internal number.
        const title = titleOf(a.thread);
        const subject = title ? `le sujet « ${title} »` : "un sujet";
        return a.on ? `${who} a verrouillé ${subject}.` : `${who} a déverrouillé ${subject}.`;
      }
      return a.on ? `${who} a passé le salon en lecture seule.` : `${who} a rouvert le salon.`;
    case "configure": {
      const classes = Array.isArray(a.classes) && a.classes.length ? `, classes invitées : ${a.classes.join(", ")}` : "";
      const mods = Array.isArray(a.moderators) && a.moderators.length ? `, modérateurs invités : ${a.moderators.join(", ")}` : "";
      // The first `configure` opens the forum, later ones change it: words true of both.
      const kinds: Record<string, string> = { debate: "un forum de débat", help: "un forum d'entraide", interclass: "un forum interclasses" };
      return `${who} a fait de ce forum ${kinds[String(a.flavour)] ?? `un forum (${String(a.flavour)})`}${classes}${mods}.`;
    }
    case "pin":
      return `${who} a épinglé un message.`;
    case "unpin":
      return `${who} a désépinglé un message.`;
    case "validate":
      return `${who} a validé la version « ${String(a.label)} »${a.lock ? " et verrouillé la note" : ""}.`;
    case "resolve":
      return `${who} a ${a.dismissed ? "rejeté" : "traité"} un signalement.`;
    default:
      return `${who} : action de modération (${String(a.kind)}).`;
  }
}

/**
 * What a view tells the app about its room. A room exists only once a
 * teacher of the class (or staff) opened it; a join of any other is refused
 * with `unknown_room`, and a room the user may not read with `forbidden`:
 * the app then drops the room from its list.
 */
export interface RoomHooks {
  unknown(): void;
  forbidden(): void;
  /** Opens another room in the app, as its link in the directory does (the agenda opens the class's diary). */
  open(room: string): void;
}


export const KIND_LABELS: Record<string, string> = { chat: "discussion", forum: "forum", notes: "note", agenda: "agenda", audit: "journal", homework: "cahier de textes", handin: "devoirs à rendre", docs: "documents de la classe", blog: "blog" };
export const KIND_GROUPS: Record<string, string> = { chat: "Discussions", forum: "Forums", notes: "Notes", agenda: "Agenda", homework: "Cahier de textes", handin: "Devoirs à rendre", docs: "Documents de la classe", blog: "Blogs" };

/** The home page's title (web/diary.ts), which the directory's link says too. */
export function homeTitle(role: string): string {
  return role === "parent" ? "La semaine de mes enfants" : role === "student" ? "À faire cette semaine" : "Cette semaine";
}

export function isModerator(role: string): boolean {
  return role === "teacher" || role === "staff";
}

/** `revision-bac` → « revision bac »: a room's last segment, as people read it. */
export function prettyName(name: string): string {
  const spaced = name.replace(/[-_.]+/g, " ").trim();
  return spaced.charAt(0).toUpperCase() + spaced.slice(1);
}

/** « Revision bac · discussion · 3B »; a class's one diary: « Cahier de textes · 3B ». */
export function roomTitle(room: string): string {
  const [cls, kind, name] = room.split("/");
  // Its name is always `diary`, an English word no one should read.
  if (kind === "homework") return `Cahier de textes · ${cls}`;
  // One per class, named `main`.
  if (kind === "handin") return `Devoirs à rendre · ${cls}`;
  if (kind === "docs") return `Documents de la classe · ${cls}`;
  if (kind === "blog" && name === "main") return `Blog de la classe · ${cls}`;
  if (kind === "blog") return `Blog « ${prettyName(name ?? "")} » · ${cls}`;
  return `${prettyName(name ?? room)} · ${KIND_LABELS[kind] ?? kind} · ${cls}`;
}


/** Saves `content` as a file named `name` (an export the browser downloads). */
export function downloadFile(name: string, content: string | Uint8Array, type: string): void {
  const blob = new Blob([typeof content === "string" ? content : new Uint8Array(content)], { type });
  const a = el("a", { href: URL.createObjectURL(blob), download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
}
