// « Blog de la classe » in the web app (a chunk loaded when first shown):
// `CLASS/blog/main` (and a class's project blogs, `CLASS/blog/NAME`).
//
// - readers: the posts, newest first, each with its title, its text, its
//   images shown inline and its recordings in players (fetched with the
//   token, shown from `blob:` URLs), and the comments under published ones;
// - writers (pupils and teachers of the class, staff): « Écrire un article »
//   (a title, a text, images, sounds or videos from the file picker, or a
//   recording made on the spot), « Commenter »; a pupil's post waits « En
//   attente de validation » until a teacher publishes it, unless the blog's
//   circuit is « Publication directe »;
// - teachers (and staff): « Publier », « Retirer », « Supprimer » on posts,
//   « Supprimer » on comments, and the blog's settings (« Validation par
//   l'enseignant » / « Publication directe », « Ouvert à tout
//   l'établissement »);
// - parents, and readers from other classes of a blog open to the school:
//   read-only.
//
// The room is joined: its events refresh what is shown, live.

import { PreauError, type PreauClient } from "../src/client.js";
import { FileError, fetchFile, type FileRef } from "../src/files.js";
import {
  blog,
  blogApprove,
  blogComment,
  blogComments,
  blogConfig,
  blogDelete,
  blogDeleteComment,
  blogUnpublish,
  blogWrite,
  type BlogComment,
  type BlogConfig,
  type BlogOk,
  type BlogPost,
} from "../src/blog.js";
import { el, errorText, isModerator, isUnknownRoom, roomTitle, toast, type RoomHooks } from "./common.js";
import { canRecord, download, dueWords, fileErrorText, nextId, Progress, Recorder, sizeWords, upload } from "./handin.js";

const MEDIA_ACCEPT = "image/jpeg,image/png,image/webp,image/gif,audio/*,.mp3,.m4a,.ogg,.opus,.wav,.aac,.flac,video/*,.mp4,.webm,.mov";
const MAX_FILES = 10;

function code(err: unknown): string {
  return err instanceof PreauError || err instanceof FileError ? err.code : "";
}

/** Why writing failed, in words. */
function writeErrorText(err: unknown): string {
  if (err instanceof FileError) return fileErrorText(err);
  switch (code(err)) {
    case "invalid_field":
      return "Seules les images, les sons et les vidéos peuvent être joints à un article.";
    case "message_too_long":
      return "Le texte est trop long.";
    case "forbidden":
      return "Vous ne pouvez pas écrire dans ce blog.";
  }
  return errorText(err);
}

/** What a file is shown as: an image, a player, or a download. */
function mediaOf(f: FileRef): "image" | "audio" | "video" | "file" {
  if (f.type.startsWith("image/")) return "image";
  if (f.type.startsWith("audio/")) return "audio";
  // A browser's recording is typed video/webm or video/mp4: a small one is most likely a sound.
  if (f.type.startsWith("video/")) return /enregistrement/i.test(f.name) ? "audio" : "video";
  return "file";
}

/** A post being written: its files, chosen or recorded, before they are sent. */
interface Attachment {
  blob: Blob;
  name: string;
}

/** The class's blog. */
export class BlogRoomView {
  root: HTMLElement;
  private body = el("div", { className: "blog-body" });
  private notice = el("p", { className: "notice", role: "alert", hidden: true });
  private started = false;
  private unsubscribe: Array<() => void> = [];
  private timer?: ReturnType<typeof setTimeout>;
  private teacher: boolean;
  private writer: boolean;
  private state?: BlogOk;
  private comments = new Map<number, BlogComment[]>();
  /** `blob:` URLs of the posts' files, by file id (revoked when the view goes). */
  private urls = new Map<string, Promise<string>>();
  private busy = 0;
  private pending = false;
  private recorder?: Recorder;
  // « Écrire un article ».
  private write?: HTMLDetailsElement;
  private writeSubmit?: HTMLButtonElement;
  private attachments: Attachment[] = [];
  private attachList = el("ul", { className: "blog-attachments", "aria-label": "Fichiers joints" });
  // The settings (teachers).
  private settings?: HTMLDetailsElement;
  private circuit?: HTMLSelectElement;
  private publicBox?: HTMLInputElement;

