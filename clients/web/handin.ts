// « Devoirs à rendre » in the web app (a chunk loaded when first shown,
// shared with the console): the class's hand-in room, `CLASS/handin/main`.
//
// - a pupil: the hand-ins for them, each with its status (« À rendre »,
//   « Rendu », « En retard », « Corrigé »), its deadline in words, « Rendre
//   mon travail » (a file) or « Enregistrer un message audio »
//   (MediaRecorder: start, stop, listen, send), an upload's progress,
//   « Remplacer » until the deadline, and the correction returned;
// - a parent: the same for each child, read-only;
// - a teacher (and staff): « Nouveau devoir à rendre », the list with
//   « 12 rendus sur 28 », and one hand-in followed: a row per pupil, each
//   file, « Tout télécharger (.zip) », « Rendre une correction ».
//
// The room is joined: its `handin_*` events refresh what is shown, live.
// Files go over HTTP (src/files.ts) with the user's token; a download is
// fetched with it and saved from a `blob:` URL (the server wants the
// Authorization header, which a plain link cannot send).

import { PreauError, type PreauClient } from "../src/client.js";
import { FileError, downloadBundle, fetchFile, uploadFile, type FileRef, type UploadedFile } from "../src/files.js";
import { handinChange, handinOpen, handinReturn, handinStatus, handinSubmit, handins, type FileFamily, type HandinView, type PupilRow } from "../src/handin.js";
import { el, errorText, isModerator, isUnknownRoom, roomTitle, toast, type RoomHooks } from "./common.js";

const TZ = "Europe/Paris";
const dayFmt = new Intl.DateTimeFormat("fr-FR", { timeZone: TZ, weekday: "long", day: "numeric", month: "long" });
const dayYearFmt = new Intl.DateTimeFormat("fr-FR", { timeZone: TZ, weekday: "long", day: "numeric", month: "long", year: "numeric" });
const hourFmt = new Intl.DateTimeFormat("fr-FR", { timeZone: TZ, hour: "numeric", minute: "2-digit", hourCycle: "h23" });

/** « le mardi 8 décembre à 18 h », « le lundi 1er mars 2027 à 8 h 30 » (no-break spaces around « h »). */
export function dueWords(ts: number, now = Date.now()): string {
  const far = Math.abs(ts - now) > 300 * 86_400_000 || new Date(ts).getFullYear() !== new Date(now).getFullYear();
  const day = (far ? dayYearFmt : dayFmt)
    .formatToParts(ts)
    .map((p) => (p.type === "day" && p.value === "1" ? "1er" : p.value))
    .join("");
  const parts = hourFmt.formatToParts(ts);
  const h = Number(parts.find((p) => p.type === "hour")?.value ?? "0");
  const m = parts.find((p) => p.type === "minute")?.value ?? "00";
  // Non-breaking spaces: « 18 h 30 » never splits across lines.
  return `le ${day} à ${h}\u00a0h${m === "00" ? "" : `\u00a0${m}`}`;
}

/** « 12,4 Mo », « 830 ko ». */
export function sizeWords(bytes: number): string {
  if (bytes < 1000) return `${bytes} octets`;
  if (bytes < 1_000_000) return `${Math.round(bytes / 1000)} ko`;
  return `${(bytes / 1_000_000).toLocaleString("fr-FR", { maximumFractionDigits: 1 })} Mo`;
}

const FAMILY_LABELS: Record<FileFamily, string> = {
  document: "Documents (PDF, Word, texte…)",
  image: "Images",
  audio: "Audio",
  video: "Vidéo",
};
const FAMILY_WORDS: Record<FileFamily, string> = { document: "document", image: "image", audio: "audio", video: "vidéo" };
/** What a phone's file picker offers for each family. */
const FAMILY_ACCEPT: Record<FileFamily, string> = {
  document: ".pdf,.doc,.docx,.odt,.rtf,.txt,.xls,.xlsx,.ods,.ppt,.pptx,.odp,application/pdf,text/plain",
  image: "image/jpeg,image/png,image/webp,image/gif",
  audio: "audio/*,.mp3,.m4a,.ogg,.opus,.wav,.aac,.flac,.webm",
  video: "video/*,.mp4,.webm,.mov",
};

/** A pupil's status in words, and its style. */
export function statusOf(row: PupilRow, due: number, teacher = false, now = Date.now()): { text: string; key: string } {
  switch (row.status) {
    case "returned":
      return { text: "Corrigé", key: "returned" };
    case "late":
      return { text: "Rendu en retard", key: "late" };
    case "handed_in":
      return { text: "Rendu", key: "handed-in" };
    default:
      return now > due ? { text: teacher ? "Non rendu" : "En retard", key: "missing" } : { text: teacher ? "Pas encore rendu" : "À rendre", key: "todo" };
  }
}

