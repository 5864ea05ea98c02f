// The class agenda as a week view, in the browser (Debian's Chromium
// through playwright-core, the real server serving dist/), at phone and
// desktop sizes: a teacher (from Node) adds an event this week and one
// next week; a pupil opens the agenda before the class has a diary (no
// homework, no error), then the teacher sets homework due this week: it
// shows on its day, « À rendre : Maths — <first line> », once the week is
// loaded again; « Semaine suivante » shows next week's event; the
// homework line opens the diary. axe-core on every screen, no page error,
// no horizontal scrolling, touch targets of 44 px. Screenshots go to
// test-artifacts/agenda-week-<size>-<screen>.png.

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import type { Browser, Page } from "playwright-core";
import { diaryOf } from "../src/homework.js";
import { agendaAdd } from "../src/agenda.js";
import { ALICE, CLIENTS_DIR, PREAU_BIN, TEACHER, TestServer, axeViolations, layoutProblems, type UserSpec } from "./harness.js";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const DIST = join(CLIENTS_DIR, "dist");
const ARTIFACTS = join(CLIENTS_DIR, "test-artifacts");
const DIARY = diaryOf("3B");
const AGENDA = "3B/agenda/classe";

const serveHelp = existsSync(PREAU_BIN) ? execFileSync(PREAU_BIN, ["serve", "--help"]).toString() : "";
const skip = !existsSync(CHROMIUM)
  ? `no Chromium at ${CHROMIUM}: run scripts/install-chromium.sh (apt-get install -y chromium)`
  : !existsSync(join(DIST, "index.html"))
    ? "dist/ is not built: run npm run build"
    : !serveHelp.includes("--web-dir")
      ? "this préau binary cannot serve dist/ (--web-dir)"
      : false;
if (skip) {
  // CI installs Chromium and builds dist/ first: there a skip is a failure.
  if (process.env.PREAU_REQUIRE_BROWSER === "1") throw new Error(`agenda week browser tests cannot run: ${skip}`);
  console.log(`# agenda week browser tests skipped: ${skip}`);
}

const SIZES = [
  { name: "phone", viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true },
  { name: "desktop", viewport: { width: 1280, height: 800 }, isMobile: false, hasTouch: false },
];

function dayOf(d: Date): string {
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
}
function addDays(day: string, n: number): string {
  const [y, m, d] = day.split("-").map(Number);
  return dayOf(new Date(y, m - 1, d + n));
}
/** Local time `hour`:00 of `day`, in ms. */
function at(day: string, hour: number): number {
  const [y, m, d] = day.split("-").map(Number);
  return new Date(y, m - 1, d, hour).getTime();
}
// The test's week is the real one (the view opens on the current week): its
// days may be past, which the week view shows all the same.
const now = new Date();
const MONDAY = addDays(dayOf(now), -((now.getDay() + 6) % 7));
const WEDNESDAY = addDays(MONDAY, 2);
const THURSDAY = addDays(MONDAY, 3);
const NEXT_TUESDAY = addDays(MONDAY, 8);


