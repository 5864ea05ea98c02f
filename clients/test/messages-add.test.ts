// « Ajouter une personne » in a conversation, in the browser (Debian's
// Chromium through playwright-core, the real server serving dist/, its
// school directory synced), at phone and desktop sizes: a pupil in a
// conversation with her teacher opens « Ajouter une personne », is
// offered her parent only (not the other teacher she may write to: a
// pupil adds her parents), adds him; the header and the conversation
// list name him at once, the teacher's open conversation too (live
// `dm_members`); her parent, in another browser context, finds the
// conversation in « Messages » and reads it from its start. axe-core on
// every screen, no page error, no horizontal scrolling, 44 px targets.
// Screenshots: test-artifacts/messages-<size>-add-<screen>.png.

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
      ? "this préau binary cannot serve dist/ (--web-dir) or has no messages (--quiet-hours-teacher)"
      : false;
if (skip) {
  // CI installs Chromium and builds dist/ first: there a skip is a failure.
  if (process.env.PREAU_REQUIRE_BROWSER === "1") throw new Error(`messages browser tests cannot run: ${skip}`);
  console.log(`# messages (add) browser tests skipped: ${skip}`);
}

const DURAND: UserSpec = { user: "durand", name: "Mme Durand", role: "teacher", classes: ["3B"] };
const LEA: UserSpec = { user: "lea", name: "Léa Moreau", role: "student", classes: ["3B"] };
const MOREAU: UserSpec = { user: "p-lea", name: "M. Moreau", role: "parent", children: ["lea"] };

