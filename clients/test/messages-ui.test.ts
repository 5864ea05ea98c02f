// Messages and the notification feed in the browser (Debian's Chromium
// through playwright-core, the real server serving dist/, its school
// directory synced), at phone and desktop sizes, a teacher and a pupil in
// two browser contexts: the pupil finds her teacher with « Nouveau
// message » and writes; the teacher's bell counts it live, its feed says
// « Nouveau message de Léa Moreau », opening it opens the conversation
// and reads it; she answers, the pupil sees it live; she shares the
// question with the class in the help forum; the pupil lets her name be
// shown. Quiet hours: the teacher sets hours around now in « Mon
// compte »; the pupil writes again and reads « Mme Durand le verra à
// partir de … (heures calmes) »; the teacher's bell stays quiet; her feed
// shows the message « en attente (heures calmes) »; « Tout marquer comme
// lu », then « Revenir au réglage de l'établissement ». axe-core on every
// screen, no page error, no horizontal scrolling, 44 px touch targets.
// Screenshots: test-artifacts/messages-<size>-<screen>.png.

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import type { Browser, Page } from "playwright-core";
import { ADMIN_KEY, CLIENTS_DIR, PREAU_BIN, TestServer, axeViolations, layoutProblems, sleep, type DirectorySync, type UserSpec } from "./harness.js";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const DIST = join(CLIENTS_DIR, "dist");
const ARTIFACTS = join(CLIENTS_DIR, "test-artifacts");
const FORUM = "3B/forum/aide";

const serveHelp = existsSync(PREAU_BIN) ? execFileSync(PREAU_BIN, ["serve", "--help"]).toString() : "";
const skip = !existsSync(CHROMIUM)
  ? `no Chromium at ${CHROMIUM}: run scripts/install-chromium.sh (apt-get install -y chromium)`
  : !existsSync(join(DIST, "index.html"))
    ? "dist/ is not built: run npm run build"
    : !serveHelp.includes("--web-dir") || !serveHelp.includes("--quiet-hours-teacher")
      ? "this préau binary cannot serve dist/ (--web-dir) or has no messages (--quiet-hours-teacher)"
      : false;
if (skip) {
  // CI installs Chromium and builds dist/ first: there a skip is a failure.
  if (process.env.PREAU_REQUIRE_BROWSER === "1") throw new Error(`messages browser tests cannot run: ${skip}`);
  console.log(`# messages browser tests skipped: ${skip}`);
}

const DURAND: UserSpec = { user: "durand", name: "Mme Durand", role: "teacher", classes: ["3B"] };
const LEA: UserSpec = { user: "lea", name: "Léa Moreau", role: "student", classes: ["3B"] };

const SCHOOL: DirectorySync = {
  version: 1,
  classes: [{ id: "3B", level: "3e" }],
  people: [
    { id: "durand", name: "Mme Durand", role: "teacher", teaches: [{ class: "3B", subject: "Mathématiques" }] },
    { id: "bernard", name: "M. Bernard", role: "teacher", teaches: [{ class: "3B", subject: "Histoire-géographie" }] },
    { id: "lea", name: "Léa Moreau", role: "student", classes: ["3B"] },
    { id: "ines", name: "Inès Benali", role: "student", classes: ["3B"] },
    { id: "p-lea", name: "M. Moreau", role: "parent", children: ["lea"] },
  ],
};

const SIZES = [
  { name: "phone", viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true },
  { name: "desktop", viewport: { width: 1280, height: 800 }, isMobile: false, hasTouch: false },
];

/** `HH:MM` in Paris, `minutes` from now. */
function parisClock(minutes: number): string {
  const parts = new Intl.DateTimeFormat("en-GB", { timeZone: "Europe/Paris", hour: "2-digit", minute: "2-digit", hourCycle: "h23" }).formatToParts(new Date(Date.now() + minutes * 60_000));
  const get = (t: string) => parts.find((p) => p.type === t)!.value;
  return `${get("hour")}:${get("minute")}`;
}

/** « 07:30 » → « 7 h 30 », as the app says it. */
const words = (hhmm: string) => `${Number(hhmm.slice(0, 2))}\u00a0h\u00a0${hhmm.slice(3)}`;