for (const size of SIZES) {
  test(`agenda week at ${size.name} size: a pupil sees the week's events and the homework due on their days, next week's event, and opens the diary`, { skip, timeout: 150_000 }, async () => {
    const srv = await TestServer.start(["--rate-per-sec", "1000", "--rate-burst", "1000", "--web-dir", DIST]);
    const { chromium } = await import("playwright-core");
    const browser: Browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
    mkdirSync(ARTIFACTS, { recursive: true });
    const pageErrors: string[] = [];
    const problems: string[] = [];
    let pupil: Page | undefined;
    try {
      await srv.open(AGENDA);
      const prof = await srv.client(TEACHER);
      await prof.join(AGENDA);
      await agendaAdd(prof, AGENDA, { title: "Sortie au musée", starts: at(WEDNESDAY, 14), ends: at(WEDNESDAY, 17), place: "Musée des Beaux-Arts" });
      await agendaAdd(prof, AGENDA, { title: "Conseil de classe", starts: at(NEXT_TUESDAY, 17), ends: at(NEXT_TUESDAY, 19) });

      const context = await browser.newContext({ viewport: size.viewport, isMobile: size.isMobile, hasTouch: size.hasTouch, locale: "fr-FR" });
      pupil = await context.newPage();
      pupil.on("pageerror", (e) => pageErrors.push(String(e)));
      const signInAs = async (page: Page, u: UserSpec) => {
        await page.goto(`${srv.httpUrl}/`);
        await page.fill("#token", await srv.token(u));
        await page.click("text=Se connecter");
        await page.waitForSelector(`header .me:has-text('${u.name}')`);
      };
      const check = async (page: Page, screen: string) => {
        problems.push(...(await axeViolations(page)).map((v) => `${screen}: ${v}`));
        problems.push(...(await layoutProblems(page)).map((v) => `${screen}: ${v}`));
        await page.screenshot({ path: join(ARTIFACTS, `agenda-week-${size.name}-${screen}.png`) });
      };
      await signInAs(pupil, ALICE);

      // The class has no diary yet: the agenda shows its week, and no error.
      await pupil.click(`.rooms li[data-room='${AGENDA}'] button`);
      const week = `section.agenda[data-room='${AGENDA}']`;
      await pupil.waitForSelector(`${week} .agenda-day[data-day='${WEDNESDAY}'] .agenda-item:has-text('Sortie au musée'):has-text('14:00 – 17:00')`);
      assert.equal(await pupil.locator(`${week} .agenda-day`).count(), 7, "Monday to Sunday");
      assert.equal(await pupil.locator(`${week} .agenda-day`).first().getAttribute("data-day"), MONDAY);
      assert.equal(await pupil.locator(`${week} .week-buttons button:text-is('Cette semaine')`).isDisabled(), true);
      assert.equal(await pupil.locator(`${week} .agenda-homework`).count(), 0);
      assert.equal(await pupil.locator(`${week} .notice`).isVisible(), false, "no diary is no error");
      assert.equal(await pupil.locator(`${week} .agenda-item:has-text('Conseil de classe')`).count(), 0, "next week's event is next week");

      // The teacher opens the diary and sets homework due Thursday (two lines: the first is shown).
      await prof.join(DIARY);
      await prof.homeworkWrite(DIARY, { what: "homework", subject: "Maths", text: "Exercices 4 et 5 p. 32\nRédiger sur copie double.", date: MONDAY, due: THURSDAY, minutes: 30 });
      await prof.homeworkWrite(DIARY, { what: "lesson", subject: "Maths", text: "Fractions : définition", date: THURSDAY });

      // « Semaine suivante »: next week's event; back to this week, the homework is loaded with it.
      await pupil.click(`${week} .week-buttons button:text-is('Semaine suivante')`);
      await pupil.waitForSelector(`${week} .agenda-day[data-day='${NEXT_TUESDAY}'] .agenda-item:has-text('Conseil de classe')`);
      await pupil.waitForSelector(`${week} .week-label:has-text('Semaine prochaine')`);
      assert.equal(await pupil.locator(`${week} .agenda-item:has-text('Sortie au musée')`).count(), 0);
      await check(pupil, "next-week");
      await pupil.click(`${week} .week-buttons button:text-is('Cette semaine')`);
      const homework = pupil.locator(`${week} .agenda-day[data-day='${THURSDAY}'] .agenda-homework`);
      await homework.waitFor();
      // The second line is left to the diary; a screen reader hears where the button goes.
      assert.equal((await homework.locator(".homework-link").innerText()).replace(/\s+/g, " ").trim(), "À rendre : Maths — Exercices 4 et 5 p. 32 (ouvrir le cahier de textes)");
      assert.equal(await homework.locator(".subject").textContent(), "Maths");
      assert.equal(await homework.locator(".subject").evaluate((n) => getComputedStyle(n).backgroundColor), "rgb(29, 78, 216)", "the diary's colour for maths");
      assert.equal(await pupil.locator(`${week} .agenda-homework`).count(), 1, "homework only, not lessons");
      await pupil.waitForSelector(`${week} .agenda-day[data-day='${WEDNESDAY}'] .agenda-item:has-text('Sortie au musée')`);
      await homework.scrollIntoViewIfNeeded();
      await check(pupil, "this-week");

      // The homework line opens the class's diary.
      await homework.locator(".homework-link").click();
      await pupil.waitForSelector(`section.diary[data-room='${DIARY}'] .diary-entry:has-text('Exercices 4 et 5 p. 32')`);

      assert.deepEqual(problems, []);
      assert.deepEqual(pageErrors, []);
    } catch (err) {
      await pupil?.screenshot({ path: join(ARTIFACTS, `agenda-week-${size.name}-failure.png`) }).catch(() => {});
      throw err;
    } finally {
      await browser.close();
      await srv.stop();
    }
  });
}
