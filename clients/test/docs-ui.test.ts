// « Documents de la classe » in the browser (Debian's Chromium through
// playwright-core, the real server serving dist/ with small upload chunks,
// its school directory synced), at phone and desktop sizes, a teacher, two
// pupils' and a parent's browsers: the teacher opens the class's space
// (listed before it exists), creates « Chapitre 4 : fonctions » and adds a
// resource into it through the file input (its progress shown); Léa, who
// has the space open, sees it live (who added it, when) and downloads it
// (the bytes checked). The teacher turns on « Les élèves peuvent partager »:
// Léa's « Partager un document » appears live, she shares her work into
// « Travaux des élèves », the teacher sees it live. Her parent sees the
// resource, never the pupils' folder nor Léa's file, and no form. axe-core
// on every screen, no page error, no sideways scrolling, 44 px touch
// targets. Screenshots: test-artifacts/docs-<size>-<screen>.png.

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Browser, Download, Page } from "playwright-core";
import { ADMIN_KEY, CLIENTS_DIR, PREAU_BIN, TestServer, axeViolations, layoutProblems, type DirectorySync, type UserSpec } from "./harness.js";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const DIST = join(CLIENTS_DIR, "dist");
const ARTIFACTS = join(CLIENTS_DIR, "test-artifacts");

const serveHelp = existsSync(PREAU_BIN) ? execFileSync(PREAU_BIN, ["serve", "--help"]).toString() : "";
const skip = !existsSync(CHROMIUM)
  ? `no Chromium at ${CHROMIUM}: run scripts/install-chromium.sh (apt-get install -y chromium)`
  : !existsSync(join(DIST, "index.html"))
    ? "dist/ is not built: run npm run build"
    : !serveHelp.includes("--web-dir") || !serveHelp.includes("--files-chunk-bytes")
      ? "this préau binary cannot serve dist/ (--web-dir) or has no files (--files-chunk-bytes)"
      : false;
if (skip) {
  if (process.env.PREAU_REQUIRE_BROWSER === "1") throw new Error(`document space browser tests cannot run: ${skip}`);
  console.log(`# document space browser tests skipped: ${skip}`);
}

const DURAND: UserSpec = { user: "durand", name: "Mme Durand", role: "teacher", classes: ["3B"] };
const LEA: UserSpec = { user: "lea", name: "Léa Moreau", role: "student", classes: ["3B"] };
const MOREAU: UserSpec = { user: "p-lea", name: "M. Moreau", role: "parent", classes: ["3B"], children: ["lea"] };

const SCHOOL: DirectorySync = {
  version: 1,
  classes: [{ id: "3B", level: "3e" }],
  people: [
    { id: "durand", name: "Mme Durand", role: "teacher", teaches: [{ class: "3B", subject: "Mathématiques" }] },
    { id: "lea", name: "Léa Moreau", role: "student", classes: ["3B"] },
    { id: "p-lea", name: "M. Moreau", role: "parent", children: ["lea"] },
  ],
};

const SIZES = [
  { name: "phone", viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true },
  { name: "desktop", viewport: { width: 1280, height: 800 }, isMobile: false, hasTouch: false },
];

const ROOM = "3B/docs/main";
const CHUNK = 65536;

/** UTF-8 text (a document to the server), `bytes` long. */
function text(seed: string, bytes: number): Buffer {
  const line = `${seed} : f(x) = 2x + 3, une fonction affine. `;
  return Buffer.from(line.repeat(Math.ceil(bytes / Buffer.byteLength(line)))).subarray(0, bytes);
}

async function bytesOf(download: Download): Promise<Buffer> {
  const path = await download.path();
  assert.ok(path, "the download was saved");
  return readFileSync(path);
}