for (const size of SIZES) {
  test(`messages at ${size.name} size: a pupil writes, the teacher's bell counts it live, she answers and shares it; quiet hours hold the next one`, { skip, timeout: 180_000 }, async () => {
    const srv = await TestServer.start([
      "--rate-per-sec", "1000", "--rate-burst", "1000", "--request-rate-per-sec", "1000", "--request-burst", "1000",
      "--admin-key", ADMIN_KEY, "--web-dir", DIST,
      // Nobody quiet unless the test says so (the defaults depend on the hour).
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
      // The class's help forum, opened by its teacher.
      const opener = await srv.client(DURAND);
      await opener.join(FORUM);
      await opener.configureForum(FORUM, { flavour: "help" });
      opener.close();

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
        await page.screenshot({ path: join(ARTIFACTS, `messages-${size.name}-${screen}.png`) });
      };
      const bellCount = (page: Page) => page.locator("header .bell .count");

      const teacher = await newPage();
      await signInAs(teacher, DURAND);
      const pupil = await newPage();
      await signInAs(pupil, LEA);
      await teacher.waitForSelector(".rooms li[data-room='@messages'] .name:text-is('Messages')", { state: "attached" });
      assert.equal(await bellCount(teacher).isVisible(), false, "nothing new yet");

      // The pupil finds her teacher by typing part of her name.
      await pupil.click(".rooms li[data-room='@messages'] button");
      await pupil.waitForSelector("section.messages-view .conv-list-pane .empty:has-text('Aucune conversation')");
      await pupil.click("section.messages-view button.new-message");
      await pupil.fill("#dm-search", "dur");
      const card = pupil.locator(".contact[data-id='durand']");
      await card.waitFor();
      assert.equal((await card.innerText()).replace(/\s+/g, " ").trim(), "Mme Durand enseignant 3B · Mathématiques");
      assert.equal(await pupil.locator(".contact[data-id='ines']").count(), 0, "not a classmate (the school's option is off)");
      await pupil.fill("#dm-search", "");
      await pupil.locator(".contact[data-id='bernard']").waitFor();
      await pupil.fill("#dm-search", "durand");
      await pupil.locator(".contact-results li").first().waitFor();
      await pupil.waitForFunction(() => document.querySelectorAll(".contact-results li").length === 1);
      await pupil.click(".contact[data-id='durand']");
      await pupil.waitForSelector(".chips .chip:has-text('Mme Durand')");
      await check(pupil, "pupil-new");
      await pupil.click("button.start-dm:text-is('Écrire à Mme Durand')");
      const conversation = "section.conversation";
      await pupil.waitForSelector(`${conversation} h3:text-is('Mme Durand')`);
      assert.equal(await pupil.locator(`${conversation} .members`).textContent(), "Avec Mme Durand (enseignant)");
      assert.equal(await pupil.locator(`${conversation} .dm-prefs label`).textContent(), "Mon nom peut apparaître si ma question est partagée avec la classe");
      const question = "Bonjour Madame, je n'ai pas compris l'exercice 3 : faut-il factoriser ?";
      await pupil.fill(`${conversation} textarea`, question);
      await pupil.click(`${conversation} button:text-is('Envoyer')`);
      await pupil.waitForSelector(`${conversation} .dm-message.mine .text:text-is("${question}")`);
      assert.equal(await pupil.locator(`${conversation} .held-note`).count(), 0, "nobody is quiet");
      await pupil.waitForSelector(".conversations li .names:text-is('Mme Durand')", { state: "attached" });

      // The teacher's bell counts it, live; so do « Messages » and the tab's title.
      await bellCount(teacher).waitFor();
      assert.equal(await bellCount(teacher).textContent(), "1");
      assert.equal(await teacher.locator("header .bell").getAttribute("aria-label"), "Notifications : 1 non lue");
      assert.equal(await teacher.title(), "(1) préau");
      assert.equal(await teacher.locator(".rooms li[data-room='@messages'] .unread").textContent(), "1");
      await check(teacher, "teacher-bell");
      await teacher.click("header .bell");
      const item = teacher.locator(".feed-items li.unread").first();
      await item.waitFor();
      assert.equal(await item.locator(".what").textContent(), "Nouveau message de Léa Moreau");
      await check(teacher, "teacher-feed");
      // Opening it opens the conversation and reads it.
      await item.locator("button").click();
      await teacher.waitForSelector(`${conversation} .dm-message .text:text-is("${question}")`);
      await bellCount(teacher).waitFor({ state: "hidden" });
      assert.equal(await teacher.title(), "préau");
      assert.equal(await teacher.locator(`${conversation} .dm-prefs`).isVisible(), false, "a teacher has no name preference");

      // She answers; the pupil, in the conversation, reads it live (no badge: it is on screen).
      const answer = "Bonjour Léa, oui : x² − 9 = (x − 3)(x + 3).";
      await teacher.fill(`${conversation} textarea`, answer);
      await teacher.press(`${conversation} textarea`, "Enter");
      await teacher.waitForSelector(`${conversation} .dm-message.mine .text:text-is("${answer}")`);
      await pupil.waitForSelector(`${conversation} .dm-message:not(.mine) .text:text-is("${answer}")`);
      await bellCount(pupil).waitFor({ state: "hidden" });

      // The pupil lets her name be shown if her question is shared.
      await pupil.check(`${conversation} .dm-prefs input`);
      await pupil.waitForSelector(`${conversation} .dm-prefs .saved:text-is('Enregistré')`);
      await check(pupil, "pupil-conversation");

      // The teacher answers the question for the whole class, in the help forum.
      await teacher.click(`${conversation} .dm-message:has-text("exercice 3") button.share`);
      const form = teacher.locator(`${conversation} .share-form`);
      await form.locator("select").waitFor();
      assert.deepEqual(await form.locator("option").allTextContents(), ["Aide · forum · 3B"]);
      await form.locator(".hint:has-text('accepte que son nom apparaisse')").waitFor();
      await check(teacher, "teacher-share");
      await form.locator("button:text-is('Partager la question')").click();
      await teacher.waitForSelector(`${conversation} .system.shared:has-text('« Aide · forum · 3B »')`);
      await teacher.waitForSelector(`${conversation} .dm-message:has-text("exercice 3") .shared-tag`);
      await pupil.waitForSelector(`${conversation} .system.shared:has-text('Mme Durand a partagé votre question')`);
      const thread = (await (await srv.client(LEA)).threads(FORUM)).threads[0];
      assert.equal(thread.title, "Question de Léa Moreau", "named: she agreed");

      // Quiet hours: the teacher, in « Mon compte », quiet from an hour ago to an hour from now.
      await teacher.click("header button.me");
      const settings = "section.settings-view";
      await teacher.waitForSelector(`${settings} .quiet-effective:text-is("En vigueur : aucune heure calme — réglage de l'établissement.")`);
      assert.equal(await teacher.locator(`${settings} .quiet-default`).isVisible(), false);
      const [start, end] = [parisClock(-60), parisClock(60)];
      await teacher.fill("#quiet-start", start);
      await teacher.fill("#quiet-end", end);
      await teacher.click(`${settings} button:text-is('Enregistrer mes heures calmes')`);
      await teacher.waitForSelector(`${settings} .quiet-effective:text-is("En vigueur : de ${words(start)} à ${words(end)} — votre réglage.")`);
      await teacher.waitForSelector(`${settings} .quiet-now:has-text("En ce moment : heures calmes jusqu'à ${words(end)}")`);
      await teacher.locator(`${settings} .quiet-default`).waitFor();
      await check(teacher, "teacher-quiet");

      // The pupil writes again: she is told when her teacher will see it.
      const late = "Et pour l'exercice 4 ?";
      await pupil.fill(`${conversation} textarea`, late);
      await pupil.click(`${conversation} button:text-is('Envoyer')`);
      const note = pupil.locator(`${conversation} .dm-message.mine:has-text("${late}") .held-note`);
      await note.waitFor();
      const crossesMidnight = end < start;
      assert.equal(await note.textContent(), `Mme Durand le verra ${crossesMidnight ? "demain " : ""}à partir de ${words(end)} (heures calmes)`);
      await check(pupil, "pupil-held");

      // Nothing reaches the teacher live.
      await sleep(2500);
      assert.equal(await bellCount(teacher).isVisible(), false, "no live badge during quiet hours");
      assert.equal(await teacher.title(), "préau");
      // Her feed has it, waiting (the server counts it unread once the feed is read).
      await teacher.click("header .bell");
      const held = teacher.locator(".feed-items li:has(.held-tag)");
      await held.waitFor();
      assert.equal(await held.locator(".what").textContent(), "Nouveau message de Léa Moreau");
      assert.equal(await held.locator(".held-tag").textContent(), "en attente (heures calmes)");
      await teacher.waitForSelector(`section.feed-view .quiet-now:has-text("Heures calmes jusqu'à ${words(end)}")`);
      await check(teacher, "teacher-feed-held");
      await teacher.click("button.read-all");
      await bellCount(teacher).waitFor({ state: "hidden" });
      await teacher.waitForSelector(".feed-items li.unread", { state: "detached" });

      // Back to the school's setting.
      await teacher.click("header button.me");
      await teacher.click(`${settings} button.quiet-default`);
      await teacher.waitForSelector(`${settings} .quiet-effective:text-is("En vigueur : aucune heure calme — réglage de l'établissement.")`);
      await teacher.waitForSelector(`${settings} .status:text-is("Vous suivez de nouveau le réglage de l'établissement.")`);
      assert.equal(await teacher.locator(`${settings} .quiet-default`).isVisible(), false);

      assert.deepEqual(problems, []);
      assert.deepEqual(pageErrors, []);
    } catch (err) {
      for (const [i, page] of pages.entries()) await page.screenshot({ path: join(ARTIFACTS, `messages-${size.name}-failure-${i}.png`) }).catch(() => {});
      throw err;
    } finally {
      await browser.close();
      await srv.stop();
    }
  });
}