/** « 12 rendus sur 28 », « 1 rendu sur 2 ». */
export function tally(h: HandinView): string {
  const c = h.counts;
  if (!c) return "";
  const parts = [`${c.handedIn} ${c.handedIn > 1 ? "rendus" : "rendu"} sur ${c.pupils}`];
  if (c.late) parts.push(`dont ${c.late} en retard`);
  if (c.returned) parts.push(`${c.returned} ${c.returned > 1 ? "corrigés" : "corrigé"}`);
  return parts.join(" · ");
}

function code(err: unknown): string {
  return err instanceof PreauError || err instanceof FileError ? err.code : "";
}

/** Why sending a file (or handing it in) failed, in words. */
export function fileErrorText(err: unknown): string {
  if (err instanceof FileError) {
    switch (err.code) {
      case "unsupported_type":
        return "Ce type de fichier n'est pas accepté : envoyez un PDF, un document, une image, un son ou une vidéo.";
      case "too_large":
        return "Fichier trop volumineux (ou espace de stockage plein).";
      case "network":
        return "Envoi interrompu : vérifiez la connexion, puis réessayez.";
      case "unauthorized":
        return "Session expirée : reconnectez-vous.";
      case "unavailable":
        return "Le stockage des fichiers est momentanément indisponible : réessayez.";
      case "not_found":
        return "Fichier introuvable, ou vous n'y avez pas accès.";
      default:
        return `Envoi refusé : ${err.message}`;
    }
  }
  switch (code(err)) {
    case "invalid_field":
      return "Ce type de fichier n'est pas accepté pour ce devoir.";
    case "forbidden":
      return "Ce n'est plus possible : la date limite est passée, ou le travail a déjà été corrigé.";
    case "unknown_target":
      return "Ce devoir ne vous est pas destiné.";
  }
  return errorText(err);
}

