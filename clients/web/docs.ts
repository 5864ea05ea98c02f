// « Documents de la classe » in the web app (a chunk loaded when first
// shown): the class's document space, `CLASS/docs/main`.
//
// - everyone who reads it: the folders, each document with who added it and
//   when, « Télécharger » (fetched with the token, saved from a `blob:` URL);
// - a teacher (and staff): « Nouveau dossier », « Ajouter un document » (a
//   file, its title, its folder; the upload's progress), « Supprimer », and
//   « Les élèves peuvent partager »;
// - a pupil: « Partager un document » into « Travaux des élèves » while
//   their teachers allow it, and « Supprimer » for their own;
// - a parent: read-only (the server never shows them the pupils' folder).
//
// The room is joined: its `doc_*` and `docs_config` events refresh what is
// shown, live.

import { PreauError, type PreauClient } from "../src/client.js";
import { FileError } from "../src/files.js";
import { PUPILS_FOLDER, docAdd, docFolder, docRemove, docs, docsConfig, folderId, type DocFolder, type DocItem, type DocsOk } from "../src/docs.js";
import { el, errorText, isModerator, isUnknownRoom, roomTitle, toast, type RoomHooks } from "./common.js";
import { downloadButton, dueWords, fileErrorText, nextId, Progress, upload } from "./handin.js";

function code(err: unknown): string {
  return err instanceof PreauError || err instanceof FileError ? err.code : "";
}

/** Why adding a document failed, in words. */
function addErrorText(err: unknown): string {
  if (err instanceof FileError) return fileErrorText(err);
  switch (code(err)) {
    case "forbidden":
      return "Le partage de documents par les élèves est fermé pour l'instant.";
    case "unknown_target":
      return "Ce dossier n'existe plus : rechargez la page.";
    case "invalid_field":
      return "L'espace est plein (2 000 documents au plus).";
  }
  return errorText(err);
}

/** « Ajouté par Mme Durand le dimanche 6 décembre à 10 h 05 ». */
export function addedWords(d: DocItem, now = Date.now()): string {
  return `Ajouté par ${d.by.name} ${dueWords(d.ts, now)}`;
}

/** A two-step button: a first click asks « Confirmer la suppression », a second one does it. */
function confirmButton(label: string, aria: string, run: () => Promise<void>): HTMLButtonElement {
  const b = el("button", { type: "button", className: "secondary delete remove", textContent: label });
  b.setAttribute("aria-label", `${label} : ${aria}`);
  let armed = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  b.addEventListener("click", async () => {
    if (!armed) {
      armed = true;
      b.textContent = "Confirmer la suppression";
      b.setAttribute("aria-label", `Confirmer la suppression : ${aria}`);
      timer = setTimeout(() => {
        armed = false;
        b.textContent = label;
        b.setAttribute("aria-label", `${label} : ${aria}`);
      }, 5000);
      return;
    }
    clearTimeout(timer);
    b.disabled = true;
    try {
      await run();
    } finally {
      b.disabled = false;
    }
  });
  return b;
}

/** The class's « Documents de la classe ». */
export class DocsRoomView {
  root: HTMLElement;
  private body = el("div", { className: "docs-body" });
  private tools = el("div", { className: "docs-tools" });
  private notice = el("p", { className: "notice", role: "alert", hidden: true });
  private started = false;
  private unsubscribe: Array<() => void> = [];
  private timer?: ReturnType<typeof setTimeout>;
  private teacher: boolean;
  private role: string;
  private space?: DocsOk;
  /** An upload is under way: a refresh waits, so the progress and the input are not swept away. */
  private busy = 0;
  private pending = false;
  // The teacher's and the pupil's forms (kept across refreshes).
  private folderForm?: HTMLDetailsElement;
  private addForm?: HTMLDetailsElement;
  private addFolder?: HTMLSelectElement;
  private parentSelect?: HTMLSelectElement;
  private share?: HTMLInputElement;
  private shareForm?: HTMLDetailsElement;
  private shareClosed = el("p", { className: "hint share-closed", hidden: true, textContent: "Le partage de documents par les élèves est fermé pour l'instant." });

