// The homework diary in the browser (Debian's Chromium through
// playwright-core, the real server serving dist/), at phone and desktop
// sizes: a teacher opens the class's diary and writes homework while the
// load of the due day is shown; a pupil sees it arrive and ticks « Fait »;
// the teacher's count follows; the parent of two children in two classes
// signs in on « La semaine de mes enfants » and finds each child's
// homework under their name, with Ana's mark; the calendar address is
// shown, answers, and is revoked. axe-core on every screen, no page
// error, no horizontal scrolling, touch targets of 44 px. Screenshots go
// to test-artifacts/diary-<size>-<screen>.png.

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import type { Browser, Page } from "playwright-core";
import { diaryOf } from "../src/homework.js";
import { agendaAdd } from "../src/agenda.js";
import { CLIENTS_DIR, PREAU_BIN, TEACHER, TestServer, axeViolations, layoutProblems, signToken, type UserSpec } from "./harness.js";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const DIST = join(CLIENTS_DIR, "dist");
const ARTIFACTS = join(CLIENTS_DIR, "test-artifacts");
const DIARY = diaryOf("3B");
const DIARY_4A = diaryOf("4A");
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
  if (process.env.PREAU_REQUIRE_BROWSER === "1") throw new Error(`diary browser tests cannot run: ${skip}`);
  console.log(`# diary browser tests skipped: ${skip}`);
}
// The parent signs in with the demo button (the demo users are part of what is tested).
const serverHasDemo = serveHelp.includes("--demo");

const ANA: UserSpec = { user: "ana", name: "Ana Martin", role: "student", classes: ["3B"] };
const BERNARD: UserSpec = { user: "t-bernard", name: "Mme Bernard", role: "teacher", classes: ["3B"] };
const ROUX: UserSpec = { user: "t-roux", name: "Mme Roux", role: "teacher", classes: ["4A"] };
/** The demo's parent (common.ts, DEMO_USERS), when the server has no demo mode. */
const MUM: UserSpec = {
  user: "p-martin",
  name: "Mme Martin",
  role: "parent",
  classes: ["3B", "4A"],
  children: [
    { id: "ana", name: "Ana Martin", classes: ["3B"] },
    { id: "leo", name: "Léo Martin", classes: ["4A"] },
  ],
};

const SIZES = [
  { name: "phone", viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true },
  { name: "desktop", viewport: { width: 1280, height: 800 }, isMobile: false, hasTouch: false },
];

