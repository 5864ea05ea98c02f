// The class's document space, « Documents de la classe » (protocol/README.md,
// "Documents (class space, kind `docs`)"): one room per class,
// `CLASS/docs/main`. Teachers put resources there, in folders; pupils share
// their work in « Travaux des élèves » (`eleves`) when their teachers allow
// it; parents read (never the pupils' folder). Files go over HTTP first
// (src/files.ts), then `doc_add` attaches them. The requests go through
// PreauClient.request; the decoders are lenient (unknown keys ignored,
// missing ones take defaults). Pure data, no DOM.

import type { EventFrame, PostOk, PreauClient, UserInfo } from "./client.js";
import { decodeFileRef, type FileRef } from "./files.js";

/** The pupils' folder, « Travaux des élèves »: always there, no subfolders. */
export const PUPILS_FOLDER = "eleves";

export interface DocFolder {
  folder: string;
  title: string;
  parent?: string;
}

export interface DocItem {
  /** Its id: the offset of its `doc_add`. */
  doc: number;
  folder: string;
  title: string;
  file: FileRef;
  by: UserInfo;
  ts: number;
  /** The diary entry it goes with (an offset in `CLASS/homework/diary`). */
  entry?: number;
  lesson?: string;
}

export interface DocsOk {
  room: string;
  pupilsShare: boolean;
  /** `eleves` first (not for parents), then the others by id. */
  folders: DocFolder[];
  /** In the order they were added. */
  docs: DocItem[];
}

export interface NewDoc {
  /** The id a finished upload gave. */
  file: string;
  /** A folder's id (absent or "": the root). */
  folder?: string;
  /** Absent: the file's name. */
  title?: string;
  entry?: number;
  lesson?: string;
  /** Idempotency key. */
  key?: string;
}

/** A document space's event, decoded (`docsEventOf`). */
export type DocsEvent =
  | { kind: "doc_folder"; folder: string; title: string; parent?: string }
  | { kind: "doc_add"; doc: number; folder: string; title: string; file?: FileRef; by: UserInfo; ts: number; entry?: number; lesson?: string }
  | { kind: "doc_remove"; doc: number; folder: string }
  | { kind: "docs_config"; pupilsShare: boolean };

/** The class's document space. */
export function docsRoom(cls: string): string {
  return `${cls}/docs/main`;
}

const str = (v: unknown, d = ""): string => (typeof v === "string" ? v : d);
const num = (v: unknown): number => (typeof v === "number" && Number.isFinite(v) ? v : 0);

function decodeUser(v: any): UserInfo {
  if (!v || typeof v !== "object") return { id: "", name: "", role: "student" };
  return { id: str(v.id), name: str(v.name, str(v.id)), role: str(v.role, "student") as UserInfo["role"] };
}

export function decodeDocFolder(v: any): DocFolder {
  const f: DocFolder = { folder: str(v?.folder), title: str(v?.title, str(v?.folder)) };
  if (typeof v?.parent === "string" && v.parent) f.parent = v.parent;
  return f;
}

export function decodeDocItem(v: any): DocItem | undefined {
  const file = decodeFileRef(v?.file);
  if (!file) return undefined;
  const d: DocItem = { doc: num(v?.doc), folder: str(v?.folder), title: str(v?.title) || file.name, file, by: decodeUser(v?.by), ts: num(v?.ts) };
  if (typeof v?.entry === "number") d.entry = v.entry;
  if (typeof v?.lesson === "string" && v.lesson) d.lesson = v.lesson;
  return d;
}

export function decodeDocsOk(v: any): DocsOk {
  return {
    room: str(v?.room),
    pupilsShare: v?.pupils_share === true,
    folders: Array.isArray(v?.folders) ? v.folders.map(decodeDocFolder).filter((f: DocFolder) => f.folder) : [],
    docs: Array.isArray(v?.docs) ? v.docs.map(decodeDocItem).filter((d: DocItem | undefined): d is DocItem => !!d) : [],
  };
}

/** The space as it is now (no join needed). */
export async function docs(client: PreauClient, room: string): Promise<DocsOk> {
  return decodeDocsOk(await client.request<unknown>("docs", { room }));
}

/** Creates a folder (teachers of the class, staff): `folder` its id (1–32 of `a-z 0-9 -`). */
export function docFolder(client: PreauClient, room: string, folder: string, title: string, parent?: string): Promise<PostOk> {
  return client.request<PostOk>("doc_folder", { room, folder, title, parent: parent || undefined });
}

/** Attaches a finished upload to the space (pupils: only to `eleves`, while sharing is on). */
export function docAdd(client: PreauClient, room: string, d: NewDoc): Promise<PostOk> {
  return client.request<PostOk>("doc_add", { room, file: d.file, folder: d.folder, title: d.title, entry: d.entry, lesson: d.lesson, key: d.key });
}

/** Removes a document (teachers: any; a pupil: their own); its file is deleted. */
export function docRemove(client: PreauClient, room: string, doc: number): Promise<PostOk> {
  return client.request<PostOk>("doc_remove", { room, doc });
}

/** Whether pupils may share into « Travaux des élèves » (teachers of the class, staff). */
export function docsConfig(client: PreauClient, room: string, pupilsShare: boolean): Promise<PostOk> {
  return client.request<PostOk>("docs_config", { room, pupils_share: pupilsShare });
}

/** A folder id from a title: « Chapitre 4 : fonctions » → `chapitre-4-fonctions` (at most 32). */
export function folderId(title: string): string {
  return (
    title
      .normalize("NFD")
      .replace(/[\u0300-\u036f]/g, "")
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, "-")
      .replace(/^-+|-+$/g, "")
      .slice(0, 32)
      .replace(/-+$/, "") || "dossier"
  );
}

/** A document space's event (`doc_*`, `docs_config`), or null. */
export function docsEventOf(ev: EventFrame): DocsEvent | null {
  const b = ev.body as Record<string, unknown>;
  switch (b.kind) {
    case "doc_folder": {
      const e: DocsEvent = { kind: "doc_folder", folder: str(b.folder), title: str(b.title, str(b.folder)) };
      if (typeof b.parent === "string" && b.parent) e.parent = b.parent;
      return e;
    }
    case "doc_add": {
      const file = decodeFileRef(b.file);
      const e: DocsEvent = { kind: "doc_add", doc: ev.offset, folder: str(b.folder), title: str(b.title) || file?.name || "", file, by: ev.from, ts: ev.ts };
      if (typeof b.entry === "number") e.entry = b.entry;
      if (typeof b.lesson === "string" && b.lesson) e.lesson = b.lesson;
      return e;
    }
    case "doc_remove":
      return { kind: "doc_remove", doc: num(b.doc), folder: str(b.folder) };
    case "docs_config":
      return { kind: "docs_config", pupilsShare: b.pupils_share === true };
    default:
      return null;
  }
}