  constructor(
    private client: PreauClient,
    private room: string,
    private hooks: RoomHooks,
  ) {
    const role = client.user?.role ?? "";
    const cls = room.split("/")[0];
    this.teacher = isModerator(role) && (role === "staff" || (client.hello?.classes ?? []).includes(cls));
    this.writer = role === "staff" || ((role === "student" || role === "teacher") && (client.hello?.classes ?? []).includes(cls));
    this.root = el("section", { className: "blog-view", "data-room": room }, el("h2", { textContent: roomTitle(room) }), this.notice);
    if (this.teacher) this.root.append(this.settingsForm());
    if (this.writer) this.root.append(this.writeForm());
    this.body.append(el("p", { className: "empty", textContent: "Chargement…" }));
    this.root.append(this.body);
  }

  show(): void {
    if (this.started) return void this.refresh();
    this.started = true;
    this.unsubscribe.push(
      this.client.on("event", (ev) => {
        if (ev.room === this.room) this.soon();
      }),
      this.client.on("reset", ({ room }) => room === this.room && this.soon()),
      this.client.on("open", () => this.soon()),
    );
    void this.start();
  }

  dispose(): void {
    clearTimeout(this.timer);
    for (const off of this.unsubscribe.splice(0)) off();
    this.recorder?.dispose();
    for (const u of this.urls.values()) void u.then((url) => url && URL.revokeObjectURL(url));
    this.urls.clear();
  }

  private async start(): Promise<void> {
    try {
      // Joined for the live events, and to write (a teacher's join opens the blog).
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

  /** A comment being typed is not swept away by a redraw. */
  private inUse(): boolean {
    if (this.busy) return true;
    for (const t of this.body.querySelectorAll<HTMLTextAreaElement>("form.blog-comment-form textarea")) {
      if (t.value.trim() || t === document.activeElement) return true;
    }
    return false;
  }

  private async refresh(): Promise<void> {
    if (this.inUse()) {
      this.pending = true;
      if (!this.busy) {
        clearTimeout(this.timer);
        this.timer = setTimeout(() => void this.refresh(), 1500);
      }
      return;
    }
    this.pending = false;
    try {
      const [state, comments] = await Promise.all([blog(this.client, this.room), blogComments(this.client, this.room)]);
      this.state = state;
      this.comments = comments;
      this.setNotice("");
    } catch (err) {
      if (isUnknownRoom(err)) return this.hooks.unknown();
      this.setNotice(`Blog indisponible : ${errorText(err)}`);
      return;
    }
    this.render();
  }

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

  // ---- the forms ----

  /** « Réglages du blog »: the circuit and whether the school reads it. */
  private settingsForm(): HTMLDetailsElement {
    this.circuit = el(
      "select",
      { id: "blog-circuit" },
      el("option", { value: "approve", textContent: "Validation par l'enseignant" }),
      el("option", { value: "direct", textContent: "Publication directe" }),
    );
    this.publicBox = el("input", { type: "checkbox", id: "blog-public" });
    const status = el("p", { className: "status", role: "status" });
    const submit = el("button", { type: "submit", textContent: "Enregistrer les réglages" });
    const form = el("form", { className: "blog-form" }, el("label", { htmlFor: this.circuit.id, textContent: "Articles des élèves" }), this.circuit, el("label", { className: "check", htmlFor: this.publicBox.id }, this.publicBox, "Ouvert à tout l'établissement"), submit, status);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const config: BlogConfig = { circuit: this.circuit!.value === "direct" ? "direct" : "approve", public: this.publicBox!.checked };
      submit.disabled = true;
      status.textContent = "";
      try {
        await blogConfig(this.client, this.room, config);
        toast(config.circuit === "direct" ? "Les articles des élèves sont publiés directement." : "Les articles des élèves attendent votre validation.");
        this.settings!.open = false;
      } catch (err) {
        status.textContent = errorText(err);
      } finally {
        submit.disabled = false;
      }
    });
    this.settings = el("details", { className: "blog-settings" }, el("summary", { textContent: "Réglages du blog" }), form);
    return this.settings;
  }