  constructor(
    private client: PreauClient,
    private room: string,
    private hooks: RoomHooks,
  ) {
    this.role = client.user?.role ?? "";
    this.teacher = isModerator(this.role);
    this.root = el("section", { className: "docs-view", "data-room": room }, el("h2", { textContent: roomTitle(room) }), this.notice, this.tools);
    if (this.teacher) this.teacherTools();
    else if (this.role === "student") this.pupilTools();
    this.body.append(el("p", { className: "empty", textContent: "Chargement…" }));
    this.root.append(this.body);
  }

  show(): void {
    if (this.started) return void this.refresh();
    this.started = true;
    this.unsubscribe.push(
      this.client.on("event", (ev) => {
        const k = String(ev.body.kind);
        if (ev.room === this.room && (k.startsWith("doc_") || k === "docs_config")) this.soon();
      }),
      this.client.on("reset", ({ room }) => room === this.room && this.soon()),
      this.client.on("open", () => this.soon()),
    );
    void this.start();
  }

  dispose(): void {
    clearTimeout(this.timer);
    for (const off of this.unsubscribe.splice(0)) off();
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

  private async refresh(): Promise<void> {
    if (this.busy) return void (this.pending = true);
    this.pending = false;
    try {
      this.space = await docs(this.client, this.room);
      this.setNotice("");
    } catch (err) {
      if (isUnknownRoom(err)) return this.hooks.unknown();
      this.setNotice(`Documents indisponibles : ${errorText(err)}`);
      return;
    }
    this.render();
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

  // ---- the forms ----

  /** « Nouveau dossier », « Ajouter un document », « Les élèves peuvent partager ». */
  private teacherTools(): void {
    // « Nouveau dossier »: a title, and where.
    const title = el("input", { id: "docs-folder-title", maxLength: 200, autocomplete: "off", required: true });
    this.parentSelect = el("select", { id: "docs-folder-parent" });
    const fstatus = el("p", { className: "status", role: "status" });
    const fsubmit = el("button", { type: "submit", textContent: "Créer le dossier" });
    const fform = el(
      "form",
      { className: "docs-form" },
      el("label", { htmlFor: title.id, textContent: "Nom du dossier" }),
      title,
      el("label", { htmlFor: this.parentSelect.id, textContent: "Dans" }),
      this.parentSelect,
      fsubmit,
      fstatus,
    );
    fform.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const name = title.value.trim();
      if (!name) return void (fstatus.textContent = "Indiquez le nom du dossier.");
      const taken = new Set((this.space?.folders ?? []).map((f) => f.folder));
      let id = folderId(name);
      for (let i = 2; taken.has(id) || id === PUPILS_FOLDER; i++) id = `${folderId(name).slice(0, 28)}-${i}`;
      fsubmit.disabled = true;
      fstatus.textContent = "";
      try {
        await docFolder(this.client, this.room, id, name, this.parentSelect!.value || undefined);
        toast(`Dossier « ${name} » créé.`);
        title.value = "";
        this.folderForm!.open = false;
        this.soon();
      } catch (err) {
        fstatus.textContent = code(err) === "invalid_field" ? "Ce dossier ne peut pas être créé ici (200 dossiers au plus)." : errorText(err);
      } finally {
        fsubmit.disabled = false;
      }
    });
    this.folderForm = el("details", { className: "docs-new-folder" }, el("summary", { textContent: "Nouveau dossier" }), fform);

    // « Ajouter un document »: a file, its title, its folder.
    const file = el("input", { type: "file", id: "docs-file", required: true });
    const dtitle = el("input", { id: "docs-title", maxLength: 200, autocomplete: "off" });
    this.addFolder = el("select", { id: "docs-folder" });
    this.addForm = this.uploadForm("Ajouter un document", file, dtitle, this.addFolder, "Ajouter");

    // « Les élèves peuvent partager ».
    this.share = el("input", { type: "checkbox", id: "docs-share" });
    this.share.addEventListener("change", async () => {
      const on = this.share!.checked;
      this.share!.disabled = true;
      try {
        await docsConfig(this.client, this.room, on);
        toast(on ? "Les élèves peuvent partager leurs documents dans « Travaux des élèves »." : "Le partage par les élèves est fermé.");
      } catch (err) {
        this.share!.checked = !on;
        toast(errorText(err), "error");
      } finally {
        this.share!.disabled = false;
      }
    });
    const share = el("label", { className: "check docs-share", htmlFor: this.share.id }, this.share, "Les élèves peuvent partager");
    this.tools.append(this.addForm, this.folderForm, share);
  }