/** Saves a blob under `name` (a download the browser keeps). */
export function saveBlob(blob: Blob, name: string): void {
  const a = el("a", { href: URL.createObjectURL(blob), download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 30_000);
}

/** Fetches a file with the token and saves it. */
export async function download(client: PreauClient, room: string, ref: FileRef, button?: HTMLButtonElement): Promise<void> {
  if (button) button.disabled = true;
  try {
    const got = await fetchFile(client.httpUrl, await client.token(), ref.id, room);
    saveBlob(got.blob, got.name || ref.name);
  } catch (err) {
    toast(`Téléchargement impossible : ${fileErrorText(err)}`, "error");
  } finally {
    if (button) button.disabled = false;
  }
}

/** A button that downloads `ref`: « Télécharger la correction (corrigé.pdf, 48 ko) ». */
export function downloadButton(client: PreauClient, room: string, ref: FileRef, label: string, className = "secondary download"): HTMLButtonElement {
  const b = el("button", { type: "button", className }, el("span", { textContent: label }), el("span", { className: "file-name", textContent: ` (${ref.name}, ${sizeWords(ref.size)})` }));
  b.addEventListener("click", () => void download(client, room, ref, b));
  return b;
}

let ids = 0;
export const nextId = (prefix: string) => `${prefix}-${++ids}`;

/** An upload's progress: a bar and « Envoi… 42 % ». */
export class Progress {
  bar = el("progress", { max: 100, value: 0 });
  text = el("span", { className: "progress-text" });
  root = el("div", { className: "upload-progress", hidden: true }, this.bar, this.text);
  constructor(label: string) {
    this.bar.setAttribute("aria-label", label);
  }
  set(sent: number, total: number): void {
    const pct = total ? Math.floor((100 * sent) / total) : 0;
    this.root.hidden = false;
    this.bar.value = pct;
    this.text.textContent = `Envoi… ${pct} %`;
  }
  done(): void {
    this.root.hidden = true;
  }
}

/** Uploads a file as the user, for the room's class, with its progress shown. */
export async function upload(client: PreauClient, room: string, file: Blob, name: string, progress: Progress): Promise<UploadedFile> {
  progress.set(0, file.size);
  try {
    return await uploadFile(client.httpUrl, await client.token(), file, name, {
      class: room.split("/")[0],
      chunkBytes: 1024 * 1024,
      onProgress: (sent, total) => progress.set(sent, total),
    });
  } finally {
    progress.done();
  }
}

/** Whether this browser can record sound (MediaRecorder and a microphone API). */
export function canRecord(): boolean {
  return typeof MediaRecorder !== "undefined" && typeof navigator !== "undefined" && typeof navigator.mediaDevices?.getUserMedia === "function";
}

/**
 * « Enregistrer un message audio »: start, stop, listen to it, then send it
 * (`send` uploads and hands it in) or start again.
 */
export class Recorder {
  root = el("div", { className: "recorder" });
  private start = el("button", { type: "button", className: "secondary record", textContent: "Enregistrer un message audio" });
  private stop = el("button", { type: "button", className: "danger stop", textContent: "Arrêter l'enregistrement", hidden: true });
  private clock = el("span", { className: "rec-clock", hidden: true });
  private preview = el("div", { className: "rec-preview", hidden: true });
  private recorder?: MediaRecorder;
  private stream?: MediaStream;
  private timer?: ReturnType<typeof setInterval>;
  private url?: string;

  constructor(
    private send: (blob: Blob, name: string) => Promise<boolean>,
    /** The button that sends it (the blog: « Joindre l'enregistrement »). */
    private sendLabel = "Envoyer l'enregistrement",
  ) {
    this.start.addEventListener("click", () => void this.begin());
    this.stop.addEventListener("click", () => this.recorder?.stop());
    this.root.append(this.start, this.stop, this.clock, this.preview);
  }

  private async begin(): Promise<void> {
    this.clear();
    try {
      this.stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch {
      toast("Micro indisponible : autorisez l'accès au micro, ou rendez un fichier.", "error");
      return;
    }
    const chunks: Blob[] = [];
    const rec = new MediaRecorder(this.stream);
    this.recorder = rec;
    rec.addEventListener("dataavailable", (e) => e.data.size && chunks.push(e.data));
    rec.addEventListener("stop", () => {
      clearInterval(this.timer);
      this.stream?.getTracks().forEach((t) => t.stop());
      this.stream = undefined;
      this.start.hidden = false;
      this.start.textContent = "Recommencer l'enregistrement";
      this.stop.hidden = true;
      this.clock.hidden = true;
      const type = rec.mimeType || chunks[0]?.type || "audio/webm";
      this.ready(new Blob(chunks, { type }));
    });
    const began = Date.now();
    const tick = () => {
      const s = Math.floor((Date.now() - began) / 1000);
      this.clock.textContent = `Enregistrement en cours : ${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
    };
    tick();
    this.timer = setInterval(tick, 500);
    rec.start(1000);
    this.start.hidden = true;
    this.stop.hidden = false;
    this.clock.hidden = false;
    this.stop.focus();
  }

  /** Recorded: a player to listen to it, and « Envoyer l'enregistrement ». */
  private ready(blob: Blob): void {
    this.url = URL.createObjectURL(blob);
    const audio = el("audio", { controls: true, src: this.url, preload: "metadata" });
    audio.setAttribute("aria-label", "Écouter l'enregistrement");
    const ext = /ogg/.test(blob.type) ? "ogg" : /mp4|aac|m4a/.test(blob.type) ? "m4a" : "webm";
    const stamp = new Date().toISOString().slice(0, 16).replace("T", " ").replace(":", "h");
    const send = el("button", { type: "button", className: "send-recording", textContent: this.sendLabel });
    send.addEventListener("click", async () => {
      send.disabled = true;
      if (await this.send(blob, `enregistrement ${stamp}.${ext}`)) this.clear();
      else send.disabled = false;
    });
    this.preview.replaceChildren(el("p", { className: "hint", textContent: `Enregistrement prêt (${sizeWords(blob.size)}) : écoutez-le, puis envoyez-le.` }), audio, send);
    this.preview.hidden = false;
  }

  /** Recording, or a recording waiting to be sent: the view is not redrawn under it. */
  active(): boolean {
    return this.recorder?.state === "recording" || !this.preview.hidden;
  }

  private clear(): void {
    if (this.url) URL.revokeObjectURL(this.url);
    this.url = undefined;
    this.preview.replaceChildren();
    this.preview.hidden = true;
    this.start.textContent = "Enregistrer un message audio";
  }

  dispose(): void {
    clearInterval(this.timer);
    if (this.recorder?.state === "recording") this.recorder.stop();
    this.stream?.getTracks().forEach((t) => t.stop());
    this.clear();
  }
}

// ---- the teacher's form ------------------------------------------------------------------

/** « Nouveau devoir à rendre »: title, instructions, deadline, families taken, late work. */
class NewHandinForm {
  root: HTMLDetailsElement;
  private title = el("input", { id: "handin-title", maxLength: 200, autocomplete: "off", required: true });
  private instructions = el("textarea", { id: "handin-instructions", rows: 3, maxLength: 10000 });
  private date = el("input", { id: "handin-date", type: "date", required: true });
  private time = el("input", { id: "handin-time", type: "time", value: "18:00", required: true });
  private late = el("input", { id: "handin-late", type: "checkbox" });
  private boxes = new Map<FileFamily, HTMLInputElement>();
  private status = el("p", { className: "status", role: "status" });
  private submit = el("button", { type: "submit", textContent: "Publier le devoir" });

  constructor(
    private client: PreauClient,
    private room: string,
    private opened: () => void,
  ) {
    const tomorrow = new Date(Date.now() + 86_400_000);
    this.date.value = `${tomorrow.getFullYear()}-${String(tomorrow.getMonth() + 1).padStart(2, "0")}-${String(tomorrow.getDate()).padStart(2, "0")}`;
    const families = el("fieldset", { className: "handin-families" }, el("legend", { textContent: "Types acceptés (aucun coché : tous)" }));
    for (const f of ["document", "image", "audio", "video"] as FileFamily[]) {
      const box = el("input", { type: "checkbox", id: `handin-accept-${f}`, value: f });
      this.boxes.set(f, box);
      families.append(el("label", { className: "check", htmlFor: box.id }, box, FAMILY_LABELS[f]));
    }
    const form = el(
      "form",
      { className: "handin-form" },
      el("label", { htmlFor: "handin-title", textContent: "Titre" }),
      this.title,
      el("label", { htmlFor: "handin-instructions", textContent: "Consignes" }),
      this.instructions,
      el(
        "div",
        { className: "row when" },
        el("div", {}, el("label", { htmlFor: "handin-date", textContent: "Date limite" }), this.date),
        el("div", {}, el("label", { htmlFor: "handin-time", textContent: "Heure limite" }), this.time),
      ),
      families,
      el("label", { className: "check", htmlFor: "handin-late" }, this.late, "Accepter les retards (marqués « en retard »)"),
      this.submit,
      this.status,
    );
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      void this.send();
    });
    this.root = el("details", { className: "handin-new" }, el("summary", { textContent: "Nouveau devoir à rendre" }), form);
  }

  private async send(): Promise<void> {
    const title = this.title.value.trim();
    const due = new Date(`${this.date.value}T${this.time.value || "18:00"}`).getTime();
    if (!title) return void (this.status.textContent = "Indiquez un titre.");
    if (!Number.isFinite(due) || due <= Date.now()) return void (this.status.textContent = "La date limite doit être à venir.");
    const accepts = [...this.boxes].filter(([, b]) => b.checked).map(([f]) => f);
    this.submit.disabled = true;
    this.status.textContent = "Envoi…";
    try {
      await handinOpen(this.client, this.room, { title, instructions: this.instructions.value.trim(), due, accepts, late: this.late.checked });
      this.status.textContent = "";
      toast(`Devoir publié, à rendre ${dueWords(due)}.`);
      this.title.value = "";
      this.instructions.value = "";
      this.root.open = false;
      this.opened();
    } catch (err) {
      this.status.textContent =
        code(err) === "unknown_target"
          ? "Aucun élève de la classe n'est connu : l'annuaire de l'établissement n'est pas encore synchronisé."
          : code(err) === "invalid_field"
            ? "La date limite doit être à venir (dans les 400 jours)."
            : errorText(err);
    } finally {
      this.submit.disabled = false;
    }
  }
}

// ---- the view -------------------------------------------------------------------------------

/** The class's « Devoirs à rendre ». */
export class HandinRoomView {
  root: HTMLElement;
  private body = el("div", { className: "handin-body" });
  private notice = el("p", { className: "notice", role: "alert", hidden: true });
  private started = false;
  private unsubscribe: Array<() => void> = [];
  private timer?: ReturnType<typeof setTimeout>;
  private teacher: boolean;
  private list: HandinView[] = [];
  /** The hand-in followed (teachers), or none: the list. */
  private followed?: number;
  private recorders: Recorder[] = [];
  /** « Nouveau devoir à rendre » (teachers), hidden while one hand-in is followed. */
  private form?: NewHandinForm;
  /** An upload is under way: a refresh waits, so the progress and the input are not swept away. */
  private busy = 0;
  private pending = false;

  constructor(
    private client: PreauClient,
    private room: string,
    private hooks: RoomHooks,
  ) {
    this.teacher = isModerator(client.user?.role ?? "");
    this.root = el("section", { className: "handin-view", "data-room": room }, el("h2", { textContent: roomTitle(room) }), this.notice);
    if (this.teacher) {
      this.form = new NewHandinForm(client, room, () => void this.refresh());
      this.root.append(this.form.root);
    }
    this.body.append(el("p", { className: "empty", textContent: "Chargement…" }));
    this.root.append(this.body);
  }

  show(): void {
    if (this.started) return void this.refresh();
    this.started = true;
    this.unsubscribe.push(
      this.client.on("event", (ev) => {
        if (ev.room === this.room && String(ev.body.kind).startsWith("handin_")) this.soon();
      }),
      this.client.on("reset", ({ room }) => room === this.room && this.soon()),
      this.client.on("open", () => this.soon()),
    );
    void this.start();
  }

  dispose(): void {
    clearTimeout(this.timer);
    for (const off of this.unsubscribe.splice(0)) off();
    for (const r of this.recorders.splice(0)) r.dispose();
  }

  private async start(): Promise<void> {
    try {
      // Joined for the live events (a teacher's join opens the room).
      await this.client.join(this.room);
    } catch (err) {
      if (isUnknownRoom(err)) return this.hooks.unknown();
      if (code(err) === "forbidden") return this.hooks.forbidden();
      if (code(err) !== "already_joined") this.setNotice(errorText(err));
    }
    await this.refresh();
  }

  private setNotice(text: string): void {
    this.notice.textContent = text;
    this.notice.hidden = !text;
  }

  private soon(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.refresh(), 200);
  }

  /**
   * Whether a redraw would sweep away what the user is doing: an upload, a
   * recording, a correction's file chosen or its comment being typed.
   */
  private inUse(): boolean {
    if (this.busy || this.recorders.some((r) => r.active())) return true;
    if (this.body.querySelector(".change-form")?.contains(document.activeElement)) return true;
    for (const form of this.body.querySelectorAll<HTMLFormElement>("details.return[open] form.return-form")) {
      if (form.contains(document.activeElement) || form.querySelector<HTMLInputElement>("input[type=file]")?.files?.length) return true;
    }
    return false;
  }

  private async refresh(): Promise<void> {
    if (this.inUse()) {
      // Tried again when the upload ends, or in a moment.
      this.pending = true;
      if (!this.busy) {
        clearTimeout(this.timer);
        this.timer = setTimeout(() => void this.refresh(), 1500);
      }
      return;
    }
    this.pending = false;
    try {
      this.list = await handins(this.client, this.room);
      this.setNotice("");
    } catch (err) {
      if (isUnknownRoom(err)) return this.hooks.unknown();
      this.setNotice(`Liste indisponible : ${errorText(err)}`);
      return;
    }
    if (this.teacher && this.followed !== undefined) await this.renderFollow(this.followed);
    else this.render();
  }

  /** Runs an upload: no refresh meanwhile, one afterwards. */
  private async guarded<T>(fn: () => Promise<T>): Promise<T> {
    this.busy += 1;
    try {
      return await fn();
    } finally {
      this.busy -= 1;
      if (!this.busy && this.pending) {
        this.pending = false;
        this.soon();
      }
    }
  }

  private render(): void {
    for (const r of this.recorders.splice(0)) r.dispose();
    if (this.form) this.form.root.hidden = false;
    if (this.list.length === 0) {
      this.body.replaceChildren(el("p", { className: "empty", textContent: "Aucun devoir à rendre pour l'instant." }));
      return;
    }
    const ul = el("ul", { className: "handin-list", "aria-label": "Devoirs à rendre" });
    for (const h of this.list) ul.append(this.teacher ? this.teacherItem(h) : this.familyItem(h));
    this.body.replaceChildren(ul);
  }

  private head(h: HandinView): HTMLElement[] {
    const accepts = h.accepts.length ? ` · ${h.accepts.map((f) => FAMILY_WORDS[f]).join(", ")}` : "";
    const out: HTMLElement[] = [
      el("h3", { textContent: h.title }),
      el("p", { className: "due", textContent: `À rendre ${dueWords(h.due)}${h.late ? " (retards acceptés)" : ""}` }),
    ];
    if (h.instructions) out.push(el("p", { className: "instructions", textContent: h.instructions }));
    out.push(el("p", { className: "meta", textContent: `Donné par ${h.by.name}${accepts}` }));
    return out;
  }

  private teacherItem(h: HandinView): HTMLElement {
    const follow = el("button", { type: "button", className: "secondary follow", textContent: "Suivre les rendus" });
    follow.setAttribute("aria-label", `Suivre les rendus : ${h.title}`);
    follow.addEventListener("click", () => {
      this.followed = h.handin;
      void this.renderFollow(h.handin).then(() => this.body.querySelector<HTMLElement>(".back-list")?.focus());
    });
    return el("li", { className: "handin-item", "data-handin": String(h.handin) }, ...this.head(h), el("p", { className: "tally", textContent: tally(h) }), follow);
  }

  // ---- a pupil's and a parent's hand-ins ----

  private familyItem(h: HandinView): HTMLElement {
    const li = el("li", { className: "handin-item", "data-handin": String(h.handin) }, ...this.head(h));
    const parent = this.client.user?.role === "parent";
    for (const row of h.mine) li.append(this.rowCard(h, row, parent));
    if (h.mine.length === 0) li.append(el("p", { className: "empty", textContent: "Rien à rendre." }));
    return li;
  }

  private rowCard(h: HandinView, row: PupilRow, parent: boolean): HTMLElement {
    const st = statusOf(row, h.due);
    const card = el("div", { className: "pupil-work", "data-pupil": row.pupil.id });
    const status = el("span", { className: "handin-status", "data-status": st.key, textContent: st.text });
    card.append(el("p", { className: "work-status" }, parent ? `${row.pupil.name} : ` : "", status));
    if (row.file) {
      const when = row.submitted ? `, rendu ${dueWords(row.submitted)}` : "";
      card.append(
        el("p", { className: "work-file", textContent: `${parent ? "Son" : "Votre"} travail : ${row.file.name} (${sizeWords(row.file.size)})${when}${row.status === "late" ? ", en retard" : ""}.` }),
        downloadButton(this.client, this.room, row.file, parent ? "Télécharger son travail" : "Télécharger mon travail"),
      );
    }
    if (row.returned) {
      const r = row.returned;
      const box = el("div", { className: "correction" }, el("h4", { textContent: `Correction de ${r.by.name}` }));
      if (r.comment) box.append(el("p", { className: "comment", textContent: r.comment }));
      if (r.file) box.append(downloadButton(this.client, this.room, r.file, "Télécharger la correction"));
      card.append(box);
    }
    if (!parent) this.actions(h, row, card);
    return card;
  }

  /** A pupil's buttons: « Rendre mon travail » / « Remplacer », the recorder, the progress. */
  private actions(h: HandinView, row: PupilRow, card: HTMLElement): void {
    const now = Date.now();
    const open = row.status !== "returned" && (now <= h.due ? true : row.status === "todo" && h.late);
    if (!open) {
      if (row.status === "todo") card.append(el("p", { className: "hint", textContent: "La date limite est passée : ce devoir n'est plus accepté." }));
      return;
    }
    // Hidden: « Rendre mon travail » opens the picker (a phone's: camera, files...).
    const input = el("input", { type: "file", className: "handin-file", id: nextId("handin-file"), hidden: true });
    if (h.accepts.length) input.accept = h.accepts.map((f) => FAMILY_ACCEPT[f]).join(",");
    input.setAttribute("aria-label", "Fichier à rendre");
    const replacing = row.status !== "todo";
    const pick = el("button", { type: "button", className: "hand-in", textContent: replacing ? "Remplacer" : now > h.due ? "Rendre en retard" : "Rendre mon travail" });
    if (replacing) pick.setAttribute("aria-label", `Remplacer mon travail : ${h.title}`);
    pick.addEventListener("click", () => input.click());
    const progress = new Progress("Envoi du travail");
    const result = el("p", { className: "status", role: "status" });
    const send = async (file: Blob, name: string): Promise<boolean> =>
      this.guarded(async () => {
        pick.disabled = true;
        result.textContent = "";
        try {
          const up = await upload(this.client, this.room, file, name, progress);
          await handinSubmit(this.client, this.room, h.handin, up.file);
          result.textContent = `Travail rendu : ${up.name}.`;
          toast(replacing ? "Travail remplacé." : "Travail rendu.");
          this.pending = true;
          return true;
        } catch (err) {
          result.textContent = fileErrorText(err);
          return false;
        } finally {
          pick.disabled = false;
          input.value = "";
        }
      });
    input.addEventListener("change", () => {
      const file = input.files?.[0];
      if (file) void send(file, file.name);
    });
    const buttons = el("div", { className: "work-actions" }, pick, input);
    if (canRecord() && (h.accepts.length === 0 || h.accepts.includes("audio") || h.accepts.includes("video"))) {
      const rec = new Recorder(send);
      this.recorders.push(rec);
      buttons.append(rec.root);
    }
    if (replacing && now <= h.due) card.append(el("p", { className: "hint", textContent: `Vous pouvez remplacer votre travail jusqu'au ${dueWords(h.due).slice(3)}.` }));
    card.append(buttons, progress.root, result);
  }

  // ---- a teacher following one hand-in ----

  private async renderFollow(id: number): Promise<void> {
    for (const r of this.recorders.splice(0)) r.dispose();
    let status;
    try {
      status = await handinStatus(this.client, this.room, id);
    } catch (err) {
      this.followed = undefined;
      this.render();
      return void toast(errorText(err), "error");
    }
    if (this.followed !== id) return;
    const h = status.handin;
    const back = el("button", { type: "button", className: "secondary back-list", textContent: "← Tous les devoirs" });
    back.addEventListener("click", () => {
      this.followed = undefined;
      this.render();
      this.body.querySelector<HTMLElement>(`.handin-item[data-handin="${h.handin}"] button.follow`)?.focus();
    });
    if (this.form) this.form.root.hidden = true;
    const zip = el("button", { type: "button", className: "zip", textContent: "Tout télécharger (.zip)", disabled: !h.counts?.handedIn });
    zip.addEventListener("click", () => void this.zip(h, zip));
    // Corrections being written stay open, with their text.
    const kept = new Map<string, string>();
    for (const d of this.body.querySelectorAll<HTMLDetailsElement>("li.pupil-row details.return[open]")) {
      kept.set(d.closest<HTMLElement>("li.pupil-row")!.dataset.pupil!, d.querySelector("textarea")?.value ?? "");
    }
    const rows = el("ul", { className: "pupil-rows", "aria-label": "Élèves" });
    for (const row of status.pupils) {
      const li = this.pupilRow(h, row);
      const text = kept.get(row.pupil.id);
      const details = li.querySelector<HTMLDetailsElement>("details.return");
      if (text !== undefined && details) {
        details.open = true;
        details.querySelector("textarea")!.value = text;
      }
      rows.append(li);
    }
    if (!status.pupils.length) rows.append(el("li", { className: "empty", textContent: "Aucun élève." }));
    // A deadline being changed stays open across live redraws.
    const changing = this.body.querySelector<HTMLDetailsElement>("details.handin-change[open]") !== null;
    const change = this.changeForm(h);
    change.open = changing;
    this.body.replaceChildren(
      el(
        "div",
        { className: "handin-follow", "data-handin": String(h.handin) },
        back,
        ...this.head(h),
        el("p", { className: "tally", textContent: tally(h) }),
        zip,
        change,
        rows,
      ),
    );
  }

  /** « Modifier la date limite »: the deadline moved, or late work taken or not. */
  private changeForm(h: HandinView): HTMLDetailsElement {
    const at = new Date(h.due);
    const pad = (n: number) => String(n).padStart(2, "0");
    const date = el("input", { type: "date", id: "change-date", required: true, value: `${at.getFullYear()}-${pad(at.getMonth() + 1)}-${pad(at.getDate())}` });
    const time = el("input", { type: "time", id: "change-time", required: true, value: `${pad(at.getHours())}:${pad(at.getMinutes())}` });
    const late = el("input", { type: "checkbox", id: "change-late", checked: h.late });
    const status = el("p", { className: "status", role: "status" });
    const submit = el("button", { type: "submit", textContent: "Enregistrer" });
    const form = el(
      "form",
      { className: "handin-form change-form" },
      el(
        "div",
        { className: "row when" },
        el("div", {}, el("label", { htmlFor: "change-date", textContent: "Date limite" }), date),
        el("div", {}, el("label", { htmlFor: "change-time", textContent: "Heure limite" }), time),
      ),
      el("label", { className: "check", htmlFor: "change-late" }, late, "Accepter les retards"),
      submit,
      status,
    );
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const due = new Date(`${date.value}T${time.value}`).getTime();
      if (!Number.isFinite(due) || due <= Date.now()) return void (status.textContent = "La date limite doit être à venir.");
      const change: { due?: number; late?: boolean } = {};
      if (due !== h.due) change.due = due;
      if (late.checked !== h.late) change.late = late.checked;
      if (change.due === undefined && change.late === undefined) return void (status.textContent = "Rien n'a changé.");
      submit.disabled = true;
      try {
        await handinChange(this.client, this.room, h.handin, change);
        toast(change.due !== undefined ? `Nouvelle date limite : ${dueWords(due)}.` : late.checked ? "Les retards sont acceptés." : "Les retards ne sont plus acceptés.");
        (form.parentElement as HTMLDetailsElement).open = false;
        (document.activeElement as HTMLElement | null)?.blur();
      } catch (err) {
        status.textContent = code(err) === "invalid_field" ? "La date limite doit être à venir (dans les 400 jours)." : errorText(err);
      } finally {
        submit.disabled = false;
      }
    });
    return el("details", { className: "handin-change" }, el("summary", { textContent: "Modifier la date limite" }), form);
  }

  private async zip(h: HandinView, button: HTMLButtonElement): Promise<void> {
    button.disabled = true;
    try {
      const got = await downloadBundle(this.client.httpUrl, await this.client.token(), this.room, h.handin);
      saveBlob(got.blob, got.name || `${h.title}.zip`);
    } catch (err) {
      toast(code(err) === "not_found" ? "Aucun travail rendu pour l'instant." : `Téléchargement impossible : ${fileErrorText(err)}`, "error");
    } finally {
      button.disabled = false;
    }
  }

  private pupilRow(h: HandinView, row: PupilRow): HTMLElement {
    const st = statusOf(row, h.due, true);
    const li = el(
      "li",
      { className: "pupil-row", "data-pupil": row.pupil.id },
      el("p", { className: "pupil" }, el("b", { textContent: row.pupil.name }), " ", el("span", { className: "handin-status", "data-status": st.key, textContent: st.text })),
    );
    if (row.file) {
      const when = row.submitted ? `Rendu ${dueWords(row.submitted)}${row.replaced ? ` (remplacé ${row.replaced} fois)` : ""}` : "";
      if (when) li.append(el("p", { className: "meta", textContent: when }));
      const b = downloadButton(this.client, this.room, row.file, "Télécharger");
      // The accessible name starts with the words shown (WCAG 2.5.3), then says whose.
      b.setAttribute("aria-label", `${b.textContent}, travail de ${row.pupil.name}`);
      li.append(b);
    }
    if (row.returned) {
      const r = row.returned;
      li.append(el("p", { className: "returned" }, el("b", { textContent: "Correction rendue" }), r.comment ? ` : ${r.comment}` : "", r.file ? ` (${r.file.name})` : ""));
    }
    if (row.file || Date.now() > h.due) li.append(this.returnForm(h, row));
    return li;
  }

  /** « Rendre une correction »: a file and/or a comment for one pupil. */
  private returnForm(h: HandinView, row: PupilRow): HTMLElement {
    const fileId = nextId("correction-file");
    const commentId = nextId("correction-comment");
    const file = el("input", { type: "file", id: fileId });
    const comment = el("textarea", { id: commentId, rows: 2, maxLength: 10000, value: row.returned?.comment ?? "" });
    const progress = new Progress(`Envoi de la correction de ${row.pupil.name}`);
    const status = el("p", { className: "status", role: "status" });
    const submit = el("button", { type: "submit", textContent: "Envoyer la correction" });
    const form = el(
      "form",
      { className: "return-form" },
      el("label", { htmlFor: fileId, textContent: "Fichier corrigé (facultatif)" }),
      file,
      el("label", { htmlFor: commentId, textContent: "Commentaire" }),
      comment,
      submit,
      progress.root,
      status,
    );
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const picked = file.files?.[0];
      const text = comment.value.trim();
      if (!picked && !text) return void (status.textContent = "Joignez un fichier corrigé ou écrivez un commentaire.");
      void this.guarded(async () => {
        submit.disabled = true;
        status.textContent = "";
        try {
          const up = picked ? await upload(this.client, this.room, picked, picked.name, progress) : undefined;
          await handinReturn(this.client, this.room, h.handin, row.pupil.id, { file: up?.file, comment: text });
          status.textContent = "Correction envoyée.";
          toast(`Correction rendue à ${row.pupil.name}.`);
          form.reset();
          (form.parentElement as HTMLDetailsElement).open = false;
          (document.activeElement as HTMLElement | null)?.blur();
          this.pending = true;
        } catch (err) {
          status.textContent = fileErrorText(err);
        } finally {
          submit.disabled = false;
        }
      });
    });
    return el("details", { className: "return" }, el("summary", { textContent: row.returned ? "Modifier la correction" : "Rendre une correction" }), form);
  }
}