  /** « Écrire un article »: a title, a text, files chosen or recorded. */
  private writeForm(): HTMLDetailsElement {
    const title = el("input", { id: "blog-title", maxLength: 200, autocomplete: "off", required: true });
    const text = el("textarea", { id: "blog-text", rows: 5 });
    const files = el("input", { type: "file", id: "blog-files", multiple: true, accept: MEDIA_ACCEPT });
    files.addEventListener("change", () => {
      for (const f of files.files ?? []) this.attach(f, f.name);
      files.value = "";
    });
    const progress = new Progress("Envoi des fichiers");
    const status = el("p", { className: "status", role: "status" });
    this.writeSubmit = el("button", { type: "submit", textContent: "Publier" });
    const form = el(
      "form",
      { className: "blog-form blog-write" },
      el("label", { htmlFor: title.id, textContent: "Titre" }),
      title,
      el("label", { htmlFor: text.id, textContent: "Texte" }),
      text,
      el("label", { htmlFor: files.id, textContent: "Images, sons ou vidéos (10 au plus)" }),
      files,
      this.attachList,
    );
    if (canRecord()) {
      this.recorder = new Recorder(async (blob, name) => {
        this.attach(blob, name);
        return true;
      }, "Joindre l'enregistrement");
      form.append(this.recorder.root);
    }
    form.append(this.writeSubmit, progress.root, status);
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const t = title.value.trim();
      if (!t) return void (status.textContent = "Indiquez un titre.");
      void this.guarded(async () => {
        this.writeSubmit!.disabled = true;
        status.textContent = "";
        try {
          const ids: string[] = [];
          for (const a of this.attachments) ids.push((await upload(this.client, this.room, a.blob, a.name, progress)).file);
          const ok = await blogWrite(this.client, this.room, { title: t, text: text.value, files: ids, key: `blog-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}` });
          toast(ok.published !== undefined ? "Article publié." : "Article envoyé : il sera publié après validation par l'enseignant.");
          form.reset();
          this.attachments = [];
          this.renderAttachments();
          this.write!.open = false;
          this.pending = true;
        } catch (err) {
          status.textContent = writeErrorText(err);
        } finally {
          this.writeSubmit!.disabled = false;
        }
      });
    });
    this.write = el("details", { className: "blog-new" }, el("summary", { textContent: "Écrire un article" }), form);
    return this.write;
  }

  private attach(blob: Blob, name: string): void {
    if (this.attachments.length >= MAX_FILES) return toast(`${MAX_FILES} fichiers au plus par article.`, "error");
    this.attachments.push({ blob, name });
    this.renderAttachments();
  }

  private renderAttachments(): void {
    this.attachList.replaceChildren(
      ...this.attachments.map((a, i) => {
        const remove = el("button", { type: "button", className: "secondary", textContent: "Retirer" });
        remove.setAttribute("aria-label", `Retirer ${a.name}`);
        remove.addEventListener("click", () => {
          this.attachments.splice(i, 1);
          this.renderAttachments();
        });
        return el("li", {}, el("span", { textContent: `${a.name} (${sizeWords(a.blob.size)})` }), remove);
      }),
    );
  }

  // ---- the posts ----

  private render(): void {
    const state = this.state!;
    // The settings form shows the blog's settings (unless being changed).
    if (this.settings && !this.settings.open) {
      this.circuit!.value = state.config.circuit;
      this.publicBox!.checked = state.config.public;
    }
    if (this.writeSubmit) this.writeSubmit.textContent = this.teacher || state.config.circuit === "direct" ? "Publier" : "Envoyer pour validation";
    if (!state.posts.length) {
      this.body.replaceChildren(el("p", { className: "empty", textContent: "Aucun article pour l'instant." }));
      return;
    }
    const list = el("div", { className: "blog-posts" });
    for (const p of state.posts) list.append(this.postView(p));
    this.body.replaceChildren(list);
  }

  private postView(p: BlogPost): HTMLElement {
    const headingId = nextId("blog-post");
    const article = el("article", { className: "blog-post", "data-post": String(p.post), "data-status": p.status });
    article.setAttribute("aria-labelledby", headingId);
    article.append(el("h3", { id: headingId, textContent: p.title }));
    if (p.status === "pending") article.append(el("p", { className: "blog-status", textContent: "En attente de validation" }));
    article.append(el("p", { className: "meta", textContent: `Par ${p.author.name}, ${dueWords(p.ts)}` }));
    if (p.text) article.append(el("p", { className: "blog-text", textContent: p.text }));
    if (p.files.length) {
      const media = el("div", { className: "blog-media" });
      for (const f of p.files) media.append(this.fileView(f));
      article.append(media);
    }
    const actions = el("div", { className: "blog-actions" });
    const mine = p.author.id === this.client.user?.id;
    if (this.teacher) {
      if (p.status === "pending") actions.append(this.action("Publier", p, "approve", () => blogApprove(this.client, this.room, p.post), "Article publié."));
      else actions.append(this.action("Retirer", p, "unpublish", () => blogUnpublish(this.client, this.room, p.post), "Article retiré : il n'est plus visible des lecteurs."));
    }
    if (this.teacher || (this.writer && mine)) actions.append(this.action("Supprimer", p, "delete", () => blogDelete(this.client, this.room, p.post), "Article supprimé.", true));
    if (actions.childElementCount) article.append(actions);
    if (p.status === "published") article.append(this.commentsView(p));
    return article;
  }

  /** A post's button: « Publier », « Retirer », « Supprimer » (this one asks to confirm). */
  private action(label: string, p: BlogPost, cls: string, run: () => Promise<unknown>, done: string, confirm = false): HTMLButtonElement {
    const b = el("button", { type: "button", className: `${cls}${confirm || cls === "unpublish" ? " secondary" : ""}`, textContent: label });
    b.setAttribute("aria-label", `${label} : ${p.title}`);
    let armed = false;
    b.addEventListener("click", async () => {
      if (confirm && !armed) {
        armed = true;
        b.textContent = "Confirmer la suppression";
        b.setAttribute("aria-label", `Confirmer la suppression : ${p.title}`);
        return;
      }
      b.disabled = true;
      try {
        await run();
        toast(done);
        this.soon();
      } catch (err) {
        toast(errorText(err), "error");
        b.disabled = false;
      }
    });
    return b;
  }

  /** An image shown inline, a player, or a download: fetched with the token. */
  private fileView(f: FileRef): HTMLElement {
    const kind = mediaOf(f);
    if (kind === "file") {
      const b = el("button", { type: "button", className: "secondary download", textContent: `Télécharger ${f.name} (${sizeWords(f.size)})` });
      b.addEventListener("click", () => void download(this.client, this.room, f, b));
      return b;
    }
    const holder = el("figure", { className: `blog-file blog-${kind}`, "data-file": f.id });
    const media =
      kind === "image"
        ? el("img", { alt: f.name.replace(/\.[a-z0-9]+$/i, ""), loading: "lazy", decoding: "async" })
        : el(kind, { controls: true, preload: "metadata" });
    if (kind !== "image") media.setAttribute("aria-label", `${kind === "audio" ? "Écouter" : "Regarder"} : ${f.name}`);
    holder.append(media);
    if (kind !== "image") holder.append(el("figcaption", { textContent: f.name }));
    let url = this.urls.get(f.id);
    if (!url) {
      url = this.client
        .token()
        .then((token) => fetchFile(this.client.httpUrl, token, f.id, this.room, { inline: true }))
        .then((got) => URL.createObjectURL(got.blob))
        .catch(() => {
          this.urls.delete(f.id);
          return "";
        });
      this.urls.set(f.id, url);
    }
    void url.then((u) => {
      if (u) (media as HTMLImageElement | HTMLMediaElement).src = u;
      else holder.replaceChildren(el("p", { className: "hint", textContent: `${f.name} : fichier indisponible.` }));
    });
    return holder;
  }

  /** « Commentaires (2) », each with its author; « Commenter » for the class. */
  private commentsView(p: BlogPost): HTMLElement {
    const list = this.comments.get(p.post) ?? [];
    const headingId = nextId("blog-comments");
    const section = el("section", { className: "blog-comments" }, el("h4", { id: headingId, textContent: list.length ? `Commentaires (${list.length})` : "Commentaires" }));
    section.setAttribute("aria-labelledby", headingId);
    if (list.length) {
      const ul = el("ul", { className: "comment-list" });
      for (const c of list) {
        const li = el("li", { className: "blog-comment", "data-offset": String(c.offset) }, el("p", {}, el("b", { textContent: c.from.name }), ` · ${dueWords(c.ts)}`), el("p", { className: "comment-text", textContent: c.text }));
        if (this.teacher || c.from.id === this.client.user?.id) {
          const del = el("button", { type: "button", className: "secondary delete delete-comment", textContent: "Supprimer" });
          del.setAttribute("aria-label", `Supprimer le commentaire de ${c.from.name}`);
          del.addEventListener("click", async () => {
            del.disabled = true;
            try {
              await blogDeleteComment(this.client, this.room, c.offset);
              toast("Commentaire supprimé.");
              this.soon();
            } catch (err) {
              toast(errorText(err), "error");
              del.disabled = false;
            }
          });
          li.append(del);
        }
        ul.append(li);
      }
      section.append(ul);
    }
    if (this.writer) {
      const id = nextId("blog-comment-text");
      const text = el("textarea", { id, rows: 2 });
      const submit = el("button", { type: "submit", textContent: "Commenter" });
      const form = el("form", { className: "blog-comment-form" }, el("label", { htmlFor: id, textContent: "Votre commentaire" }), text, submit);
      form.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        const t = text.value.trim();
        if (!t) return;
        submit.disabled = true;
        try {
          await blogComment(this.client, this.room, p.post, t);
          text.value = "";
          text.blur();
          this.soon();
        } catch (err) {
          toast(errorText(err), "error");
        } finally {
          submit.disabled = false;
        }
      });
      section.append(form);
    }
    return section;
  }
}
