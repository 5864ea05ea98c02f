// The web app offline, in Debian's Chromium at phone size, against the real
// server: a pupil reloads the page without network and still reads what was
// loaded (service worker for the app's files, IndexedDB for the rooms),
// read-only, with the "Hors ligne" banner; back online, what was posted
// meanwhile arrives once. Signing out, or closing the tab, leaves nothing of
// the pupil in IndexedDB.
//
// The network is cut with Playwright's context.setOffline (Chromium's own
// network emulation, service worker included): nothing is mocked.

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { createRequire } from "node:module";
import type { BrowserContext, Page } from "playwright-core";
import * as Y from "yjs";
import { Awareness } from "y-protocols/awareness";
import { agendaAdd } from "../src/agenda.js";
import { PreauProvider } from "../src/yjs-provider.js";
import { ALICE, BOB, CLIENTS_DIR, PREAU_BIN, TEACHER, TestServer, sleep, type UserSpec } from "./harness.js";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const DIST = join(CLIENTS_DIR, "dist");
const ARTIFACTS = join(CLIENTS_DIR, "test-artifacts");
const AXE_PATH = createRequire(import.meta.url).resolve("axe-core/axe.min.js");
const PHONE = { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, locale: "fr-FR" };

const serverHasWebDir = existsSync(PREAU_BIN) && execFileSync(PREAU_BIN, ["serve", "--help"]).toString().includes("--web-dir");
const skip = !existsSync(CHROMIUM)
  ? `no Chromium at ${CHROMIUM}: run scripts/install-chromium.sh`
  : !existsSync(join(DIST, "sw.js"))
    ? "dist/ is not built: run npm run build"
    : !serverHasWebDir
      ? "the préau binary cannot serve dist/ (--web-dir): the service worker needs the app's own origin"
      : false;
if (skip) {
  if (process.env.PREAU_REQUIRE_BROWSER === "1") throw new Error(`offline browser tests cannot run: ${skip}`);
  console.log(`# offline browser tests skipped: ${skip}`);
}

async function setup() {
  const srv = await TestServer.start(["--rate-per-sec", "1000", "--rate-burst", "1000", "--web-dir", DIST]);
  const { chromium } = await import("playwright-core");
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  mkdirSync(ARTIFACTS, { recursive: true });
  return {
    srv,
    browser,
    async close() {
      await browser.close();
      await srv.stop();
    },
  };
}

