// Files over HTTP (protocol/README.md, "Files (HTTP)"): a resumable upload
// in chunks (create, PATCH each chunk at its `Upload-Offset`, done), the
// download of an attached file, and a hand-in's zip. Every route takes the
// user's token as `Authorization: Bearer`; refusals are typed (`FileError`
// with the server's `error` code and `message`). `fetch` only: browsers and
// Node 18+ alike. Pure data, no DOM.

/** A finished upload, as `POST /files/uploads/{id}/done` answers it (`file` is what a room's request attaches). */
export interface UploadedFile {
  file: string;
  /** The name sent, cleaned by the server. */
  name: string;
  /** The type read from the bytes. */
  type: string;
  /** Bytes as stored (an image is rewritten without its metadata, so it may differ from what was sent). */
  size: number;
  sha256: string;
}

/** An upload in progress (`POST /files/uploads`, `GET /files/uploads/{id}`). */
export interface UploadState {
  upload: string;
  offset: number;
  size: number;
  chunkBytes: number;
}

/** A file as events carry it (`FileRef`; `path` is the store's, clients have no use for it). */
export interface FileRef {
  id: string;
  name: string;
  type: string;
  size: number;
  sha256: string;
}

/**
 * A refusal of the file routes: `status` (0 for a network failure), the
 * server's `error` code (`bad_request`, `unauthorized`, `forbidden`,
 * `not_found`, `offset_mismatch`, `incomplete`, `too_large`,
 * `unsupported_type`, `unavailable`; `network` when no answer came) and
 * its `message`.
 */
export class FileError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    /** For `offset_mismatch`: where the upload stands (the reply's `Upload-Offset`). */
    readonly offset?: number,
  ) {
    super(message || code);
    this.name = "FileError";
  }
}

export interface UploadOptions {
  /** The class whose quota counts it (one of the user's; default: their first). */
  class?: string;
  /** Told after each chunk the server acknowledged: bytes stored so far, and the total. */
  onProgress?: (sent: number, total: number) => void;
  /** Aborts the upload (the promise rejects with the signal's reason; the server drops the half upload after its expiry). */
  signal?: AbortSignal;
  /** Chunks no larger than this, even if the server takes more (smaller chunks: finer progress, cheaper retries on a phone). */
  chunkBytes?: number;
  /** Consecutive failures (network, 503, a lost answer) tolerated before giving up [5]. */
  retries?: number;
  /** First pause before a retry, doubled each time up to 8 s [300 ms]. */
  backoffMs?: number;
  /** The `fetch` to use (tests inject failures through it). */
  fetch?: typeof fetch;
}

const trim = (base: string) => base.replace(/\/+$/, "");
const num = (v: unknown): number => (typeof v === "number" && Number.isFinite(v) ? v : 0);
const str = (v: unknown): string => (typeof v === "string" ? v : "");

/** The HTTP base of the server behind a WebSocket address: `wss://h/ws` → `https://h`. */
export function httpBase(wsUrl: string): string {
  const u = new URL(wsUrl);
  u.protocol = u.protocol === "wss:" ? "https:" : u.protocol === "ws:" ? "http:" : u.protocol;
  u.pathname = u.pathname.replace(/\/ws\/?$/, "/");
  u.search = "";
  u.hash = "";
  return trim(u.toString());
}

/** A FileError from a refusal's response (its JSON body, when there is one). */
async function refusal(r: Response): Promise<FileError> {
  let code = "", message = "";
  try {
    const body = (await r.json()) as { error?: unknown; message?: unknown };
    code = str(body.error);
    message = str(body.message);
  } catch {
    /* not JSON */
  }
  const offset = r.headers.get("upload-offset");
  return new FileError(r.status, code || `http_${r.status}`, message || r.statusText, offset !== null && /^\d+$/.test(offset) ? Number(offset) : undefined);
}

function decodeState(v: any): UploadState {
  return { upload: str(v?.upload), offset: num(v?.offset), size: num(v?.size), chunkBytes: num(v?.chunk_bytes) };
}

function decodeUploaded(v: any): UploadedFile {
  return { file: str(v?.file), name: str(v?.name), type: str(v?.type), size: num(v?.size), sha256: str(v?.sha256) };
}

/** A FileRef from an event or a reply (lenient: missing fields take defaults), or undefined. */
export function decodeFileRef(v: any): FileRef | undefined {
  if (!v || typeof v !== "object" || typeof v.id !== "string") return undefined;
  return { id: v.id, name: str(v.name) || "fichier", type: str(v.type), size: num(v.size), sha256: str(v.sha256) };
}

