// Announcements in the browser (Debian's Chromium through playwright-core,
// the real server serving dist/, its school directory synced), at phone
// and desktop sizes, a teacher and a parent in two browser contexts: the
// teacher opens « Annonces », writes to « Parents de 3B » asking for an
// acknowledgement; the parent's bell counts it live, the feed says
// « Annonce de Mme Durand : … », opening it shows the announcement (title,
// text, sender, date) and reads it; « J'ai lu et j'approuve » becomes
// « Lu et approuvé ✓ »; the teacher's status (live) shows 1 read of 2,
// 1 approved, and the other family as not having read it; her list says
// « lue par 1 sur 2 ». axe-core on every screen, no page error, no
// horizontal scrolling, 44 px touch targets. Screenshots:
// test-artifacts/announce-<size>-<screen>.png.

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import type { Browser, Page } from "playwright-core";
import { ADMIN_KEY, CLIENTS_DIR, PREAU_BIN, TestServer, axeViolations, layoutProblems, type DirectorySync, type UserSpec } from "./harness.js";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const DIST = join(CLIENTS_DIR, "dist");
const ARTIFACTS = join(CLIENTS_DIR, "test-artifacts");

const serveHelp = existsSync(PREAU_BIN) ? execFileSync(PREAU_BIN, ["serve", "--help"]).toString() : "";
const skip = !existsSync(CHROMIUM)
  ? `no Chromium at ${CHROMIUM}: run scripts/install-chromium.sh (apt-get install -y chromium)`
  : !existsSync(join(DIST, "index.html"))
    ? "dist/ is not built: run npm run build"
    : !serveHelp.includes("--web-dir") || !serveHelp.includes("--quiet-hours-teacher")
      ? "this préau binary cannot serve dist/ (--web-dir) or has no feed (--quiet-hours-teacher)"
      : false;
if (skip) {
  if (process.env.PREAU_REQUIRE_BROWSER === "1") throw new Error(`announcements browser tests cannot run: ${skip}`);
  console.log(`# announcements browser tests skipped: ${skip}`);
}

const DURAND: UserSpec = { user: "durand", name: "Mme Durand", role: "teacher", classes: ["3B"] };
const MOREAU: UserSpec = { user: "p-lea", name: "M. Moreau", role: "parent", children: ["lea"] };

const SCHOOL: DirectorySync = {
  version: 1,
  classes: [{ id: "3B", level: "3e" }],
  people: [
    { id: "durand", name: "Mme Durand", role: "teacher", teaches: [{ class: "3B", subject: "Mathématiques" }] },
    { id: "lea", name: "Léa Moreau", role: "student", classes: ["3B"] },
    { id: "ines", name: "Inès Benali", role: "student", classes: ["3B"] },
    { id: "p-lea", name: "M. Moreau", role: "parent", children: ["lea"] },
    { id: "p-ines", name: "Mme Benali", role: "parent", children: ["ines"] },
  ],
};

const SIZES = [
  { name: "phone", viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true },
  { name: "desktop", viewport: { width: 1280, height: 800 }, isMobile: false, hasTouch: false },
];

const TITLE = "Sortie au musée jeudi";
const TEXT = "Départ à 8 h 30 devant le collège, retour vers 16 h.\n\nPrévoir un pique-nique et une tenue adaptée.";

