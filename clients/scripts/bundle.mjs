// Bundles the web app and the teacher console into dist/ (the folder the
// server serves with `preau serve --web-dir clients/dist`).
import { build } from "esbuild";
import { cpSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const dist = join(root, "dist");
rmSync(dist, { recursive: true, force: true });
mkdirSync(join(dist, "console"), { recursive: true });

await build({
  entryPoints: { app: join(root, "web/app.ts"), "console/console": join(root, "console/console.ts") },
  outdir: dist,
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "es2020",
  sourcemap: true,
  // Minified unless PREAU_MINIFY=0 (the source maps keep it debuggable).
  minify: process.env.PREAU_MINIFY !== "0",
  // The notes editor (CodeMirror, ~190 KB gzipped) is a chunk loaded when a
  // note is opened, not on the first load of the app.
  splitting: true,
  chunkNames: "chunks/[name]-[hash]",
  logLevel: "warning",
});
// The service worker: its own bundle (a classic script, not a module:
// every browser with service workers runs those), at the root of dist/ so
// that /sw.js controls the whole site. Workbox reads NODE_ENV to leave its
// development logging out.
await build({
  entryPoints: { sw: join(root, "web/sw.ts") },
  outdir: dist,
  bundle: true,
  format: "iife",
  platform: "browser",
  target: "es2020",
  sourcemap: true,
  minify: process.env.PREAU_MINIFY !== "0",
  define: { "process.env.NODE_ENV": JSON.stringify("production") },
  logLevel: "warning",
});
cpSync(join(root, "web/index.html"), join(dist, "index.html"));
cpSync(join(root, "web/style.css"), join(dist, "style.css"));
cpSync(join(root, "web/favicon.svg"), join(dist, "favicon.svg"));
cpSync(join(root, "console/index.html"), join(dist, "console/index.html"));
// KaTeX's stylesheet and fonts, for formulas in notes' previews.
mkdirSync(join(dist, "katex"), { recursive: true });
cpSync(join(root, "node_modules/katex/dist/katex.min.css"), join(dist, "katex/katex.min.css"));
cpSync(join(root, "node_modules/katex/dist/fonts"), join(dist, "katex/fonts"), { recursive: true });
// Gzipped copies beside each file: préau serves them to browsers that
// accept gzip (`precompressed_gzip`), a third of the bytes on a phone.
const gzipAll = (dir) => {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) gzipAll(path);
    else if (/\.(js|css|html|svg)$/.test(name)) writeFileSync(`${path}.gz`, gzipSync(readFileSync(path), { level: 9 }));
  }
};
gzipAll(dist);
console.log("bundled into dist/: index.html, app.js, sw.js, style.css, console/index.html, console/console.js");