// Days as the app counts them (local time, weeks from Monday).
const pad = (n: number) => String(n).padStart(2, "0");
const dayOf = (d: Date) => `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
function addDays(day: string, n: number): string {
  const [y, m, d] = day.split("-").map(Number);
  return dayOf(new Date(y, m - 1, d + n));
}
const longDay = (day: string) => {
  const [y, m, d] = day.split("-").map(Number);
  return new Intl.DateTimeFormat("fr-FR", { weekday: "long", day: "numeric", month: "long" }).format(new Date(y, m - 1, d));
};
const now = new Date();
const MONDAY = addDays(dayOf(now), -((now.getDay() + 6) % 7));
/** The due day of every item: Thursday of this week. */
const DUE = addDays(MONDAY, 3);


for (const size of SIZES) {
  test(`diary at ${size.name} size: the teacher writes with the day's load shown, a pupil ticks « Fait » live, the parent's week has both children, the calendar address is revoked`, { skip, timeout: 180_000 }, async () => {
    const srv = await TestServer.start(["--rate-per-sec", "1000", "--rate-burst", "1000", "--web-dir", DIST, ...(serverHasDemo ? ["--demo"] : [])]);
    const { chromium } = await import("playwright-core");
    const browser: Browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
    mkdirSync(ARTIFACTS, { recursive: true });
    const pageErrors: string[] = [];
    const problems: string[] = [];
    const pages: Page[] = [];
    try {
      const newPage = async () => {
        const context = await browser.newContext({ viewport: size.viewport, isMobile: size.isMobile, hasTouch: size.hasTouch, locale: "fr-FR" });
        await context.grantPermissions(["clipboard-read", "clipboard-write"]);
        const page = await context.newPage();
        page.on("pageerror", (e) => pageErrors.push(String(e)));
        pages.push(page);
        return page;
      };
      const signInAs = async (page: Page, u: UserSpec) => {
        await page.goto(`${srv.httpUrl}/`);
        await page.fill("#token", await srv.token(u));
        await page.click("text=Se connecter");
        await page.waitForSelector(`header .me:has-text('${u.name}')`);
      };
      /** axe, layout, and a screenshot of the screen as it is. */
      const check = async (page: Page, screen: string) => {
        problems.push(...(await axeViolations(page)).map((v) => `${screen}: ${v}`));
        problems.push(...(await layoutProblems(page, "label.done-check")).map((v) => `${screen}: ${v}`));
        await page.screenshot({ path: join(ARTIFACTS, `diary-${size.name}-${screen}.png`), fullPage: false });
      };

      // The teacher opens the class's diary from the app: a kind with no name to choose.
      const teacher = await newPage();
      await signInAs(teacher, TEACHER);
      if (size.isMobile) assert.equal(await teacher.locator("aside").isVisible(), true, "a teacher starts from the list");
      await teacher.selectOption("#open-kind", "homework");
      assert.equal(await teacher.locator("#open-name").isVisible(), false, "the diary has no name to choose");
      await teacher.click(".open-room button[type='submit']");
      await teacher.waitForSelector(`section.diary[data-room='${DIARY}'] h2:text-is('Cahier de textes · 3B')`);
      await teacher.waitForSelector(`.rooms li[data-room='${DIARY}'] .name:text-is('Cahier de textes')`, { state: "attached" });

      // A colleague has already set two items due Thursday (from Node).
      const bernard = await srv.client(BERNARD);
      await bernard.join(DIARY);
      await bernard.homeworkWrite(DIARY, { what: "homework", subject: "Maths", text: "Exercices 1 à 3 p. 54", date: MONDAY, due: DUE, minutes: 30 });
      await bernard.homeworkWrite(DIARY, { what: "homework", subject: "Français", text: "Lire le chapitre 2", date: MONDAY, due: DUE, minutes: 45, links: ["https://fr.wikisource.org/wiki/Le_Petit_Prince"] });
      await bernard.homeworkWrite(DIARY, { what: "lesson", subject: "Maths", text: "Théorème de Pythagore : démonstration", date: MONDAY });
      // And the class agenda has a trip on Wednesday afternoon (the parent's week lists it).
      await bernard.join(AGENDA);
      const [y, m, d] = addDays(MONDAY, 2).split("-").map(Number);
      await agendaAdd(bernard, AGENDA, { title: "Sortie au théâtre", starts: new Date(y, m - 1, d, 14).getTime(), ends: new Date(y, m - 1, d, 17).getTime(), place: "Théâtre municipal" });

      // The pupil opens the diary before the teacher writes: what comes next arrives live.
      const pupil = await newPage();
      await signInAs(pupil, ANA);
      if (size.isMobile) {
        assert.equal(await pupil.locator("aside").isVisible(), true, "on a phone, a pupil starts from the list");
      } else {
        // A wide screen shows the pupil's week beside the list.
        await pupil.waitForSelector("section.home h2:text-is('À faire cette semaine')");
        await pupil.waitForSelector("section.home .diary-entry:has-text('Exercices 1 à 3 p. 54')");
        await check(pupil, "pupil-home");
      }
      // The diary is the first kind for a pupil.
      const firstKind = await pupil.locator("section.class-rooms[data-class='3B'] .kind-group").first().getAttribute("data-kind");
      assert.equal(firstKind, "homework");
      await pupil.click(`.rooms li[data-room='${DIARY}'] button`);
      await pupil.waitForSelector(`section.diary[data-room='${DIARY}'] .diary-entry:has-text('Lire le chapitre 2')`);
      // Lessons « Séance du … », homework « À faire pour le … », the subject written on its colour, links open apart.
      await pupil.waitForSelector(`.diary-day h3:text-is('Séance du ${longDay(MONDAY)}')`);
      await pupil.waitForSelector(`.diary-day h3:text-is('À faire pour le ${longDay(DUE)}')`);
      const link = pupil.locator(".diary-entry a[href='https://fr.wikisource.org/wiki/Le_Petit_Prince']");
      assert.equal(await link.getAttribute("target"), "_blank");
      assert.equal(await link.getAttribute("rel"), "noopener noreferrer");
      await pupil.waitForSelector(".diary-entry:has-text('Exercices 1 à 3 p. 54') .entry-meta:has-text('30 min estimées')");
      assert.equal(await pupil.locator(".week-buttons button:text-is('Cette semaine')").isDisabled(), true);

      // The teacher writes homework due Thursday; the load of that day shows as the day is picked.
      await teacher.click(".diary-new summary:text-is('Nouvelle entrée')");
      await teacher.selectOption("#hw-what", "homework");
      await teacher.fill("#hw-subject", "Histoire");
      await teacher.fill("#hw-text", "Frise de la Révolution française (1789-1799)");
      await teacher.fill("#hw-date", MONDAY);
      await teacher.fill("#hw-due", DUE);
      await teacher.waitForSelector(`#hw-load .load-day:text-is('Déjà 2 travaux pour le ${longDay(DUE)} (1 h 15 estimées)')`);
      // And the days around it.
      await teacher.waitForSelector(`#hw-load .load-around li:has-text('rien')`);
      await teacher.fill("#hw-minutes", "20");
      await teacher.fill("#hw-links", "https://fr.wikipedia.org/wiki/R%C3%A9volution_fran%C3%A7aise");
      await teacher.locator("#hw-load").scrollIntoViewIfNeeded();
      await check(teacher, "teacher-form");
      await teacher.click(".diary-form button[type='submit']");
      await teacher.waitForSelector(".diary-entry:has-text('Frise de la Révolution française')");
      // The form is ready for the next entry of the same lesson.
      assert.equal(await teacher.inputValue("#hw-subject"), "Histoire");
      assert.equal(await teacher.inputValue("#hw-text"), "");
      // A third item due Thursday: the load says so now.
      await teacher.fill("#hw-due", addDays(DUE, -1));
      await teacher.fill("#hw-due", DUE);
      await teacher.waitForSelector(`#hw-load .load-day:text-is('Déjà 3 travaux pour le ${longDay(DUE)} (1 h 35 estimées)')`);

      // A scheduled entry: its author sees when it will be shown; the class does not see it.
      const tomorrow = new Date(Date.now() + 24 * 3600_000);
      await teacher.selectOption("#hw-what", "lesson");
      await teacher.fill("#hw-subject", "Histoire");
      await teacher.fill("#hw-text", "Contrôle surprise : ne pas publier trop tôt");
      await teacher.fill("#hw-date", DUE);
      await teacher.fill("#hw-publish", `${dayOf(tomorrow)}T08:00`);
      await teacher.click(".diary-form button[type='submit']");
      const scheduled = teacher.locator(".diary-entry:has-text('Contrôle surprise')");
      // A lesson of Thursday: in this week's view.
      await scheduled.locator(`.scheduled:text-is('Publication prévue le ${longDay(dayOf(tomorrow))} à 08:00')`).waitFor();

      // The pupil saw the homework arrive, and ticks « Fait ».
      const item = pupil.locator(".diary-entry:has-text('Frise de la Révolution française')");
      await item.waitFor();
      await item.locator(".entry-links a:text-is('https://fr.wikipedia.org/wiki/R%C3%A9volution_fran%C3%A7aise')").waitFor();
      await item.locator("label.done-check:has-text('Fait')").click();
      await pupil.waitForFunction(() => {
        const li = [...document.querySelectorAll(".diary-entry")].find((x) => x.textContent?.includes("Frise de la Révolution"));
        return (li?.querySelector("input[type=checkbox]") as HTMLInputElement | null)?.checked === true;
      });
      assert.equal(await pupil.locator(".diary-entry:has-text('Contrôle surprise')").count(), 0, "a scheduled entry is not shown to the class");

      // The teacher changes their entry (a new version): it reaches the pupil, marked as changed, her mark kept.
      await teacher.locator(".diary-entry:has-text('Frise de la Révolution française') button.edit").click();
      await teacher.waitForSelector(".diary-form h3:text-is(\"Modifier l'entrée (Histoire)\")");
      assert.equal(await teacher.inputValue("#hw-text"), "Frise de la Révolution française (1789-1799)");
      assert.equal(await teacher.locator("#hw-publish").isVisible(), false, "a public entry has no publication time");
      await teacher.fill("#hw-text", "Frise de la Révolution française (1789-1799), avec cinq dates");
      await teacher.click(".diary-form button[type='submit']:text-is('Enregistrer la modification')");
      await item.locator(".entry-text:text-is('Frise de la Révolution française (1789-1799), avec cinq dates')").waitFor();
      await item.locator(".edited:text-is('modifié')").waitFor();
      assert.equal(await item.locator("input[type=checkbox]").isChecked(), true, "the mark is the entry's, not the version's");
      // Deleted, after a confirmation: gone from the teacher's view.
      let asked = "";
      teacher.once("dialog", (dialog) => {
        asked = dialog.message();
        void dialog.accept();
      });
      await teacher.locator(".diary-entry:has-text('Contrôle surprise') button.delete").click();
      await teacher.waitForSelector(".diary-entry:has-text('Contrôle surprise')", { state: "detached" });
      assert.match(asked, /^Supprimer cette séance \(Histoire\) \?/);
      // The deletion reaches the pupil too, whose view then re-renders:
      // wait for it, and scroll again if a re-render detached the entry
      // mid-scroll (seen under load in CI).
      await pupil.waitForSelector(".diary-entry:has-text('Contrôle surprise')", { state: "detached" });
      for (let tries = 0; ; tries++) {
        try {
          await item.scrollIntoViewIfNeeded({ timeout: 5_000 });
          break;
        } catch (err) {
          if (tries >= 4 || !String(err).includes("not attached")) throw err;
          await pupil.waitForTimeout(100);
        }
      }
      await check(pupil, "pupil-diary");
      // Settled: nothing re-renders the view any more (no reload loop).
      const mutations = await pupil.evaluate(
        () =>
          new Promise<number>((resolve) => {
            let n = 0;
            const observer = new MutationObserver((records) => (n += records.length));
            observer.observe(document.querySelector("section.diary .diary-days")!, { childList: true, subtree: true, attributes: true });
            setTimeout(() => {
              observer.disconnect();
              resolve(n);
            }, 1500);
          }),
      );
      assert.equal(mutations, 0, "the pupil's diary is quiet once settled");

      // The teacher's count follows (counts come with listings: a week back and forth reloads).
      await teacher.click(".week-buttons button:text-is('Semaine suivante')");
      await teacher.waitForSelector(".week-label:has-text('Semaine prochaine')");
      await teacher.click(".week-buttons button:text-is('Cette semaine')");
      await teacher.waitForSelector(".diary-entry:has-text('Frise de la Révolution française') .done-count:text-is(\"1 élève l'a fait\")");
      await teacher.waitForSelector(".diary-entry:has-text('Exercices 1 à 3 p. 54') .done-count:text-is(\"Aucun élève ne l'a fait pour l'instant\")");
      await teacher.locator(".diary-entry:has-text('Frise de la Révolution française')").scrollIntoViewIfNeeded();
      await check(teacher, "teacher-diary");
      // The console lists the diary and shows the week's entries with their counts (read-only).
      const desk = await newPage();
      await desk.goto(`${srv.httpUrl}/console/?room=${encodeURIComponent(DIARY)}`);
      await desk.fill("#token", await srv.token(TEACHER));
      await desk.click("text=Se connecter");
      await desk.waitForSelector(`.console-rooms li.active[data-room='${DIARY}'] button:text-is('Cahier de textes · 3B')`);
      await desk.waitForSelector(".diary-card tr:has-text('Frise de la Révolution française') td.done:text-is('1 élève')");
      await desk.waitForSelector(".diary-card tr:has-text('Exercices 1 à 3 p. 54') td.done:text-is('aucun élève')");
      assert.equal(await desk.locator(".diary-card button, .diary-card input").count(), 0, "read-only");
      // The deletion above, in the class's log, in words true of a diary.
      await desk.waitForSelector(".audit li:has-text('M. Durand a supprimé une entrée du cahier de textes.')");
      problems.push(...(await axeViolations(desk)).map((v) => `console: ${v}`));
      await desk.screenshot({ path: join(ARTIFACTS, `diary-${size.name}-console.png`) });
      await desk.context().close();

      // Léo's class has a diary too.
      const roux = await srv.client(ROUX);
      await roux.join(DIARY_4A);
      await roux.homeworkWrite(DIARY_4A, { what: "homework", subject: "SVT", text: "Schéma de la cellule animale", date: MONDAY, due: DUE, minutes: 25 });

      // The parent signs in: their children's week first.
      const parent = await newPage();
      if (serverHasDemo) {
        await parent.goto(`${srv.httpUrl}/`);
        await parent.click("button:has-text('Parent (Mme Martin : Ana en 3B, Léo en 4A)')");
      } else {
        await parent.goto(`${srv.httpUrl}/`);
        await parent.fill("#token", signToken(MUM));
        await parent.click("text=Se connecter");
      }
      await parent.waitForSelector("header .me:has-text('Mme Martin')");
      await parent.waitForSelector("section.home h2:text-is('La semaine de mes enfants')");
      assert.equal(await parent.locator("section.home").isVisible(), true, "the first screen, at every size");
      const ana = parent.locator("section.child-week[data-child='ana']");
      const leo = parent.locator("section.child-week[data-child='leo']");
      await ana.locator("h3:text-is('Ana Martin (3B)')").waitFor();
      await leo.locator("h3:text-is('Léo Martin (4A)')").waitFor();
      await ana.locator(".diary-entry:has-text('Frise de la Révolution française') .done-by.done:text-is('✓ Fait par Ana Martin')").waitFor();
      await ana.locator(".diary-entry:has-text('Exercices 1 à 3 p. 54') .done-by:text-is('Pas encore fait par Ana Martin')").waitFor();
      await leo.locator(".diary-entry:has-text('Schéma de la cellule animale')").waitFor();
      // The week's agenda of the children's classes.
      await parent.waitForSelector(".home-agenda .agenda-item:has-text('Sortie au théâtre'):has-text('14:00 – 17:00 · 3B')");
      assert.equal(await leo.locator(".diary-entry:has-text('Frise de la Révolution')").count(), 0, "Ana's homework is not Léo's");
      assert.equal(await ana.locator(".diary-entry:has-text('Schéma de la cellule')").count(), 0, "nor the other way round");
      assert.equal(await parent.locator("section.home .diary-entry:has-text('Contrôle surprise')").count(), 0);
      assert.equal(await parent.locator("section.home input[type=checkbox]").count(), 0, "parents read, pupils tick");
      await check(parent, "parent-home");
      // A mark arrives live: Ana ticks the Maths item (from her phone).
      const anaPhone = await srv.client(ANA);
      await anaPhone.join(DIARY);
      const maths = (await anaPhone.homework(DIARY, MONDAY, addDays(MONDAY, 6))).entries.find((e) => e.subject === "Maths" && e.what === "homework")!;
      await anaPhone.homeworkDone(DIARY, maths.entry, true);
      await ana.locator(".diary-entry:has-text('Exercices 1 à 3 p. 54') .done-by.done:text-is('✓ Fait par Ana Martin')").waitFor();
      // Next week: nothing yet, said per child.
      await parent.click("section.home .week-buttons button:text-is('Semaine suivante')");
      await ana.locator("p.empty:text-is('Aucun travail à faire pour Ana Martin la semaine prochaine.')").waitFor();
      await parent.click("section.home .week-buttons button:text-is('Cette semaine')");
      await ana.locator(".diary-entry:has-text('Frise de la Révolution française')").waitFor();

      // « Abonner mon agenda »: the address, which answers, then revoked.
      await parent.click("#feed-get");
      await parent.waitForSelector("#feed-url:visible");
      const url = await parent.inputValue("#feed-url");
      assert.match(url, new RegExp(`^${srv.httpUrl.replace(/\./g, "\\.")}/cal/.+\\.ics$`));
      assert.equal(await parent.getAttribute("#feed-webcal", "href"), url.replace(/^https?:/, "webcal:"));
      const feed = await fetch(url);
      assert.equal(feed.status, 200);
      assert.match(feed.headers.get("content-type") ?? "", /^text\/calendar/);
      const ics = await feed.text();
      assert.ok(ics.includes("Léo Martin · À faire : SVT (4A)"), ics);
      await parent.click("button:text-is(\"Copier l'adresse\")");
      await parent.waitForSelector(".feed-status:text-is('Adresse copiée.')");
      await parent.locator(".feed-card").scrollIntoViewIfNeeded();
      await check(parent, "parent-calendar");
      parent.once("dialog", (d) => void d.accept());
      await parent.click("#feed-revoke");
      await parent.waitForSelector(".feed-status:text-is('Adresse révoquée : elle ne donne plus accès à votre agenda.')");
      assert.equal((await fetch(url)).status, 404);
      assert.equal(await parent.locator("#feed-url").isVisible(), false);

      // The parent opens Léo's class diary: his line under each homework.
      if (size.isMobile) await parent.click("button.back");
      await parent.click(`.rooms li[data-room='${DIARY_4A}'] button`);
      await parent.waitForSelector(`section.diary[data-room='${DIARY_4A}'] .diary-entry:has-text('Schéma de la cellule animale') .done-by:text-is('Pas encore fait par Léo Martin')`);
      assert.equal(await parent.locator("#hw-subject").count(), 0, "parents do not write");
      await check(parent, "parent-diary");

      assert.deepEqual(problems, []);
      assert.deepEqual(pageErrors, []);
    } catch (err) {
      // What each page showed when it failed.
      for (const [i, page] of pages.entries()) await page.screenshot({ path: join(ARTIFACTS, `diary-${size.name}-failure-${i}.png`) }).catch(() => {});
      throw err;
    } finally {
      await browser.close();
      await srv.stop();
    }
  });
}