  /** A pupil's « Partager un document » (into « Travaux des élèves »). */
  private pupilTools(): void {
    const file = el("input", { type: "file", id: "docs-share-file", required: true });
    const title = el("input", { id: "docs-share-title", maxLength: 200, autocomplete: "off" });
    this.shareForm = this.uploadForm("Partager un document", file, title, undefined, "Partager");
    this.shareForm.hidden = true;
    this.tools.append(this.shareForm, this.shareClosed);
  }

  /** A form that uploads a file (its progress shown) and adds it: to `folder`'s choice, or to « Travaux des élèves ». */
  private uploadForm(label: string, file: HTMLInputElement, title: HTMLInputElement, folder: HTMLSelectElement | undefined, submitLabel: string): HTMLDetailsElement {
    const progress = new Progress(label);
    const status = el("p", { className: "status", role: "status" });
    const submit = el("button", { type: "submit", textContent: submitLabel });
    const form = el(
      "form",
      { className: "docs-form docs-upload" },
      el("label", { htmlFor: file.id, textContent: "Fichier" }),
      file,
      el("label", { htmlFor: title.id, textContent: "Titre (facultatif : le nom du fichier)" }),
      title,
    );
    if (folder) form.append(el("label", { htmlFor: folder.id, textContent: "Dossier" }), folder);
    form.append(submit, progress.root, status);
    const details = el("details", { className: "docs-add" }, el("summary", { textContent: label }), form);
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const picked = file.files?.[0];
      if (!picked) return void (status.textContent = "Choisissez un fichier.");
      void this.guarded(async () => {
        submit.disabled = true;
        status.textContent = "";
        try {
          const up = await upload(this.client, this.room, picked, picked.name, progress);
          const where = folder ? folder.value : PUPILS_FOLDER;
          await docAdd(this.client, this.room, { file: up.file, folder: where || undefined, title: title.value.trim() || undefined, key: `doc-${up.file}` });
          toast(`Document ajouté : ${title.value.trim() || up.name}.`);
          form.reset();
          if (folder) folder.value = where;
          details.open = false;
          this.pending = true;
        } catch (err) {
          status.textContent = addErrorText(err);
        } finally {
          submit.disabled = false;
        }
      });
    });
    return details;
  }

  // ---- the listing ----

  /** Folders in reading order: the root's children depth first, « Travaux des élèves » last. */
  private ordered(folders: DocFolder[]): Array<{ folder: DocFolder; depth: number }> {
    const out: Array<{ folder: DocFolder; depth: number }> = [];
    const known = new Set(folders.map((f) => f.folder));
    const visit = (parent: string | undefined, depth: number) => {
      for (const f of folders) {
        const p = f.parent && known.has(f.parent) ? f.parent : undefined;
        if (p === parent && f.folder !== PUPILS_FOLDER) {
          out.push({ folder: f, depth });
          if (depth < 6) visit(f.folder, depth + 1);
        }
      }
    };
    visit(undefined, 0);
    const pupils = folders.find((f) => f.folder === PUPILS_FOLDER);
    if (pupils) out.push({ folder: pupils, depth: 0 });
    return out;
  }

  private render(): void {
    const space = this.space!;
    const order = this.ordered(space.folders);
    // The forms' folder lists.
    const options = (sel: HTMLSelectElement, withPupils: boolean) => {
      const was = sel.value;
      sel.replaceChildren(
        el("option", { value: "", textContent: "Documents (racine)" }),
        ...order.filter((o) => withPupils || o.folder.folder !== PUPILS_FOLDER).map((o) => el("option", { value: o.folder.folder, textContent: `${"\u00a0\u00a0".repeat(o.depth)}${o.folder.title}` })),
      );
      if ([...sel.options].some((o) => o.value === was)) sel.value = was;
    };
    if (this.addFolder) options(this.addFolder, true);
    if (this.parentSelect) options(this.parentSelect, false);
    if (this.share && !this.share.disabled) this.share.checked = space.pupilsShare;
    if (this.shareForm) {
      this.shareForm.hidden = !space.pupilsShare;
      this.shareClosed.hidden = space.pupilsShare;
      if (!space.pupilsShare) this.shareForm.open = false;
    }

    const byFolder = new Map<string, DocItem[]>();
    for (const d of space.docs) {
      const list = byFolder.get(d.folder) ?? [];
      list.push(d);
      byFolder.set(d.folder, list);
    }
    const sections: HTMLElement[] = [];
    const rootDocs = byFolder.get("") ?? [];
    if (rootDocs.length) sections.push(this.folderSection(undefined, rootDocs, 0));
    for (const o of order) sections.push(this.folderSection(o.folder, byFolder.get(o.folder.folder) ?? [], o.depth));
    if (!space.docs.length && order.every((o) => o.folder.folder === PUPILS_FOLDER)) {
      sections.unshift(el("p", { className: "empty", textContent: "Aucun document pour l'instant." }));
    }
    this.body.replaceChildren(...sections);
  }

  private folderSection(folder: DocFolder | undefined, items: DocItem[], depth: number): HTMLElement {
    const id = nextId("docs-folder");
    const title = folder ? folder.title : "Documents";
    const heading = el(depth ? "h4" : "h3", { id, textContent: title });
    const section = el("section", { className: "docs-folder", "data-folder": folder?.folder ?? "" }, heading);
    section.setAttribute("aria-labelledby", id);
    if (depth) section.style.marginLeft = `${Math.min(depth, 3)}rem`;
    if (folder?.folder === PUPILS_FOLDER && this.role !== "student") {
      section.append(el("p", { className: "hint", textContent: this.space?.pupilsShare ? "Les élèves peuvent y partager leurs travaux." : "Les élèves ne peuvent pas y partager leurs travaux pour l'instant." }));
    }
    if (!items.length) {
      section.append(el("p", { className: "empty", textContent: "Aucun document." }));
      return section;
    }
    const ul = el("ul", { className: "docs-list" });
    for (const d of items) ul.append(this.docItem(d));
    section.append(ul);
    return section;
  }

  private docItem(d: DocItem): HTMLElement {
    const li = el("li", { className: "doc-item", "data-doc": String(d.doc) }, el("b", { className: "title", textContent: d.title }));
    if (d.lesson) li.append(el("p", { className: "lesson", textContent: `Leçon : ${d.lesson}` }));
    li.append(el("p", { className: "meta", textContent: addedWords(d) }));
    const dl = downloadButton(this.client, this.room, d.file, "Télécharger");
    dl.setAttribute("aria-label", `${dl.textContent}, ${d.title}`);
    const actions = el("div", { className: "doc-actions" }, dl);
    const mine = d.by.id === this.client.user?.id;
    if (this.teacher || (this.role === "student" && mine)) {
      actions.append(
        confirmButton("Supprimer", d.title, async () => {
          try {
            await docRemove(this.client, this.room, d.doc);
            toast(`Document supprimé : ${d.title}.`);
            this.soon();
          } catch (err) {
            toast(code(err) === "forbidden" ? "Vous ne pouvez supprimer que vos propres documents." : errorText(err), "error");
          }
        }),
      );
    }
    li.append(actions);
    return li;
  }
}
