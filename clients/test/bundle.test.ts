// The web app's first load stays small on a phone: what the browser must
// fetch before the sign-in form works (index.html, app.js and the chunks it
// imports statically, style.css, the favicon), gzipped as préau serves it,
// is held under a budget. The notes editor and preview, the homework
// diary, the messages', the announcements', the hand-ins', the documents' and the blog's views are chunks imported on demand and are not part of it. ARCHITECTURE.md states the budget.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync, statSync } from "node:fs";
import { join, posix } from "node:path";
import { CLIENTS_DIR } from "./harness.js";

/** Gzipped bytes of the first load, at most. Measured 76.8 KB on 2026-12-06 with the documents' and blog's styles (76.2 with the hand-ins' styles (75.3 before them, 74.8 before the announcements' styles)) (app.js, its static chunks: the client, Yjs, the forum, the offline copy, the agenda's week view, the feed's state and the bell; style.css). */
const FIRST_LOAD_BUDGET = 80 * 1024;
/** A chunk loaded on demand, at most (the notes editor, CodeMirror and Yjs bindings: 209 KB). */
const LAZY_CHUNK_BUDGET = 256 * 1024;

const dist = join(CLIENTS_DIR, "dist");

/** The files `file` (relative to dist/) imports statically, and those it imports with `import()`. */
function imports(file: string): { staticDeps: string[]; lazy: string[] } {
  const code = readFileSync(join(dist, file), "utf8");
  const dir = posix.dirname(file);
  const resolve = (spec: string) => posix.normalize(posix.join(dir, spec));
  const staticDeps = [...code.matchAll(/(?:^|[;}\s])import\s*(?:[\w{},*\s$]*?from\s*)?"(\.{1,2}\/[^"]+\.js)"/g)].map((m) => resolve(m[1]));
  const lazy = [...code.matchAll(/import\("(\.{1,2}\/[^"]+\.js)"\)/g)].map((m) => resolve(m[1]));
  return { staticDeps, lazy };
}

function gzipped(file: string): number {
  const gz = join(dist, `${file}.gz`);
  assert.ok(existsSync(gz), `${file}.gz is written by the bundle (préau serves it)`);
  return statSync(gz).size;
}

test("the web app's first load is under its budget, the editor is loaded on demand", () => {
  assert.ok(existsSync(join(dist, "app.js")), "run npm run build first");
  const seen = new Set<string>();
  const lazy = new Set<string>();
  const walk = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    const deps = imports(file);
    for (const l of deps.lazy) lazy.add(l);
    for (const d of deps.staticDeps) walk(d);
  };
  walk("app.js");
  const first = [...seen, "index.html", "style.css", "favicon.svg"];
  const total = first.reduce((sum, f) => sum + gzipped(f), 0);
  console.log(`first load: ${first.length} files, ${(total / 1024).toFixed(1)} KB gzipped (budget ${FIRST_LOAD_BUDGET / 1024} KB)`);
  assert.ok(total <= FIRST_LOAD_BUDGET, `first load ${total} bytes > budget ${FIRST_LOAD_BUDGET}`);
  // The editor is not in the first load: it is one of the chunks imported on demand.
  const editor = [...lazy].filter((f) => /editor-/.test(f));
  assert.equal(editor.length, 1, `the editor is a lazy chunk: ${[...lazy].join(", ")}`);
  assert.ok(![...seen].some((f) => /editor-|preview-/.test(f)), "neither the editor nor the preview is loaded first");
  // The homework diary and the home page (web/diary.ts) come when first shown, too.
  assert.equal([...lazy].filter((f) => /diary-/.test(f)).length, 1, `the diary is a lazy chunk: ${[...lazy].join(", ")}`);
  assert.ok(![...seen].some((f) => /diary-/.test(f)), "the diary is not loaded first");
  // So do the messages' views (conversations, the bell's feed, « Mon compte »: web/messages.ts);
  // the bell's count and the feed's state (web/inbox.ts, src/messages.ts) are in the first load.
  assert.equal([...lazy].filter((f) => /chunks\/messages-/.test(f)).length, 1, `the messages views are a lazy chunk: ${[...lazy].join(", ")}`);
  assert.ok(![...seen].some((f) => /chunks\/messages-/.test(f)), "the messages views are not loaded first");
  // So do the announcements' views (« Annonces », one announcement: web/announce.ts, src/announce.ts).
  assert.equal([...lazy].filter((f) => /chunks\/announce-/.test(f)).length, 1, `the announcements views are a lazy chunk: ${[...lazy].join(", ")}`);
  assert.ok(![...seen].some((f) => /chunks\/announce-/.test(f)), "the announcements views are not loaded first");
  // So do the hand-ins' views (« Devoirs à rendre »: web/handin.ts, src/handin.ts, src/files.ts).
  assert.equal([...lazy].filter((f) => /chunks\/handin-/.test(f)).length, 1, `the hand-ins views are a lazy chunk: ${[...lazy].join(", ")}`);
  assert.ok(![...seen].some((f) => /chunks\/handin-/.test(f)), "the hand-ins views are not loaded first");
  // So do the class's documents (« Documents de la classe »: web/docs.ts, src/docs.ts) and its blog (« Blog de la classe »: web/blog.ts, src/blog.ts).
  for (const [name, what] of [["docs", "the document space's view"], ["blog", "the blog's view"]]) {
    assert.equal([...lazy].filter((f) => new RegExp(`chunks/${name}-`).test(f)).length, 1, `${what} is a lazy chunk: ${[...lazy].join(", ")}`);
    assert.ok(![...seen].some((f) => new RegExp(`chunks/${name}-`).test(f)), `${what} is not loaded first`);
  }
  const firstCode = [...seen].map((f) => readFileSync(join(dist, f), "utf8")).join("\n");
  assert.ok(!firstCode.includes("Upload-Offset") && !firstCode.includes("upload-offset"), "the file uploads (src/files.ts) are not in the first load");
  for (const l of lazy) {
    const size = gzipped(l);
    assert.ok(size <= LAZY_CHUNK_BUDGET, `${l}: ${size} bytes > ${LAZY_CHUNK_BUDGET}`);
  }
});