for (const size of SIZES) {
  test(`documents at ${size.name} size: a teacher adds a resource, a pupil sees it live and downloads it; shared pupils' work is withheld from parents`, { skip, timeout: 180_000 }, async () => {
    const srv = await TestServer.start([
      "--rate-per-sec", "1000", "--rate-burst", "1000", "--request-rate-per-sec", "1000", "--request-burst", "1000",
      "--admin-key", ADMIN_KEY, "--web-dir", DIST, "--files-chunk-bytes", String(CHUNK),
      "--quiet-hours-teacher", "off", "--quiet-hours-student", "off", "--quiet-hours-parent", "off",
    ]);
    const { chromium } = await import("playwright-core");
    const browser: Browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
    mkdirSync(ARTIFACTS, { recursive: true });
    const pageErrors: string[] = [];
    const problems: string[] = [];
    const pages: Page[] = [];
    try {
      await srv.syncDirectory(SCHOOL);
      const newPage = async () => {
        const context = await browser.newContext({ viewport: size.viewport, isMobile: size.isMobile, hasTouch: size.hasTouch, locale: "fr-FR", timezoneId: "Europe/Paris", acceptDownloads: true });
        const page = await context.newPage();
        page.on("pageerror", (e) => pageErrors.push(String(e)));
        page.on("dialog", (d) => void d.dismiss());
        pages.push(page);
        return page;
      };
      const signInAs = async (page: Page, u: UserSpec) => {
        await page.goto(`${srv.httpUrl}/`);
        await page.fill("#token", await srv.token(u));
        await page.click("text=Se connecter");
        await page.waitForSelector(`header .me:has-text('${u.name}')`);
      };
      const openDocs = async (page: Page) => {
        const link = page.locator(`.rooms li[data-room='${ROOM}'] button`);
        await link.waitFor({ state: "attached" });
        // A parent starts on their children's week: on a phone, the rooms are behind « ← Salons ».
        if (size.name === "phone" && !(await link.isVisible())) await page.click("main.room > .back");
        await link.waitFor();
        assert.equal(await link.locator(".name").textContent(), "Documents de la classe");
        await link.click();
        await page.waitForSelector(`section.docs-view h2:text-is("Documents de la classe · 3B")`);
      };
      const check = async (page: Page, screen: string) => {
        problems.push(...(await axeViolations(page)).map((v) => `${screen}: ${v}`));
        problems.push(...(await layoutProblems(page, "label.check")).map((v) => `${screen}: ${v}`));
        await page.screenshot({ path: join(ARTIFACTS, `docs-${size.name}-${screen}.png`), fullPage: true });
      };
      const view = "section.docs-view";

      // The teacher: the space is listed before it exists; opening it opens the room.
      const teacher = await newPage();
      await signInAs(teacher, DURAND);
      await openDocs(teacher);
      await teacher.waitForSelector(`${view} .docs-folder[data-folder="eleves"] h3:text-is("Travaux des élèves")`);
      await teacher.click(`${view} .docs-new-folder > summary`);
      await teacher.fill("#docs-folder-title", "Chapitre 4 : fonctions");
      await check(teacher, "teacher-new-folder");
      await teacher.click(`${view} button:text-is("Créer le dossier")`);
      const folder = teacher.locator(`${view} .docs-folder[data-folder="chapitre-4-fonctions"]`);
      await folder.locator(`h3:text-is("Chapitre 4 : fonctions")`).waitFor();
      assert.equal(await folder.locator(".empty").textContent(), "Aucun document.");

      // Léa has the space open (it exists now: her directory lists it).
      const lea = await newPage();
      await signInAs(lea, LEA);
      await openDocs(lea);
      await lea.waitForSelector(`${view} .docs-folder[data-folder="chapitre-4-fonctions"]`);
      assert.equal(await lea.locator(`${view} .docs-add`).isVisible(), false, "no sharing until a teacher allows it");
      assert.equal(await lea.locator(`${view} .share-closed`).textContent(), "Le partage de documents par les élèves est fermé pour l'instant.");
      assert.equal(await lea.locator(`${view} .docs-new-folder`).count(), 0);

      // The teacher adds a resource into the folder: the progress shows while the chunks go.
      const sheet = text("Fiche", 3 * CHUNK + 500);
      await teacher.click(`${view} .docs-tools > .docs-add > summary`);
      await teacher.locator("#docs-file").setInputFiles({ name: "fiche exercices.txt", mimeType: "text/plain", buffer: sheet });
      await teacher.fill("#docs-title", "Fiche d'exercices");
      await teacher.selectOption("#docs-folder", "chapitre-4-fonctions");
      await check(teacher, "teacher-add");
      const sawProgress = teacher.waitForSelector(`${view} .upload-progress:not([hidden])`, { state: "attached", timeout: 10_000 }).then(() => true, () => false);
      await teacher.click(`${view} button:text-is("Ajouter")`);
      const tdoc = folder.locator(`.doc-item:has(.title:text-is("Fiche d'exercices"))`);
      await tdoc.waitFor();
      assert.ok(await sawProgress, "the upload's progress was shown");
      assert.match((await tdoc.locator(".meta").textContent()) ?? "", /^Ajouté par Mme Durand le .+ à \d+\u00a0h/);
      await check(teacher, "teacher-list");

      // Léa sees it live, and downloads it: the bytes checked.
      const ldoc = lea.locator(`${view} .docs-folder[data-folder="chapitre-4-fonctions"] .doc-item:has(.title:text-is("Fiche d'exercices"))`);
      await ldoc.waitFor();
      assert.match((await ldoc.locator(".meta").textContent()) ?? "", /^Ajouté par Mme Durand /);
      assert.equal(await ldoc.locator("button.remove").count(), 0, "a pupil does not remove a teacher's document");
      const [got] = await Promise.all([lea.waitForEvent("download"), ldoc.locator("button.download").click()]);
      assert.equal(got.suggestedFilename(), "fiche exercices.txt");
      assert.ok((await bytesOf(got)).equals(sheet), "Léa's download equals the teacher's file");
      await check(lea, "pupil-list");

      // « Les élèves peuvent partager »: Léa's « Partager un document » appears live; she shares her work.
      await teacher.check("#docs-share");
      await lea.locator(`${view} .docs-add > summary:text-is("Partager un document")`).waitFor();
      await lea.click(`${view} .docs-add > summary`);
      const work = text("Léa", CHUNK + 77);
      await lea.locator("#docs-share-file").setInputFiles({ name: "mon exposé.txt", mimeType: "text/plain", buffer: work });
      await lea.fill("#docs-share-title", "Exposé de Léa");
      await check(lea, "pupil-share");
      await lea.click(`${view} button:text-is("Partager")`);
      const mine = lea.locator(`${view} .docs-folder[data-folder="eleves"] .doc-item:has(.title:text-is("Exposé de Léa"))`);
      await mine.waitFor();
      assert.equal(await mine.locator("button.remove").count(), 1, "a pupil removes her own");
      await check(lea, "pupil-shared");
      const tshared = teacher.locator(`${view} .docs-folder[data-folder="eleves"] .doc-item:has(.title:text-is("Exposé de Léa"))`);
      await tshared.waitFor();
      assert.match((await tshared.locator(".meta").textContent()) ?? "", /^Ajouté par Léa Moreau /);

      // Her parent: the resource, not the pupils' folder nor her file; read-only.
      const parent = await newPage();
      await signInAs(parent, MOREAU);
      await openDocs(parent);
      const pdoc = parent.locator(`${view} .doc-item:has(.title:text-is("Fiche d'exercices"))`);
      await pdoc.waitFor();
      assert.equal(await parent.locator(`${view} .docs-folder[data-folder="eleves"]`).count(), 0, "no pupils' folder for a parent");
      assert.equal(await parent.locator(`${view} .doc-item:has(.title:text-is("Exposé de Léa"))`).count(), 0, "no pupil's work for a parent");
      assert.equal(await parent.locator(`${view} form, ${view} input[type=file], ${view} button.remove`).count(), 0, "nothing to change");
      const [pgot] = await Promise.all([parent.waitForEvent("download"), pdoc.locator("button.download").click()]);
      assert.ok((await bytesOf(pgot)).equals(sheet), "the parent's download equals the resource");
      await check(parent, "parent");

      // The teacher removes the resource (two steps): gone for Léa, live.
      await tdoc.locator("button.remove").click();
      await tdoc.locator(`button.remove:text-is("Confirmer la suppression")`).click();
      await ldoc.waitFor({ state: "detached" });

      assert.deepEqual(problems, []);
      assert.deepEqual(pageErrors, []);
    } catch (err) {
      for (const [i, page] of pages.entries()) await page.screenshot({ path: join(ARTIFACTS, `docs-${size.name}-failure-${i}.png`) }).catch(() => {});
      throw err;
    } finally {
      await browser.close();
      await srv.stop();
    }
  });
}
