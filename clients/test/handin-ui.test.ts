// « Devoirs à rendre » in the browser (Debian's Chromium through
// playwright-core, the real server serving dist/ with small upload chunks,
// its school directory synced), at phone and desktop sizes, a teacher, two
// pupils and a parent in their own browser contexts: the teacher opens a
// hand-in from the class's « Devoirs à rendre » (title, consignes, date and
// time, types, late work) and follows it; Léa (a browser without
// MediaRecorder: no recording offered) hands in a file through the file
// input (its progress shown), the teacher's « 0 rendu sur 2 » becomes
// « 1 rendu sur 2 » live; the teacher downloads Léa's file and the zip
// (the bytes checked), returns a correction (a file and a comment); Léa
// sees « Corrigé » live, reads the comment and downloads the correction
// (the bytes checked); her parent sees her status and her work,
// read-only. Inès records a message with Chromium's fake microphone
// (« Enregistrer un message audio », stop, listen, send): the teacher's
// count becomes « 2 rendus sur 2 ». The teacher moves the deadline: the
// pupil's page says so, live. The console's card: counts and the zip. axe-core on every screen, no page
// error, no sideways scrolling, 44 px touch targets. Screenshots:
// test-artifacts/handin-<size>-<screen>.png.

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
  if (process.env.PREAU_REQUIRE_BROWSER === "1") throw new Error(`hand-ins browser tests cannot run: ${skip}`);
  console.log(`# hand-ins browser tests skipped: ${skip}`);
}

const DURAND: UserSpec = { user: "durand", name: "Mme Durand", role: "teacher", classes: ["3B"] };
const LEA: UserSpec = { user: "lea", name: "Léa Moreau", role: "student", classes: ["3B"] };
const INES: UserSpec = { user: "ines", name: "Inès Benali", role: "student", classes: ["3B"] };
const MOREAU: UserSpec = { user: "p-lea", name: "M. Moreau", role: "parent", classes: ["3B"], children: ["lea"] };

const SCHOOL: DirectorySync = {
  version: 1,
  classes: [{ id: "3B", level: "3e" }],
  people: [
    { id: "durand", name: "Mme Durand", role: "teacher", teaches: [{ class: "3B", subject: "Histoire-géographie" }] },
    { id: "lea", name: "Léa Moreau", role: "student", classes: ["3B"] },
    { id: "ines", name: "Inès Benali", role: "student", classes: ["3B"] },
    { id: "p-lea", name: "M. Moreau", role: "parent", children: ["lea"] },
  ],
};

const SIZES = [
  { name: "phone", viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true },
  { name: "desktop", viewport: { width: 1280, height: 800 }, isMobile: false, hasTouch: false },
];

const ROOM = "3B/handin/main";
const TITLE = "Exposé : la Révolution";
const CONSIGNES = "Une page sur les causes de la Révolution, ou un enregistrement de deux minutes.";
const CHUNK = 65536;

/** UTF-8 text (a document to the server), `bytes` long. */
function text(seed: string, bytes: number): Buffer {
  const line = `${seed} : la prise de la Bastille, le 14 juillet 1789. `;
  return Buffer.from(line.repeat(Math.ceil(bytes / Buffer.byteLength(line)))).subarray(0, bytes);
}

/** A deadline three days ahead at 18:00 in Paris, as the form's date input takes it, and in words. */
function deadline(): { date: string; words: RegExp } {
  const d = new Date(Date.now() + 3 * 86_400_000);
  const date = new Intl.DateTimeFormat("en-CA", { timeZone: "Europe/Paris", year: "numeric", month: "2-digit", day: "2-digit" }).format(d);
  const day = new Intl.DateTimeFormat("fr-FR", { timeZone: "Europe/Paris", weekday: "long", day: "numeric", month: "long" })
    .formatToParts(d)
    .map((p) => (p.type === "day" && p.value === "1" ? "1er" : p.value))
    .join("");
  return { date, words: new RegExp(`^À rendre le ${day}( \\d{4})? à 18\u00a0h \\(retards acceptés\\)$`) };
}

async function bytesOf(download: Download): Promise<Buffer> {
  const path = await download.path();
  assert.ok(path, "the download was saved");
  return readFileSync(path);
}