/** Polls an asynchronous check (IndexedDB, the Cache API) until true. */
async function until(what: string, check: () => Promise<boolean>, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

test("diary offline at phone size: a pupil's diary and a parent's week are read from the copy, read-only", { skip, timeout: 150_000 }, async () => {
  const srv = await TestServer.start(["--rate-per-sec", "1000", "--rate-burst", "1000", "--web-dir", DIST]);
  const { chromium } = await import("playwright-core");
  const browser: Browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  const pageErrors: string[] = [];
  try {
    const prof = await srv.client(TEACHER);
    await prof.join(DIARY);
    await prof.homeworkWrite(DIARY, { what: "homework", subject: "Anglais", text: "Apprendre les verbes irréguliers", date: MONDAY, due: DUE, minutes: 15 });
    await prof.homeworkWrite(DIARY, { what: "lesson", subject: "Anglais", text: "Le prétérit", date: MONDAY });

    /** Signs in on a phone, lets `visit` load what is to be kept, then reloads the page without network. */
    const offlinePage = async (token: string, visit: (page: Page) => Promise<void>) => {
      const context = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, locale: "fr-FR" });
      const page = await context.newPage();
      page.on("pageerror", (e) => pageErrors.push(String(e)));
      await page.goto(`${srv.httpUrl}/`);
      await page.fill("#token", token);
      await page.click("text=Se connecter");
      await visit(page);
      // The app's files and the diary's chunk are in the service worker's cache.
      await until("the shell and the diary chunk cached", () =>
        page.evaluate(async () => {
          if (!navigator.serviceWorker?.controller) return false;
          const assets = await caches.open("preau-assets");
          return (await assets.keys()).some((r) => /\/chunks\/diary-/.test(r.url)) && Boolean(await (await caches.open("preau-shell")).match("/app.js"));
        }),
      );
      await context.setOffline(true);
      await page.reload();
      await page.waitForSelector(".offline:has-text('Hors ligne')", { timeout: 30_000 });
      return page;
    };
    const kept = (page: Page, key: string, text: string) =>
      until(`the copy of ${key}`, () =>
        page.evaluate(
          async ([key, text]) => {
            const req = <T>(r: IDBRequest<T>) => new Promise<T>((res, rej) => ((r.onsuccess = () => res(r.result)), (r.onerror = () => rej(r.error))));
            const db = await req(indexedDB.open("preau-offline"));
            if (!db.objectStoreNames.contains("copies")) return false;
            const values = await req(db.transaction("copies").objectStore("copies").getAll());
            db.close();
            return values.some((v: any) => v?.room === key && JSON.stringify(v).includes(text));
          },
          [key, text],
        ),
      );

    // The pupil read the diary and her week online.
    const pupil = await offlinePage(await srv.token(ANA), async (page) => {
      await page.click(`.rooms li[data-room='${DIARY}'] button`);
      await page.waitForSelector(".diary-entry:has-text('Apprendre les verbes irréguliers')");
      await page.click("button.back");
      await page.click(".rooms li[data-room='@home'] button");
      await page.waitForSelector("section.home .diary-entry:has-text('Apprendre les verbes irréguliers')");
      await kept(page, DIARY, "Le prétérit");
      await kept(page, "@home", "Apprendre les verbes irréguliers");
    });
    await pupil.click(`.rooms li[data-room='${DIARY}'] button`);
    await pupil.waitForSelector(".diary-entry:has-text('Le prétérit')");
    await pupil.waitForSelector(".diary .notice:text-is(\"Hors ligne : lecture seule jusqu'au retour du réseau.\")");
    assert.equal(await pupil.locator(".diary-entry:has-text('Apprendre les verbes irréguliers') input[type=checkbox]").isDisabled(), true, "nothing is marked offline");
    assert.deepEqual(await axeViolations(pupil), [], "offline diary");
    await pupil.screenshot({ path: join(ARTIFACTS, "diary-phone-offline-pupil.png") });

    // The parent's first screen, from the copy.
    const parent = await offlinePage(signToken(MUM), async (page) => {
      await page.waitForSelector("section.child-week[data-child='ana'] .diary-entry:has-text('Apprendre les verbes irréguliers')");
      await kept(page, "@home", "Apprendre les verbes irréguliers");
    });
    await parent.waitForSelector("section.child-week[data-child='ana'] .diary-entry:has-text('Apprendre les verbes irréguliers') .done-by:text-is('Pas encore fait par Ana Martin')");
    await parent.waitForSelector("section.home .notice:text-is('Hors ligne : la semaine telle qu\\'elle était chargée, en lecture seule.')");
    assert.deepEqual(await axeViolations(parent), [], "offline week");
    await parent.screenshot({ path: join(ARTIFACTS, "diary-phone-offline-parent.png") });
    assert.deepEqual(pageErrors, []);
  } finally {
    await browser.close();
    await srv.stop();
  }
});