// ---- the console's card ------------------------------------------------------------------------

/**
 * The console's « Devoirs à rendre »: for each of the teacher's classes,
 * the hand-ins with their counts and the zip; each opens in the app.
 */
export class HandinSummary {
  root = el("div", { className: "handin-summary" });

  constructor(private client: PreauClient) {}

  async show(): Promise<void> {
    const classes = this.client.hello?.classes ?? [];
    if (!classes.length) return void this.root.replaceChildren(el("p", { className: "empty", textContent: "Aucune classe." }));
    this.root.replaceChildren();
    for (const cls of classes) {
      const room = `${cls}/handin/main`;
      const section = el("section", { className: "handin-class", "data-class": cls }, el("h4", { textContent: `Classe ${cls}` }));
      this.root.append(section);
      let list: HandinView[] = [];
      try {
        list = await handins(this.client, room);
      } catch (err) {
        if (!isUnknownRoom(err)) {
          section.append(el("p", { className: "notice", textContent: errorText(err) }));
          continue;
        }
      }
      if (!list.length) section.append(el("p", { className: "empty", textContent: "Aucun devoir à rendre pour l'instant." }));
      const ul = el("ul", { className: "handin-list" });
      for (const h of list) {
        const zip = el("button", { type: "button", className: "secondary zip", textContent: "Tout télécharger (.zip)", disabled: !h.counts?.handedIn });
        zip.setAttribute("aria-label", `Tout télécharger (.zip) : ${h.title}`);
        zip.addEventListener("click", async () => {
          zip.disabled = true;
          try {
            const got = await downloadBundle(this.client.httpUrl, await this.client.token(), room, h.handin);
            saveBlob(got.blob, got.name || `${h.title}.zip`);
          } catch (err) {
            toast(`Téléchargement impossible : ${fileErrorText(err)}`, "error");
          } finally {
            zip.disabled = false;
          }
        });
        ul.append(
          el(
            "li",
            { className: "handin-item", "data-handin": String(h.handin) },
            el("b", { className: "title", textContent: h.title }),
            el("p", { className: "due", textContent: `À rendre ${dueWords(h.due)}` }),
            el("p", { className: "tally", textContent: tally(h) }),
            zip,
          ),
        );
      }
      const open = el("a", { className: "button secondary", href: `../?room=${encodeURIComponent(room)}`, target: "_blank", textContent: "Ouvrir dans l'application" });
      section.append(ul, open);
    }
  }
}