function aborted(signal?: AbortSignal): boolean {
  return signal?.aborted === true;
}

function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException("The upload was aborted.", "AbortError");
}

function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortReason(signal));
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortReason(signal!));
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** Whether a failure is worth a retry: no answer at all, or the store's `unavailable`. */
function transient(err: unknown): boolean {
  return err instanceof FileError ? err.status === 0 || err.status === 503 || err.status === 502 || err.status === 504 : true;
}

/**
 * Uploads `file` as `name`: `POST /files/uploads`, then each chunk of at
 * most `chunk_bytes` with `PATCH` at its `Upload-Offset`, then `done`. A
 * lost connection, a lost answer or a `409 offset_mismatch` (a chunk sent
 * twice) is resumed from where the server says the upload stands (`GET
 * /files/uploads/{id}`), with bounded retries and a growing pause. A
 * refusal (415 `unsupported_type`, 413 `too_large`...) rejects with a
 * `FileError`. The file is the uploader's alone until a room's request
 * attaches it.
 */
export async function uploadFile(baseUrl: string, token: string, file: Blob, name: string, options: UploadOptions = {}): Promise<UploadedFile> {
  const base = trim(baseUrl);
  const doFetch = options.fetch ?? fetch;
  const signal = options.signal;
  const retries = options.retries ?? 5;
  const backoff = options.backoffMs ?? 300;
  const auth = { authorization: `Bearer ${token}` };

  /** One HTTP exchange; no answer is a FileError with status 0 (an abort rethrows the signal's reason). */
  const call = async (path: string, init: RequestInit): Promise<Response> => {
    let r: Response;
    try {
      r = await doFetch(`${base}${path}`, { ...init, signal, headers: { ...auth, ...(init.headers as Record<string, string> | undefined) } });
    } catch (err) {
      if (aborted(signal)) throw abortReason(signal!);
      throw new FileError(0, "network", err instanceof Error ? err.message : String(err));
    }
    return r;
  };

  /** Runs `step`, retrying transient failures (`onRetry` first, e.g. to ask where the upload stands). */
  let failures = 0;
  const withRetries = async <T>(step: () => Promise<T>, onRetry?: () => Promise<void>): Promise<T> => {
    for (;;) {
      try {
        const out = await step();
        failures = 0;
        return out;
      } catch (err) {
        if (aborted(signal) || !transient(err) || failures >= retries) throw err;
        failures += 1;
        await pause(Math.min(8_000, backoff * 2 ** (failures - 1)), signal);
        if (onRetry) {
          try {
            await onRetry();
          } catch (again) {
            if (aborted(signal) || !transient(again)) throw again;
            // Asked again at the next retry.
          }
        }
      }
    }
  };

  const body = JSON.stringify(options.class ? { name, size: file.size, class: options.class } : { name, size: file.size });
  const created = await withRetries(async () => {
    const r = await call("/files/uploads", { method: "POST", headers: { "content-type": "application/json" }, body });
    if (r.status !== 201 && r.status !== 200) throw await refusal(r);
    return decodeState(await r.json());
  });
  const id = created.upload;
  const size = file.size;
  const chunk = Math.max(1, Math.min(created.chunkBytes || 8 * 1024 * 1024, options.chunkBytes ?? Infinity));
  let offset = created.offset;
  options.onProgress?.(offset, size);

  /** Where the upload stands, from the server. */
  const ask = async () => {
    const r = await call(`/files/uploads/${id}`, { method: "GET" });
    if (r.status !== 200) throw await refusal(r);
    offset = decodeState(await r.json()).offset;
  };

  while (offset < size) {
    const next = await withRetries(async () => {
      const end = Math.min(size, offset + chunk);
      const r = await call(`/files/uploads/${id}`, {
        method: "PATCH",
        headers: { "upload-offset": String(offset), "content-type": "application/offset+octet-stream" },
        body: file.slice(offset, end),
      });
      if (r.status === 409) {
        const err = await refusal(r);
        // Sent twice (its answer was lost): the server says where to go on.
        if (err.code === "offset_mismatch") return err.offset ?? (await ask(), offset);
        throw err;
      }
      if (r.status !== 200 && r.status !== 204) throw await refusal(r);
      const header = r.headers.get("upload-offset");
      if (header !== null && /^\d+$/.test(header)) return Number(header);
      return decodeState(await r.json()).offset;
    }, ask);
    offset = next;
    options.onProgress?.(offset, size);
  }

  return withRetries(async () => {
    const r = await call(`/files/uploads/${id}/done`, { method: "POST" });
    if (r.status !== 201 && r.status !== 200) throw await refusal(r);
    return decodeUploaded(await r.json());
  });
}