/** axe-core's serious and critical violations (WCAG 2 A and AA rules), as in browser.test.ts. */
async function axeViolations(page: Page): Promise<string[]> {
  await page.addScriptTag({ path: AXE_PATH });
  const found = await page.evaluate(async () => {
    const result = await (window as any).axe.run(document, { runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"] } });
    return result.violations.map((v: any) => ({ id: v.id, impact: v.impact, nodes: v.nodes.map((n: any) => n.target.join(" ")).slice(0, 3) }));
  });
  return found.filter((v: any) => v.impact === "serious" || v.impact === "critical").map((v: any) => `${v.id} (${v.impact}): ${v.nodes.join(", ")}`);
}

/** Everything the page's origin holds in IndexedDB (every database, every store), as JSON text. */
function indexedDbDump(page: Page): Promise<string> {
  return page.evaluate(async () => {
    const dump: Record<string, unknown> = {};
    const req = <T>(r: IDBRequest<T>) => new Promise<T>((res, rej) => ((r.onsuccess = () => res(r.result)), (r.onerror = () => rej(r.error))));
    for (const info of await indexedDB.databases()) {
      if (!info.name) continue;
      const db = await req(indexedDB.open(info.name));
      for (const name of [...db.objectStoreNames]) {
        const tx = db.transaction(name, "readonly");
        const store = tx.objectStore(name);
        const [keys, values] = await Promise.all([req(store.getAllKeys()), req(store.getAll())]);
        dump[`${info.name}/${name}`] = keys.map((k, i) => [k, values[i]]);
      }
      db.close();
    }
    return JSON.stringify(dump);
  });
}

/** The records of the app's offline copy (`preau-offline`), keys only. */
async function offlineKeys(page: Page): Promise<unknown[]> {
  const dump = JSON.parse(await indexedDbDump(page)) as Record<string, Array<[unknown, unknown]>>;
  return (dump["preau-offline/copies"] ?? []).map(([k]) => k);
}

async function signIn(page: Page, srv: TestServer, u: UserSpec): Promise<void> {
  await page.fill("#token", await srv.token(u));
  await page.click("text=Se connecter");
  await page.waitForSelector(`header .me:has-text('${u.name}')`);
}

/**
 * Polls `check` until it is true, or fails with `what`. (Not
 * page.waitForFunction: it does not wait for a promise, and these checks
 * read IndexedDB and the Cache API, both asynchronous.)
 */
async function until(what: string, check: () => Promise<boolean>, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

/** The service worker controls the page and holds the app's files (cached from the first load). */
async function shellCached(page: Page): Promise<void> {
  await until("the service worker and its cache", () =>
    page.evaluate(async () => {
      if (navigator.serviceWorker?.controller == null) return false;
      const shell = await caches.open("preau-shell");
      return Boolean((await shell.match("/")) && (await shell.match("/app.js")) && (await shell.match("/style.css")));
    }),
  );
}

/** The offline copy of `room` holds `text` (saves are grouped, so it comes shortly after the screen). */
async function stored(page: Page, room: string, text: string): Promise<void> {
  await until(`the offline copy of ${room} with "${text}"`, async () => {
    const dump = JSON.parse(await indexedDbDump(page)) as Record<string, Array<[unknown, any]>>;
    return (dump["preau-offline/copies"] ?? []).some(([, v]) => v?.room === room && JSON.stringify(v).includes(text));
  });
}

/** Nothing at all in the app's offline copy (the database may not even exist). */
async function copyEmpty(page: Page): Promise<void> {
  await until("an empty offline copy", async () => (await offlineKeys(page)).length === 0);
}

function messages(page: Page): Promise<string[]> {
  return page.locator(".messages li.message .text").allTextContents();
}

test("phone, reload without network: the pupil reads the rooms loaded before, read-only; back online, what was posted meanwhile comes once; signing out leaves nothing in IndexedDB", { skip, timeout: 150_000 }, async () => {
  const env = await setup();
  let context: BrowserContext | undefined;
  try {
    const { srv, browser } = env;
    const CHAT = "3B/chat/tunnel";
    const FORUM = "3B/forum/entraide";
    const AGENDA = "3B/agenda/devoirs";
    const NOTE = "3B/notes/fractions";
    await srv.open(CHAT, AGENDA, NOTE);
    const prof = await srv.client(TEACHER);
    await prof.configureForum(FORUM, { flavour: "help" });
    await prof.join(AGENDA);
    // Today, noon: in the week the agenda opens on (tomorrow may be next week).
    const noon = new Date();
    noon.setHours(12, 0, 0, 0);
    await agendaAdd(prof, AGENDA, { title: "Exposé d'histoire", starts: noon.getTime(), place: "Salle 4" });
    await prof.join(FORUM);
    const bob = await srv.client(BOB);
    await bob.join(CHAT);
    await bob.join(FORUM);
    const before = ["Le cours de demain est en salle 12.", "N'oubliez pas la calculatrice.", "Le contrôle porte sur le chapitre 3."];
    for (const text of before) await bob.post(CHAT, text);
    const question = await bob.newThread(FORUM, "Théorème de Thalès", "Quand peut-on l'appliquer ?");
    await prof.reply(FORUM, question.offset, "Avec deux droites parallèles.");
    // The teacher writes the note (a Yjs document, as the app's editor does).
    const noteDoc = new Y.Doc();
    const awareness = new Awareness(noteDoc);
    awareness.setLocalStateField("user", { name: "M. Durand" });
    const provider = new PreauProvider(prof, NOTE, noteDoc, { awareness });
    await provider.whenSynced();
    noteDoc.getText("content").insert(0, "Chapitre 3 : les fractions\nUn tiers plus un sixième font un demi.");
    await provider.whenSynced();
    provider.destroy();
    awareness.destroy();

    context = await browser.newContext(PHONE);
    const page = await context.newPage();
    const pageErrors: string[] = [];
    page.on("pageerror", (e) => pageErrors.push(String(e)));
    await page.goto(`${srv.httpUrl}/`);
    await signIn(page, srv, ALICE);

    // Online: the pupil reads the chat, a forum thread and the agenda.
    await page.click(`.rooms li[data-room='${CHAT}'] button`);
    for (const text of before) await page.waitForSelector(`.messages .text:text-is("${text}")`);
    await page.click("button.back");
    await page.click(`.rooms li[data-room='${FORUM}'] button`);
    await page.click(".thread-item:has-text('Théorème de Thalès')");
    await page.waitForSelector(".posts .text:text-is('Avec deux droites parallèles.')");
    await page.click("button.back");
    await page.click(`.rooms li[data-room='${AGENDA}'] button`);
    await page.waitForSelector(".agenda-item:has-text(\"Exposé d'histoire\")");
    await page.click("button.back");
    await page.click(`.rooms li[data-room='${NOTE}'] button`);
    await page.waitForSelector(".cm-content:has-text('Un tiers plus un sixième font un demi.')");
    await page.click("button.back");
    await shellCached(page);
    await stored(page, CHAT, before[2]);
    await stored(page, FORUM, "Avec deux droites parallèles.");
    await stored(page, AGENDA, "Exposé d'histoire");
    await stored(page, NOTE, "Un tiers plus un sixième font un demi.");

    // The network goes, and the page is reloaded (a phone that reopens the tab).
    await context.setOffline(true);
    await page.reload();
    await page.waitForSelector(".offline:has-text('Hors ligne : vous lisez ce qui était déjà chargé.')", { timeout: 30_000 });
    assert.notEqual(await page.evaluate(() => (window as any).preau.client.state), "open", "really offline: no connection to the server");
    // The directory, as loaded before.
    await page.waitForSelector(`.rooms li[data-room='${CHAT}']`);
    await page.waitForSelector(`.rooms li[data-room='${FORUM}']`);
    await page.waitForSelector(`.rooms li[data-room='${AGENDA}']`);
    assert.equal(await page.locator("header .me").textContent(), "Alice Martin (élève)");
    assert.deepEqual(await axeViolations(page), [], "offline directory: no serious accessibility violation");
    await page.screenshot({ path: join(ARTIFACTS, "offline-reload-directory.png") });

    // The chat: its messages, read-only.
    await page.click(`.rooms li[data-room='${CHAT}'] button`);
    for (const text of before) await page.waitForSelector(`.messages .text:text-is("${text}")`);
    assert.equal(await page.locator(".composer-input").isDisabled(), true, "nothing can be written offline");
    assert.equal(await page.locator(".composer button[type='submit']").isDisabled(), true);
    await page.waitForSelector(".chat .notice:text-is(\"Hors ligne : lecture seule jusqu'au retour du réseau.\")");
    assert.equal(await page.locator(".messages button.report").first().isVisible(), false, "nothing to report offline");
    assert.equal(await page.locator(".offline").isVisible(), true, "the banner says so");
    assert.deepEqual(await axeViolations(page), [], "offline chat: no serious accessibility violation");
    await page.screenshot({ path: join(ARTIFACTS, "offline-reload-phone.png") });

    // The forum thread and the agenda, as loaded.
    await page.click("button.back");
    await page.click(`.rooms li[data-room='${FORUM}'] button`);
    await page.click(".thread-item:has-text('Théorème de Thalès')");
    await page.waitForSelector(".posts .text:text-is('Avec deux droites parallèles.')");
    assert.equal(await page.locator(".reply-form").isVisible(), false, "no reply form offline");
    assert.equal(await page.locator("button.new-thread").isVisible(), false, "no new thread offline");
    assert.deepEqual(await axeViolations(page), [], "offline forum: no serious accessibility violation");
    await page.screenshot({ path: join(ARTIFACTS, "offline-reload-forum.png") });
    await page.click("button.back");
    await page.click(`.rooms li[data-room='${AGENDA}'] button`);
    await page.waitForSelector(".agenda-item:has-text(\"Exposé d'histoire\"):has-text('Lieu : Salle 4')");
    // The week kept is the week shown, with its navigation; another week is not on the device.
    await page.waitForSelector(".agenda .week-label:has-text('Cette semaine : du lundi')");
    await page.click(".agenda .week-buttons button:text-is('Semaine suivante')");
    await page.waitForSelector(".agenda-days .empty:text-is(\"Non disponible hors ligne : cette semaine n'avait pas été chargée.\")");
    await page.click(".agenda .week-buttons button:text-is('Cette semaine')");
    await page.waitForSelector(".agenda-item:has-text(\"Exposé d'histoire\")");
    // The note: its last text, read-only.
    await page.click("button.back");
    await page.click(`.rooms li[data-room='${NOTE}'] button`);
    await page.waitForSelector("pre.note-offline:has-text('Un tiers plus un sixième font un demi.')");
    await page.waitForSelector(".notes .notice:text-is('Hors ligne : dernière version chargée de cette note, en lecture seule.')");
    assert.equal(await page.locator(".cm-content").count(), 0, "no editor offline");
    assert.deepEqual(await axeViolations(page), [], "offline note: no serious accessibility violation");
    await page.screenshot({ path: join(ARTIFACTS, "offline-reload-note.png") });

    // Meanwhile Bob writes, more than one page of history (50): the pupil
    // cannot see it yet, and will get it all, with no gap (a join with
    // `since` from the copy, not only the last page).
    const meanwhile = ["Pendant la coupure : le contrôle est reporté."];
    for (let i = 1; i <= 60; i++) meanwhile.push(`Révision ${i}`);
    for (const text of meanwhile) await bob.post(CHAT, text);
    await page.click("button.back");
    await page.click(`.rooms li[data-room='${CHAT}'] button`);
    await sleep(1000);
    assert.equal(await page.locator(".messages .text:has-text('Pendant la coupure')").count(), 0, "offline: nothing new");

    // The network is back: the app reconnects by itself, and the message comes, once.
    await context.setOffline(false);
    await page.waitForSelector(".offline", { state: "hidden", timeout: 30_000 });
    await page.waitForSelector(".messages .text:text-is('Révision 60')", { timeout: 30_000 });
    await page.waitForSelector(".composer-input:enabled");
    assert.equal(await page.locator(".messages button.report").first().isVisible(), true, "reports again once online");
    const after = [...before, ...meanwhile];
    assert.deepEqual(await messages(page), after, "every message once, in order");
    await page.fill(".composer-input", "Merci, bien reçu.");
    await page.press(".composer-input", "Enter");
    await page.waitForSelector(".messages .text:text-is('Merci, bien reçu.')");
    await sleep(500);
    assert.deepEqual(await messages(page), [...after, "Merci, bien reçu."], "no duplicate after the reconnection");
    // The other rooms come back to life as well: the note's editor, the forum's forms.
    await page.click("button.back");
    await page.click(`.rooms li[data-room='${NOTE}'] button`);
    await page.waitForSelector(".cm-content:has-text('Un tiers plus un sixième font un demi.')");
    assert.equal(await page.locator("pre.note-offline").count(), 0);
    await page.click("button.back");
    await page.click(`.rooms li[data-room='${FORUM}'] button`);
    await page.waitForSelector("button.new-thread:text-is('Poser une question')");
    await page.waitForSelector(".reply-form textarea");
    await page.click("button.back");
    await page.click(`.rooms li[data-room='${CHAT}'] button`);

    // Signing out: nothing of Alice is left in IndexedDB.
    await stored(page, CHAT, "Merci, bien reçu.");
    assert.match(await indexedDbDump(page), /Alice Martin/, "the copy was there before signing out");
    await page.click("header button:has-text('Se déconnecter')");
    await page.waitForSelector("form.signin");
    const dump = await indexedDbDump(page);
    for (const trace of ["alice", "Alice Martin", "3B/chat/tunnel", "salle 12", "Thalès", "Exposé", "fractions", "Merci, bien reçu."]) {
      assert.ok(!dump.includes(trace), `after signing out, IndexedDB still holds "${trace}": ${dump.slice(0, 500)}`);
    }
    assert.deepEqual(await offlineKeys(page), []);
    // The service worker's cache holds the app's files, never a response about the user.
    const cached = await page.evaluate(async () => {
      const urls: string[] = [];
      for (const name of await caches.keys()) for (const r of await (await caches.open(name)).keys()) urls.push(new URL(r.url).pathname);
      return urls;
    });
    assert.ok(cached.includes("/") && cached.includes("/app.js"), `the shell is cached: ${cached.join(", ")}`);
    for (const path of cached) assert.match(path, /^\/(|app\.js|style\.css|favicon\.svg|chunks\/.+\.js|katex\/.+)$/, `only the app's files are cached: ${path}`);
    assert.deepEqual(pageErrors, []);
  } catch (err) {
    // What the pupil saw when it failed.
    await context?.pages()[0]?.screenshot({ path: join(ARTIFACTS, "offline-reload-failure.png") }).catch(() => {});
    throw err;
  } finally {
    await context?.close();
    await env.close();
  }
});

test("phone, one device, two pupils: a tab closed without signing out leaves nothing of its pupil to the next one", { skip, timeout: 90_000 }, async () => {
  const env = await setup();
  try {
    const { srv, browser } = env;
    const CHAT = "3B/chat/general";
    await srv.open(CHAT);
    const prof = await srv.client(TEACHER);
    await prof.join(CHAT);
    await prof.post(CHAT, "Bonjour la 3B.");
    const context = await browser.newContext(PHONE);
    /** A pupil reads the chat, then closes the tab without signing out. */
    const readAndLeave = async (page: Page, u: UserSpec) => {
      await page.click(`.rooms li[data-room='${CHAT}'] button`);
      await page.waitForSelector(".messages .text:text-is('Bonjour la 3B.')");
      await stored(page, CHAT, "Bonjour la 3B.");
      const dump = await indexedDbDump(page);
      assert.ok(dump.includes(u.name), `${u.name}'s copy is there`);
      await page.close();
    };

    const first = await context.newPage();
    await first.goto(`${srv.httpUrl}/`);
    await signIn(first, srv, ALICE);
    await readAndLeave(first, ALICE);

    // Bob signs in on the same phone, back from the ENT (the token in the
    // fragment, no sign-in form): once he is in, nothing of Alice is left.
    const second = await context.newPage();
    await second.goto(`${srv.httpUrl}/#token=${await srv.token(BOB)}`);
    await second.waitForSelector("header .me:has-text('Bob Leroy')");
    await until("Alice's copy gone", async () => !(await indexedDbDump(second)).includes("alice"));
    await readAndLeave(second, BOB);

    // Someone opens préau again: a new tab, nobody signed in. Whatever an
    // earlier tab left has outlived its sign-in, and goes.
    const third = await context.newPage();
    await third.goto(`${srv.httpUrl}/`);
    await third.waitForSelector("form.signin");
    await copyEmpty(third);
    const dump = await indexedDbDump(third);
    for (const trace of ["alice", "Alice Martin", "bob", "Bob Leroy", "Bonjour la 3B."]) assert.ok(!dump.includes(trace), `"${trace}" left in IndexedDB: ${dump.slice(0, 500)}`);
    await context.close();
  } finally {
    await env.close();
  }
});