const SCHOOL: DirectorySync = {
  version: 1,
  classes: [{ id: "3B", level: "3e" }],
  people: [
    { id: "durand", name: "Mme Durand", role: "teacher", teaches: [{ class: "3B", subject: "Mathématiques" }] },
    { id: "bernard", name: "M. Bernard", role: "teacher", teaches: [{ class: "3B", subject: "Histoire-géographie" }] },
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

for (const size of SIZES) {
  test(`messages at ${size.name} size: a pupil adds her parent to the conversation with her teacher; he reads it`, { skip, timeout: 180_000 }, async () => {
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
      // The conversation so far: a question and its answer.
      const question = "Bonjour Madame, je n'ai pas compris l'exercice 3.";
      const answer = "Bonjour Léa, reprenons-le ensemble demain en classe.";
      const lea = await srv.client(LEA);
      const started = await lea.dmStart(["durand"]);
      await lea.dmSend(started.room, question);
      lea.close();
      const durand = await srv.client(DURAND);
      await durand.dmSend(started.room, answer);
      durand.close();

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
        await page.screenshot({ path: join(ARTIFACTS, `messages-${size.name}-add-${screen}.png`) });
      };
      const conversation = "section.conversation";
      const openConversation = async (page: Page, names: string, home = false) => {
        // A parent starts on the week of their children: on a phone the directory is behind « ← Salons ».
        if (home && size.name === "phone") await page.click("main.room > .back");
        await page.click(".rooms li[data-room='@messages'] button");
        const link = page.locator(`.conversations li[data-room='${started.room}'] .names`);
        await link.waitFor();
        assert.equal(await link.textContent(), names);
        await link.click();
        await page.waitForSelector(`${conversation} .dm-message .text:text-is("${answer}")`);
      };

      // The teacher has the conversation open (she sees the addition live).
      const teacher = await newPage();
      await signInAs(teacher, DURAND);
      await openConversation(teacher, "Léa Moreau");
      assert.equal(await teacher.locator(`${conversation} button.add-person`).isVisible(), true, "a teacher may add a colleague");

      // The pupil opens it and « Ajouter une personne »: her parent only.
      const pupil = await newPage();
      await signInAs(pupil, LEA);
      await openConversation(pupil, "Mme Durand");
      const add = pupil.locator(`${conversation} button.add-person`);
      assert.equal(await add.textContent(), "Ajouter une personne");
      assert.equal(await add.getAttribute("aria-expanded"), "false");
      await add.click();
      const panel = pupil.locator(`${conversation} section.add-people`);
      await panel.waitFor();
      assert.equal(await add.getAttribute("aria-expanded"), "true");
      assert.equal(await panel.getAttribute("aria-label"), "Ajouter une personne");
      await panel.locator(".hint:has-text('Vous pouvez ajouter vos parents.')").waitFor();
      const card = panel.locator(".contact[data-id='p-lea']");
      await card.waitFor();
      assert.equal((await card.innerText()).replace(/\s+/g, " ").trim(), "M. Moreau parent Léa Moreau");
      assert.deepEqual(await panel.locator(".contact").evaluateAll((bs) => bs.map((b) => b.getAttribute("data-id"))), ["p-lea"], "a pupil adds her parents: not M. Bernard, whom she may write to");
      assert.equal(await panel.locator(".contact-count").textContent(), "1 personne");
      assert.equal(await pupil.evaluate(() => document.activeElement?.getAttribute("type")), "search", "the search has the focus");
      // Searching for a teacher finds nobody to add.
      await panel.locator("input[type=search]").fill("bernard");
      await panel.locator(".contact-count:text-is('Personne ne correspond à « bernard ».')").waitFor();
      await panel.locator("input[type=search]").fill("moreau");
      await card.waitFor();
      await card.click();
      await panel.locator(".chips .chip:has-text('M. Moreau')").waitFor();
      const go = panel.locator("button.add-go");
      assert.equal(await go.textContent(), "Ajouter M. Moreau");
      await check(pupil, "pupil-picker");
      await go.click();

      // Added: the panel closes, the header and the list name him, the conversation says so.
      await panel.waitFor({ state: "hidden" });
      await pupil.waitForSelector(`${conversation} .members:text-is('Avec Mme Durand (enseignant) et M. Moreau (parent)')`);
      assert.equal(await pupil.locator(`${conversation} h3`).first().textContent(), "Mme Durand et M. Moreau");
      await pupil.waitForSelector(`${conversation} .system:text-is('Vous avez ajouté M. Moreau à la conversation.')`);
      await pupil.waitForSelector(`.conversations li[data-room='${started.room}'] .names:text-is('Mme Durand et M. Moreau')`, { state: "attached" });
      assert.equal(await pupil.locator(`${conversation} .sr-only[role=status]`).textContent(), "M. Moreau fait maintenant partie de la conversation.");
      await check(pupil, "pupil-added");
      // Nobody else to add now.
      await add.click();
      await panel.locator(".contact-count:text-is(\"Personne d'autre à ajouter à cette conversation.\")").waitFor();
      await panel.locator("button:text-is('Annuler')").click();
      await panel.waitFor({ state: "hidden" });
      assert.equal(await add.getAttribute("aria-expanded"), "false");

      // The teacher sees it live.
      await teacher.waitForSelector(`${conversation} .members:text-is('Avec Léa Moreau (élève) et M. Moreau (parent)')`);
      await teacher.waitForSelector(`${conversation} .system:text-is('Léa Moreau a ajouté M. Moreau à la conversation.')`);

      // Her parent finds the conversation in « Messages » and reads it from its start.
      const parent = await newPage();
      await signInAs(parent, MOREAU);
      await openConversation(parent, "Léa Moreau et Mme Durand", true);
      await parent.waitForSelector(`${conversation} .dm-message .text:text-is("${question}")`);
      await parent.waitForSelector(`${conversation} .system:text-is('Léa Moreau a ajouté M. Moreau à la conversation.')`);
      assert.equal(await parent.locator(`${conversation} .members`).textContent(), "Avec Léa Moreau (élève) et Mme Durand (enseignant)");
      // A parent adds their child's other parent: here there is none.
      await parent.click(`${conversation} button.add-person`);
      await parent.locator(`${conversation} .add-people .hint:has-text("Vous pouvez ajouter l'autre parent de votre enfant.")`).waitFor();
      await parent.locator(`${conversation} .add-people .contact-count:text-is("Personne d'autre à ajouter à cette conversation.")`).waitFor();
      await parent.keyboard.press("Escape");
      await parent.locator(`${conversation} .add-people`).waitFor({ state: "hidden" });
      // He answers; his daughter reads it live.
      const thanks = "Merci Madame, nous le reverrons ce soir à la maison.";
      await parent.fill(`${conversation} textarea`, thanks);
      await parent.click(`${conversation} button:text-is('Envoyer')`);
      await parent.waitForSelector(`${conversation} .dm-message.mine .text:text-is("${thanks}")`);
      await pupil.waitForSelector(`${conversation} .dm-message:not(.mine) .text:text-is("${thanks}")`);
      await check(parent, "parent-conversation");

      assert.deepEqual(problems, []);
      assert.deepEqual(pageErrors, []);
    } catch (err) {
      for (const [i, page] of pages.entries()) await page.screenshot({ path: join(ARTIFACTS, `messages-${size.name}-add-failure-${i}.png`) }).catch(() => {});
      throw err;
    } finally {
      await browser.close();
      await srv.stop();
    }
  });
}
