// Blogs, « Blog de la classe » (protocol/README.md, "Blogs (kind `blog`)"):
// `CLASS/blog/main` and a class's project blogs `CLASS/blog/NAME`. Posts
// carry a title, a text and files (images, recordings, videos) uploaded over
// HTTP first (src/files.ts); a publication circuit decides when readers see
// a pupil's post (« approve »: a teacher publishes it; « direct »: at once).
// Comments' texts come from the room's history (`blogComments`). The
// requests go through PreauClient.request; the decoders are lenient
// (unknown keys ignored, missing ones take defaults). Pure data, no DOM.

import type { EventFrame, PostOk, PreauClient, UserInfo } from "./client.js";
import { decodeFileRef, type FileRef } from "./files.js";

export type BlogCircuit = "approve" | "direct";
export type BlogPostStatus = "pending" | "published";

export interface BlogConfig {
  circuit: BlogCircuit;
  /** Every authenticated user of the school reads it (never writes). */
  public: boolean;
}

export interface BlogPost {
  /** Its id: the offset of its `blog_post`. */
  post: number;
  author: UserInfo;
  ts: number;
  title: string;
  text: string;
  files: FileRef[];
  status: BlogPostStatus;
  /** The offset of its live `blog_publish`. */
  published?: number;
  /** Live comments. */
  comments: number;
}

export interface BlogOk {
  room: string;
  config: BlogConfig;
  /** Newest first: the published ones, and the pending ones the user may see. */
  posts: BlogPost[];
}

/** `blog_write`'s reply: `offset` is the post; `published` its `blog_publish` if published at once. */
export interface WriteOk extends PostOk {
  published?: number;
}

export interface BlogComment {
  /** Its offset (what a teacher's `moderate` redact names). */
  offset: number;
  post: number;
  from: UserInfo;
  ts: number;
  text: string;
}

/** A blog's event, decoded (`blogEventOf`). */
export type BlogEvent =
  | { kind: "blog_config"; circuit: BlogCircuit; public: boolean }
  | { kind: "blog_post"; post: number; author: UserInfo; ts: number; title: string; text: string; files: FileRef[] }
  | { kind: "blog_publish"; offset: number; post: number; author: UserInfo; ts: number; title: string; text: string; files: FileRef[] }
  | ({ kind: "blog_comment" } & BlogComment);

/** The class's blog (`name`: a project blog). */
export function blogRoom(cls: string, name = "main"): string {
  return `${cls}/blog/${name}`;
}

const str = (v: unknown, d = ""): string => (typeof v === "string" ? v : d);
const num = (v: unknown): number => (typeof v === "number" && Number.isFinite(v) ? v : 0);

function decodeUser(v: any): UserInfo {
  if (!v || typeof v !== "object") return { id: "", name: "", role: "student" };
  return { id: str(v.id), name: str(v.name, str(v.id)), role: str(v.role, "student") as UserInfo["role"] };
}

function files(v: unknown): FileRef[] {
  return Array.isArray(v) ? v.map(decodeFileRef).filter((f): f is FileRef => !!f) : [];
}

export function decodeBlogConfig(v: any): BlogConfig {
  return { circuit: v?.circuit === "direct" ? "direct" : "approve", public: v?.public === true };
}

export function decodeBlogPost(v: any): BlogPost {
  const p: BlogPost = {
    post: num(v?.post),
    author: decodeUser(v?.author),
    ts: num(v?.ts),
    title: str(v?.title),
    text: str(v?.text),
    files: files(v?.files),
    status: v?.status === "published" ? "published" : "pending",
    comments: num(v?.comments),
  };
  if (typeof v?.published === "number") p.published = v.published;
  return p;
}

export function decodeBlogOk(v: any): BlogOk {
  return { room: str(v?.room), config: decodeBlogConfig(v?.config), posts: Array.isArray(v?.posts) ? v.posts.map(decodeBlogPost) : [] };
}

/** The posts the user sees, newest first, and the settings (no join needed). */
export async function blog(client: PreauClient, room: string): Promise<BlogOk> {
  return decodeBlogOk(await client.request<unknown>("blog", { room }));
}

/** Writes a post (joined): `files`, ids of finished uploads (images, audio, video; at most 10). */
export function blogWrite(client: PreauClient, room: string, post: { title: string; text: string; files?: string[]; key?: string }): Promise<WriteOk> {
  return client.request<WriteOk>("blog_write", { room, title: post.title, text: post.text, files: post.files?.length ? post.files : undefined, key: post.key });
}

/** Publishes a pending post (teachers of the class, staff; joined). */
export function blogApprove(client: PreauClient, room: string, post: number): Promise<PostOk> {
  return client.request<PostOk>("blog_approve", { room, post });
}

/** Unpublishes a post: it is pending again (teachers of the class, staff; joined). */
export function blogUnpublish(client: PreauClient, room: string, post: number): Promise<PostOk> {
  return client.request<PostOk>("blog_unpublish", { room, post });
}

/** Deletes a post with its comments and files (its author, teachers of the class, staff; joined). */
export function blogDelete(client: PreauClient, room: string, post: number): Promise<PostOk> {
  return client.request<PostOk>("blog_delete", { room, post });
}

/** Comments on a published post (pupils and teachers of the class, staff; joined). */
export function blogComment(client: PreauClient, room: string, post: number, text: string): Promise<PostOk> {
  return client.request<PostOk>("blog_comment", { room, post, text });
}

/** Deletes a comment (a teacher: any; a pupil: her own): a redaction. */
export function blogDeleteComment(client: PreauClient, room: string, comment: number): Promise<PostOk> {
  return client.moderate(room, { kind: "redact", offset: comment });
}

/** The blog's settings (teachers of the class, staff; joined). */
export function blogConfig(client: PreauClient, room: string, config: BlogConfig): Promise<PostOk> {
  return client.request<PostOk>("blog_config", { room, circuit: config.circuit, public: config.public });
}

/** A blog's event (`blog_*`), or null. */
export function blogEventOf(ev: EventFrame): BlogEvent | null {
  const b = ev.body as Record<string, unknown>;
  switch (b.kind) {
    case "blog_config":
      return { kind: "blog_config", ...decodeBlogConfig(b) };
    case "blog_post":
      return { kind: "blog_post", post: ev.offset, author: ev.from, ts: ev.ts, title: str(b.title), text: str(b.text), files: files(b.files) };
    case "blog_publish":
      return { kind: "blog_publish", offset: ev.offset, post: num(b.post), author: ev.from, ts: ev.ts, title: str(b.title), text: str(b.text), files: files(b.files) };
    case "blog_comment":
      return { kind: "blog_comment", offset: ev.offset, post: num(b.post), from: ev.from, ts: ev.ts, text: str(b.text) };
    default:
      return null;
  }
}

/** The live comments of a blog, by post (read forwards through `history`; redacted ones are tombstones, skipped). */
export async function blogComments(client: PreauClient, room: string): Promise<Map<number, BlogComment[]>> {
  const out = new Map<number, BlogComment[]>();
  let after = 0;
  for (let pages = 0; pages < 100; pages++) {
    const h = await client.history(room, { after, limit: 200 });
    for (const ev of h.events) {
      const e = blogEventOf(ev);
      if (e?.kind !== "blog_comment") continue;
      const { kind: _, ...c } = e;
      const list = out.get(c.post) ?? [];
      list.push(c);
      out.set(c.post, list);
    }
    if (!h.more || !h.events.length) break;
    after = h.events[h.events.length - 1].offset;
  }
  return out;
}
