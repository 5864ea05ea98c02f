// The web app's service worker (built to dist/sw.js and served at /sw.js,
// so its scope is the whole site). It keeps the app's own files, so that a
// pupil who reloads the page without network still gets the app, which
// then shows what it kept of the rooms (web/offline.ts, in IndexedDB:
// never here).
//
// Network first: online, every file comes from the server as before (a new
// build is picked up at once), and the copy in the cache is refreshed;
// offline, the copy answers. Routing and strategies are Workbox's.
//
// Only the app's shell is kept: index.html, app.js, its chunks, style.css,
// the favicon, KaTeX's stylesheet and fonts. Nothing else is ever cached:
// not /ws, /auth/*, /admin/*, /metrics, /healthz, /demo/*, /dev/*, nor any
// request that carries credentials, nor anything of another origin. The
// teacher console (/console/) is left out on purpose: it is a teacher's
// tool, used online, and it shows pupils' data that has no business in a
// cache.
//
// Type-checked on its own (tsconfig.sw.json: the worker's globals, not the
// page's).

import { clientsClaim } from "workbox-core";
import { registerRoute } from "workbox-routing";
import { NetworkFirst } from "workbox-strategies";
import { ExpirationPlugin } from "workbox-expiration";
import type { WorkboxPlugin } from "workbox-core/types.js";

declare const self: ServiceWorkerGlobalScope;

// A new build's worker takes over at once: network first means no two
// versions of the files are ever mixed by the cache while online.
void self.skipWaiting();
clientsClaim();

/** Fixed names: one entry each, replaced in place by every new build. */
const SHELL = new Set(["/", "/index.html", "/app.js", "/style.css", "/favicon.svg"]);
/** Paths never answered from the cache, whatever else matches (said twice, on purpose). */
const NEVER = /^\/(ws|auth|admin|metrics|healthz|demo|dev|console)(\/|$)/;

function kept(url: URL, request: Request): "shell" | "assets" | null {
  if (url.origin !== self.location.origin || request.method !== "GET") return null;
  if (request.headers.has("authorization") || NEVER.test(url.pathname)) return null;
  if (SHELL.has(url.pathname)) return "shell";
  // Hashed names (esbuild's chunks), KaTeX's files: source maps are for developers only.
  if (/^\/chunks\/[\w.-]+\.js$/.test(url.pathname)) return "assets";
  if (/^\/katex\/[\w./-]+\.(css|woff2?|ttf)$/.test(url.pathname)) return "assets";
  return null;
}

/**
 * The app is one page: `/`, `/?room=3B/chat/general` and `/index.html`
 * are the same file, kept once (the query string only tells the app which
 * room to open).
 */
const onePage: WorkboxPlugin = {
  cacheKeyWillBeUsed: async ({ request }) => {
    const url = new URL(request.url);
    return url.pathname === "/" || url.pathname === "/index.html" ? `${url.origin}/` : request;
  },
};

registerRoute(
  ({ url, request }) => kept(url, request) === "shell",
  new NetworkFirst({ cacheName: "preau-shell", plugins: [onePage] }),
);

// Every build leaves new chunk names behind: the oldest go.
registerRoute(
  ({ url, request }) => kept(url, request) === "assets",
  new NetworkFirst({
    cacheName: "preau-assets",
    plugins: [new ExpirationPlugin({ maxEntries: 80, maxAgeSeconds: 60 * 24 * 3600, purgeOnQuotaError: true })],
  }),
);