/** Where an upload stands (`GET /files/uploads/{id}`). */
export async function uploadState(baseUrl: string, token: string, upload: string): Promise<UploadState> {
  const r = await fetch(`${trim(baseUrl)}/files/uploads/${upload}`, { headers: { authorization: `Bearer ${token}` } });
  if (r.status !== 200) throw await refusal(r);
  return decodeState(await r.json());
}

/** Drops an unfinished (or unattached) upload (`DELETE /files/uploads/{id}`). */
export async function cancelUpload(baseUrl: string, token: string, upload: string): Promise<void> {
  const r = await fetch(`${trim(baseUrl)}/files/uploads/${upload}`, { method: "DELETE", headers: { authorization: `Bearer ${token}` } });
  if (r.status !== 204 && r.status !== 200 && r.status !== 404) throw await refusal(r);
}

/** The address of an attached file (the token goes in the header: fetch it, never link it). */
export function fileUrl(baseUrl: string, fileId: string, room: string, inline = false): string {
  return `${trim(baseUrl)}/files/${encodeURIComponent(fileId)}?room=${encodeURIComponent(room)}${inline ? "&inline=1" : ""}`;
}

/** The address of a zip of the files a kind groups under `key` (a hand-in's submissions: `key` is the hand-in). */
export function bundleUrl(baseUrl: string, room: string, key: string | number): string {
  return `${trim(baseUrl)}/files/bundle?room=${encodeURIComponent(room)}&key=${encodeURIComponent(String(key))}`;
}

/** A downloaded file: its bytes and the name the server gives it (`Content-Disposition`). */
export interface Downloaded {
  blob: Blob;
  name: string;
  type: string;
}

/** The file name of a `Content-Disposition` header (`filename*=UTF-8''…` first), or "". */
export function dispositionName(header: string | null): string {
  if (!header) return "";
  const star = /filename\*\s*=\s*(?:UTF-8|utf-8)''([^;]+)/.exec(header);
  if (star) {
    try {
      return decodeURIComponent(star[1].trim());
    } catch {
      /* a malformed escape: fall back to the plain name */
    }
  }
  const plain = /filename\s*=\s*"?([^";]+)"?/.exec(header);
  return plain ? plain[1].trim() : "";
}

async function get(url: string, token: string, signal?: AbortSignal): Promise<Downloaded> {
  let r: Response;
  try {
    r = await fetch(url, { headers: { authorization: `Bearer ${token}` }, signal });
  } catch (err) {
    if (aborted(signal)) throw abortReason(signal!);
    throw new FileError(0, "network", err instanceof Error ? err.message : String(err));
  }
  if (r.status !== 200) throw await refusal(r);
  const type = r.headers.get("content-type") ?? "";
  const blob = await r.blob();
  return { blob, name: dispositionName(r.headers.get("content-disposition")), type };
}

/**
 * An attached file's bytes (`GET /files/{id}?room=`), if the room's rules
 * let this user read it (`404 not_found` otherwise, never a hint which).
 * `inline`: asks for `Content-Disposition: inline` (images, audio, video, PDF).
 */
export async function downloadFile(baseUrl: string, token: string, fileId: string, room: string, options: { inline?: boolean; signal?: AbortSignal } = {}): Promise<Blob> {
  return (await get(fileUrl(baseUrl, fileId, room, options.inline), token, options.signal)).blob;
}

/** As downloadFile, with the name and type the server gives. */
export function fetchFile(baseUrl: string, token: string, fileId: string, room: string, options: { inline?: boolean; signal?: AbortSignal } = {}): Promise<Downloaded> {
  return get(fileUrl(baseUrl, fileId, room, options.inline), token, options.signal);
}

/** The zip of a hand-in's submissions (teachers, staff; `404 not_found` when there is nothing the user may have). */
export function downloadBundle(baseUrl: string, token: string, room: string, key: string | number, options: { signal?: AbortSignal } = {}): Promise<Downloaded> {
  return get(bundleUrl(baseUrl, room, key), token, options.signal);
}