for (const size of SIZES) {
  test(`announcements at ${size.name} size: a teacher writes to the parents of 3B, a parent opens and approves it, the teacher sees who has not read it`, { skip, timeout: 180_000 }, async () => {
    const srv = await TestServer.start([
      "--rate-per-sec", "1000", "--rate-burst", "1000", "--request-rate-per-sec", "1000", "--request-burst", "1000",
      "--admin-key", ADMIN_KEY, "--web-dir", DIST,
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
        const context = await browser.newContext({ viewport: size.viewport, isMobile: size.isMobile, hasTouch: size.hasTouch, locale: "fr-FR", timezoneId: "Europe/Paris" });
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
      const check = async (page: Page, screen: string) => {
        problems.push(...(await axeViolations(page)).map((v) => `${screen}: ${v}`));
        problems.push(...(await layoutProblems(page, "label.check, label.day")).map((v) => `${screen}: ${v}`));
        await page.screenshot({ path: join(ARTIFACTS, `announce-${size.name}-${screen}.png`), fullPage: true });
      };
      const bellCount = (page: Page) => page.locator("header .bell .count");

      const teacher = await newPage();
      await signInAs(teacher, DURAND);
      const parent = await newPage();
      await signInAs(parent, MOREAU);

      // The teacher's « Annonces »: nothing sent yet.
      await teacher.click(".rooms li[data-room='@announces'] button");
      const view = "section.announces-view";
      await teacher.waitForSelector(`${view} .sent-list .empty:text-is("Aucune annonce envoyée pour l'instant.")`);
      await teacher.click(`${view} .announce-new > summary`);
      // Her lists: the pupils, the parents and the team of 3B; nothing school-wide, no « Urgent ».
      assert.deepEqual(await teacher.locator(`${view} .announce-targets label.day`).allTextContents(), ["Élèves de 3B", "Parents de 3B", "Équipe de 3B"]);
      assert.equal(await teacher.locator("#announce-urgent").count(), 0, "only staff send urgent announcements");
      assert.equal(await teacher.locator("#announce-level").count(), 0, "only staff write to a level");
      await teacher.check("#target-parents-3B");
      await teacher.fill("#announce-title", TITLE);
      await teacher.fill("#announce-text", TEXT);
      await teacher.check("#announce-ack");
      await check(teacher, "teacher-new");
      await teacher.click(`${view} button:text-is("Envoyer l'annonce")`);
      await teacher.waitForSelector(`${view} .announce-form .status:text-is("Annonce envoyée à 2 personnes.")`, { state: "attached" });
      const item = teacher.locator(`${view} .sent-list li:has(.title:text-is("${TITLE}"))`);
      await item.waitFor();
      const status = `${view} .announce-detail .announce-status`;
      await teacher.waitForSelector(`${status} .count-read b:text-is("0 sur 2")`);

      // The parent's bell counts it, live; the feed names it; opening it shows it and reads it.
      await bellCount(parent).waitFor();
      assert.equal(await bellCount(parent).textContent(), "1");
      await parent.click("header .bell");
      const feedItem = parent.locator(".feed-items li.unread").first();
      await feedItem.waitFor();
      assert.equal(await feedItem.locator(".what").textContent(), `Annonce de Mme Durand : ${TITLE}`);
      await check(parent, "parent-feed");
      await feedItem.locator("button").click();
      const card = "section.announce-view .announce-card";
      await parent.waitForSelector(`${card} h2:text-is("${TITLE}")`);
      assert.match((await parent.locator(`${card} .announce-meta`).textContent()) ?? "", /^Annonce de Mme Durand, le \d{1,2} \S+ \d{4} à \d{2}:\d{2}$/);
      assert.equal(await parent.locator(`${card} .announce-to`).textContent(), "À : Parents de 3B (2 personnes)");
      assert.deepEqual(await parent.locator(`${card} .announce-text p`).allTextContents(), TEXT.split("\n\n"));
      assert.equal(await parent.locator(`${card} .urgent-tag`).count(), 0);
      assert.equal(await parent.locator(`${card} .announce-status`).count(), 0, "recipients do not see who read it");
      await bellCount(parent).waitFor({ state: "hidden" });
      // The teacher sees it read, live.
      await teacher.waitForSelector(`${status} .count-read b:text-is("1 sur 2")`);
      await check(parent, "parent-open");

      // « J'ai lu et j'approuve ».
      await parent.click(`${card} button.ack:text-is("J'ai lu et j'approuve")`);
      await parent.waitForSelector(`${card} .acked:text-is("Lu et approuvé ✓")`);
      await check(parent, "parent-acked");

      // The teacher's status: 1 read, 1 approved, the other family has not read it.
      await teacher.waitForSelector(`${status} .count-acked b:text-is("1 sur 2")`);
      assert.equal(await teacher.locator(`${status} .count-read b`).textContent(), "1 sur 2");
      assert.deepEqual(await teacher.locator(`${status} .families li`).allTextContents(), ["Famille d'Inès (3B) : Mme Benali"]);
      const lists = await teacher.locator(`${status} ul.names:not(.families)`).evaluateAll((uls) => uls.map((ul) => [...ul.querySelectorAll("li")].map((li) => li.textContent)));
      assert.deepEqual(lists, [["Mme Benali"], ["Mme Benali"]], "not read, then not approved");
      // The list's item follows the status.
      assert.equal(await item.locator(".tally").textContent(), "lue par 1 sur 2 · approuvée par 1");
      await check(teacher, "teacher-status");
      // The list says it too, once shown again.
      // (On a phone the directory is behind « ← Salons ».)
      if (size.name === "phone") await teacher.click("main.room > .back");
      await teacher.click(".rooms li[data-room='@announces'] button");
      await teacher.waitForSelector(`${view} .sent-list li .tally:text-is("lue par 1 sur 2 · approuvée par 1")`);

      // The parent reopens it later: still approved, no button.
      await parent.reload();
      await parent.waitForSelector("header .me:has-text('M. Moreau')");
      await parent.click("header .bell");
      await parent.locator(".feed-items li").first().locator("button").click();
      await parent.waitForSelector(`${card} .acked:text-is("Lu et approuvé ✓")`);
      assert.equal(await parent.locator(`${card} button.ack`).count(), 0);

      // The console's « Annonces » (a teacher's desk): the same list and status.
      if (size.name === "desktop") {
        await teacher.goto(`${srv.httpUrl}/console/`);
        await teacher.click(".console-announces > summary");
        const sent = teacher.locator(`.console-announces ${view} .sent-list li:has(.title:text-is("${TITLE}"))`);
        await sent.locator(".tally:text-is('lue par 1 sur 2 · approuvée par 1')").waitFor();
        await sent.locator("button").click();
        await teacher.waitForSelector(`.console-announces ${status} .families li:text-is("Famille d'Inès (3B) : Mme Benali")`);
        // axe on the whole console; sizes only in the card (the console's room
        // bar has known small targets: « Autre salon » 32 px high, reported).
        problems.push(...(await axeViolations(teacher)).map((v) => `console: ${v}`));
        const consoleLayout = await layoutProblems(teacher, "label.check, label.day");
        const known = consoleLayout.filter((p) => /Autre salon|input « {2}» 15×/.test(p));
        if (known.length) console.log(`# console, outside the announcements card (known): ${known.join("; ")}`);
        problems.push(...consoleLayout.filter((p) => !known.includes(p)).map((v) => `console: ${v}`));
        await teacher.screenshot({ path: join(ARTIFACTS, `announce-${size.name}-console.png`), fullPage: true });
      }

      assert.deepEqual(problems, []);
      assert.deepEqual(pageErrors, []);
    } catch (err) {
      for (const [i, page] of pages.entries()) await page.screenshot({ path: join(ARTIFACTS, `announce-${size.name}-failure-${i}.png`) }).catch(() => {});
      throw err;
    } finally {
      await browser.close();
      await srv.stop();
    }
  });
}