for (const size of SIZES) {
  test(`hand-ins at ${size.name} size: a teacher opens one, a pupil hands in a file and a recording, the teacher follows live, downloads the zip and returns a correction; pupil and parent read it`, { skip, timeout: 180_000 }, async () => {
    const srv = await TestServer.start([
      "--rate-per-sec", "1000", "--rate-burst", "1000", "--request-rate-per-sec", "1000", "--request-burst", "1000",
      "--admin-key", ADMIN_KEY, "--web-dir", DIST, "--files-chunk-bytes", String(CHUNK),
      "--quiet-hours-teacher", "off", "--quiet-hours-student", "off", "--quiet-hours-parent", "off",
    ]);
    const { chromium } = await import("playwright-core");
    // Chromium's fake microphone (a beep) and no permission prompt: the recording path.
    const browser: Browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"] });
    mkdirSync(ARTIFACTS, { recursive: true });
    const pageErrors: string[] = [];
    const problems: string[] = [];
    const pages: Page[] = [];
    try {
      await srv.syncDirectory(SCHOOL);
      /** `noRecorder`: a browser without MediaRecorder (the recording button is then not offered). */
      const newPage = async (noRecorder = false) => {
        const context = await browser.newContext({ viewport: size.viewport, isMobile: size.isMobile, hasTouch: size.hasTouch, locale: "fr-FR", timezoneId: "Europe/Paris", acceptDownloads: true, permissions: ["microphone"] });
        if (noRecorder) await context.addInitScript(() => delete (window as { MediaRecorder?: unknown }).MediaRecorder);
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
      const openHandins = async (page: Page) => {
        const link = page.locator(`.rooms li[data-room='${ROOM}'] button`);
        await link.waitFor({ state: "attached" });
        // A parent starts on their children's week: on a phone, the rooms are behind « ← Salons ».
        if (size.name === "phone" && !(await link.isVisible())) await page.click("main.room > .back");
        await link.waitFor();
        assert.equal(await link.locator(".name").textContent(), "Devoirs à rendre");
        await link.click();
        await page.waitForSelector(`section.handin-view h2:text-is("Devoirs à rendre · 3B")`);
      };
      const check = async (page: Page, screen: string) => {
        problems.push(...(await axeViolations(page)).map((v) => `${screen}: ${v}`));
        problems.push(...(await layoutProblems(page, "label.check")).map((v) => `${screen}: ${v}`));
        await page.screenshot({ path: join(ARTIFACTS, `handin-${size.name}-${screen}.png`), fullPage: true });
      };
      const view = "section.handin-view";
      const due = deadline();

      // The teacher: « Devoirs à rendre » is listed before it exists; opening it opens the room.
      const teacher = await newPage();
      await signInAs(teacher, DURAND);
      await openHandins(teacher);
      await teacher.waitForSelector(`${view} .empty:text-is("Aucun devoir à rendre pour l'instant.")`);
      await teacher.click(`${view} .handin-new > summary`);
      await teacher.fill("#handin-title", TITLE);
      await teacher.fill("#handin-instructions", CONSIGNES);
      await teacher.fill("#handin-date", due.date);
      await teacher.fill("#handin-time", "18:00");
      await teacher.check("#handin-accept-document");
      await teacher.check("#handin-accept-audio");
      await teacher.check("#handin-late");
      await check(teacher, "teacher-new");
      await teacher.click(`${view} button:text-is("Publier le devoir")`);
      const item = teacher.locator(`${view} .handin-item:has(h3:text-is("${TITLE}"))`);
      await item.waitFor();
      assert.match((await item.locator(".due").textContent()) ?? "", due.words);
      assert.equal(await item.locator(".tally").textContent(), "0 rendu sur 2");
      assert.equal(await item.locator(".meta").textContent(), "Donné par Mme Durand · document, audio");
      await check(teacher, "teacher-list");

      // Following it: a row per pupil, sorted by name.
      await item.locator("button.follow").click();
      const follow = `${view} .handin-follow`;
      await teacher.waitForSelector(`${follow} h3:text-is("${TITLE}")`);
      assert.deepEqual(await teacher.locator(`${follow} .pupil-row .pupil b`).allTextContents(), ["Inès Benali", "Léa Moreau"]);
      assert.deepEqual(await teacher.locator(`${follow} .pupil-row .handin-status`).allTextContents(), ["Pas encore rendu", "Pas encore rendu"]);
      assert.equal(await teacher.locator(`${follow} button.zip`).isDisabled(), true, "nothing to zip yet");

      // Léa: « À rendre », the deadline in words; she hands in a file through the input.
      // (Her browser has no MediaRecorder: only the file is offered.)
      const lea = await newPage(true);
      await signInAs(lea, LEA);
      await openHandins(lea);
      const card = lea.locator(`${view} .handin-item:has(h3:text-is("${TITLE}"))`);
      await card.waitFor();
      assert.match((await card.locator(".due").textContent()) ?? "", due.words);
      assert.equal(await card.locator(".instructions").textContent(), CONSIGNES);
      assert.equal(await card.locator(".handin-status").textContent(), "À rendre");
      assert.equal(await card.locator("button.hand-in").textContent(), "Rendre mon travail");
      assert.equal(await card.locator("button.record").count(), 0, "no recording without MediaRecorder");
      await check(lea, "pupil-todo");
      const work = text("Léa", 3 * CHUNK + 1000);
      // The progress bar shows while the chunks go (seen at least once).
      const sawProgress = lea.waitForSelector(`${view} .upload-progress:not([hidden])`, { state: "attached", timeout: 10_000 }).then(() => true, () => false);
      await card.locator("input.handin-file").setInputFiles({ name: "exposé léa.txt", mimeType: "text/plain", buffer: work });
      await card.locator(`.handin-status:text-is("Rendu")`).waitFor();
      assert.ok(await sawProgress, "the upload's progress was shown");
      await card.locator(`button.hand-in:text-is("Remplacer")`).waitFor();
      assert.match((await card.locator(".work-file").textContent()) ?? "", /^Votre travail : exposé léa\.txt \(\d+ ko\), rendu le .+\.$/);
      await check(lea, "pupil-handed-in");

      // The teacher sees it live: the count, Léa's row.
      await teacher.waitForSelector(`${follow} .tally:text-is("1 rendu sur 2")`);
      const leaRow = teacher.locator(`${follow} .pupil-row[data-pupil="lea"]`);
      await leaRow.locator(`.handin-status:text-is("Rendu")`).waitFor();
      await check(teacher, "teacher-follow");

      // Léa's file, then the zip, downloaded with the token: the bytes checked.
      const [file] = await Promise.all([teacher.waitForEvent("download"), leaRow.locator("button.download").click()]);
      assert.equal(file.suggestedFilename(), "exposé léa.txt");
      assert.ok((await bytesOf(file)).equals(work), "the teacher's download equals what Léa handed in");
      const [zip] = await Promise.all([teacher.waitForEvent("download"), teacher.locator(`${follow} button.zip`).click()]);
      assert.match(zip.suggestedFilename(), /\.zip$/);
      const zipBytes = await bytesOf(zip);
      assert.equal(zipBytes.subarray(0, 2).toString("latin1"), "PK");
      assert.ok(zipBytes.includes(work), "the zip holds Léa's work");
      assert.ok(zipBytes.includes(Buffer.from("Léa Moreau")), "named after her");

      // A correction: a file and a comment.
      const corrected = text("Corrigé", 2 * CHUNK + 10);
      await leaRow.locator("details.return > summary").click();
      await leaRow.locator("input[type=file]").setInputFiles({ name: "corrigé léa.txt", mimeType: "text/plain", buffer: corrected });
      await leaRow.locator("textarea").fill("Très bien, 16/20. Soigne la conclusion.");
      await check(teacher, "teacher-return");
      await leaRow.locator(`button:text-is("Envoyer la correction")`).click();
      await teacher.waitForSelector(`${follow} .pupil-row[data-pupil="lea"] .handin-status:text-is("Corrigé")`);
      await teacher.waitForSelector(`${follow} .tally:text-is("1 rendu sur 2 · 1 corrigé")`);

      // Léa sees « Corrigé » live, the comment, and downloads the correction.
      await card.locator(`.handin-status:text-is("Corrigé")`).waitFor();
      assert.equal(await card.locator(".correction h4").textContent(), "Correction de Mme Durand");
      assert.equal(await card.locator(".correction .comment").textContent(), "Très bien, 16/20. Soigne la conclusion.");
      assert.equal(await card.locator("button.hand-in").count(), 0, "no replacing once returned");
      const [back] = await Promise.all([lea.waitForEvent("download"), card.locator(".correction button.download").click()]);
      assert.equal(back.suggestedFilename(), "corrigé léa.txt");
      assert.ok((await bytesOf(back)).equals(corrected), "Léa's download equals the correction");
      await check(lea, "pupil-returned");

      // Her parent: her status, her work, the correction; nothing to hand in.
      const parent = await newPage();
      await signInAs(parent, MOREAU);
      await openHandins(parent);
      const pcard = parent.locator(`${view} .handin-item:has(h3:text-is("${TITLE}"))`);
      await pcard.waitFor();
      assert.equal(await pcard.locator(".work-status").textContent(), "Léa Moreau : Corrigé");
      assert.equal(await pcard.locator("button.hand-in").count(), 0);
      assert.equal(await pcard.locator("button.record").count(), 0);
      assert.equal(await pcard.locator("input[type=file]").count(), 0);
      assert.equal(await pcard.locator(".correction .comment").textContent(), "Très bien, 16/20. Soigne la conclusion.");
      const [theirs] = await Promise.all([parent.waitForEvent("download"), pcard.locator(".work-file + button.download").click()]);
      assert.ok((await bytesOf(theirs)).equals(work), "the parent's download equals Léa's work");
      await check(parent, "parent");

      // Inès records a message (Chromium's fake microphone), listens, sends it.
      const ines = await newPage();
      await signInAs(ines, INES);
      await openHandins(ines);
      const icard = ines.locator(`${view} .handin-item:has(h3:text-is("${TITLE}"))`);
      assert.equal(await icard.locator("button.record").textContent(), "Enregistrer un message audio");
      await icard.locator(`button.record`).click();
      await icard.locator(`button.stop:text-is("Arrêter l'enregistrement")`).waitFor();
      await icard.locator(".rec-clock").waitFor();
      await ines.waitForTimeout(1500);
      await check(ines, "pupil-recording");
      await icard.locator("button.stop").click();
      await icard.locator(".rec-preview audio").waitFor();
      await check(ines, "pupil-recorded");
      await icard.locator(`button:text-is("Envoyer l'enregistrement")`).click();
      await icard.locator(`.handin-status:text-is("Rendu")`).waitFor({ timeout: 15_000 });
      assert.match((await icard.locator(".work-file").textContent()) ?? "", /^Votre travail : enregistrement .+\.webm/);
      await teacher.waitForSelector(`${follow} .tally:text-is("2 rendus sur 2 · 1 corrigé")`);
      await teacher.locator(`${follow} .pupil-row[data-pupil="ines"] .handin-status:text-is("Rendu")`).waitFor();

      // The teacher moves the deadline to 17 h 30: everyone's page says so, live.
      await teacher.click(`${follow} .handin-change > summary`);
      await teacher.fill("#change-time", "17:30");
      await teacher.click(`${follow} .change-form button:text-is("Enregistrer")`);
      const moved = new RegExp(due.words.source.replace("18\u00a0h", "17\u00a0h\u00a030"));
      assert.notEqual(moved.source, due.words.source);
      await teacher.waitForFunction(([sel, re]) => new RegExp(re).test(document.querySelector(sel)?.textContent ?? ""), [`${follow} > .due`, moved.source] as const);
      await lea.waitForFunction(([sel, re]) => new RegExp(re).test(document.querySelector(sel)?.textContent ?? ""), [`${view} .handin-item .due`, moved.source] as const);
      await check(teacher, "teacher-changed");

      // The console's card (a teacher's desk): counts and the zip.
      if (size.name === "desktop") {
        await teacher.goto(`${srv.httpUrl}/console/`);
        await teacher.click(".console-handins > summary");
        const row = teacher.locator(`.console-handins .handin-item:has(.title:text-is("${TITLE}"))`);
        await row.locator(`.tally:text-is("2 rendus sur 2 · 1 corrigé")`).waitFor();
        const [czip] = await Promise.all([teacher.waitForEvent("download"), row.locator("button.zip").click()]);
        const czipBytes = await bytesOf(czip);
        assert.ok(czipBytes.includes(work), "the console's zip holds Léa's work");
        problems.push(...(await axeViolations(teacher)).map((v) => `console: ${v}`));
        await teacher.screenshot({ path: join(ARTIFACTS, `handin-${size.name}-console.png`), fullPage: true });
      }

      assert.deepEqual(problems, []);
      assert.deepEqual(pageErrors, []);
    } catch (err) {
      for (const [i, page] of pages.entries()) await page.screenshot({ path: join(ARTIFACTS, `handin-${size.name}-failure-${i}.png`) }).catch(() => {});
      throw err;
    } finally {
      await browser.close();
      await srv.stop();
    }
  });
}
