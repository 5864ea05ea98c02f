// Bundles the web app and the teacher console into dist/ (the folder the
// server serves with `preau serve --web-dir clients/dist`).
import { build } from "esbuild";
import { cpSync, mkdirSync, rmSync } from "node:fs";
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
  minify: process.env.PREAU_MINIFY === "1",
  logLevel: "warning",
});
cpSync(join(root, "web/index.html"), join(dist, "index.html"));
cpSync(join(root, "web/style.css"), join(dist, "style.css"));
cpSync(join(root, "web/favicon.svg"), join(dist, "favicon.svg"));
cpSync(join(root, "console/index.html"), join(dist, "console/index.html"));
console.log("bundled into dist/: index.html, app.js, style.css, console/index.html, console/console.js");
