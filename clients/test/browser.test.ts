// Browser smoke test: Debian's Chromium (driven by playwright-core) opens
// the bundled web app and console (dist/), signs in with tokens, chats,
// reports, mutes, edits a note, and runs a help forum (console opens it,
// a pupil asks, a reply is marked as the answer). Screenshots go to
// test-artifacts/.
//
// The files are served by the préau server itself when it has `--web-dir`;
// with an older binary, by a small static server of this test that also
// forwards `/ws` to préau (same origin, as in production).

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { extname, join, normalize } from "node:path";
import * as Y from "yjs";
import { Awareness } from "y-protocols/awareness";
import { PreauError, type EventFrame } from "../src/client.js";
import { PreauProvider } from "../src/yjs-provider.js";
import type { Page } from "playwright-core";
import { ALICE, BOB, CLIENTS_DIR, PREAU_BIN, TEACHER, TestServer, axeViolations, freePort, waitFor, type UserSpec } from "./harness.js";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const DIST = join(CLIENTS_DIR, "dist");
const ARTIFACTS = join(CLIENTS_DIR, "test-artifacts");
const ROOM = "3B/chat/general";
/**
 * The text of the note open in the page's editor (runs in the page: the
 * app's debugging handle, `window.preau`). Passed to waitForFunction as a
 * page function, so it may use nothing from this file.
 */
declare function noteText(room: string): string;
const NOTE_TEXT_SCRIPT = "window.noteText = (room) => window.preau.app.views.get(room).text();";

const skip = !existsSync(CHROMIUM)
  ? `no Chromium at ${CHROMIUM}: run scripts/install-chromium.sh (apt-get install -y chromium)`
  : !existsSync(join(DIST, "index.html"))
    ? "dist/ is not built: run npm run build"
    : false;
if (skip) {
  // CI installs Chromium and builds dist/ first: there a skip is a failure.
  if (process.env.PREAU_REQUIRE_BROWSER === "1") throw new Error(`browser tests cannot run: ${skip}`);
  console.log(`# browser tests skipped: ${skip}`);
}

const serveHelp = existsSync(PREAU_BIN) ? execFileSync(PREAU_BIN, ["serve", "--help"]).toString() : "";
const serverHasWebDir = serveHelp.includes("--web-dir");
// Demo mode (GET /dev/token) lets the console test sign in with a button.
const serverHasDemo = serverHasWebDir && serveHelp.includes("--demo");

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".map": "application/json",
};

/** Serves dist/ and forwards WebSocket upgrades of /ws to préau's port. */
async function staticServer(preauPort: number): Promise<{ url: string; close: () => Promise<void> }> {
  const server = http.createServer((req, res) => {
    let path = normalize(decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname));
    if (path.endsWith("/")) path += "index.html";
    const file = join(DIST, path);
    if (!file.startsWith(DIST) || !existsSync(file)) {
      res.writeHead(404).end("not found");
      return;
    }
    res.writeHead(200, { "content-type": TYPES[extname(file)] ?? "application/octet-stream" });
    res.end(readFileSync(file));
  });
  server.on("upgrade", (req, socket, head) => {
    const up = net.connect(preauPort, "127.0.0.1", () => {
      const lines = [`${req.method} ${req.url} HTTP/1.1`];
      for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
      up.write(lines.join("\r\n") + "\r\n\r\n");
      up.write(head);
      up.pipe(socket);
      socket.pipe(up);
    });
    up.on("error", () => socket.destroy());
    socket.on("error", () => up.destroy());
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

async function setup() {
  const fast = ["--rate-per-sec", "1000", "--rate-burst", "1000"];
  const srv = await TestServer.start([...fast, ...(serverHasWebDir ? ["--web-dir", DIST, ...(serverHasDemo ? ["--demo"] : [])] : [])]);
  const web = serverHasWebDir ? { url: srv.httpUrl, close: async () => {} } : await staticServer(srv.port);
  const { chromium } = await import("playwright-core");
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  mkdirSync(ARTIFACTS, { recursive: true });
  return {
    srv,
    web,
    browser,
    async close() {
      await browser.close();
      await web.close();
      await srv.stop();
    },
  };
}

test("web app and console: sign in, chat, report, mute", { skip, timeout: 90_000 }, async () => {
  const env = await setup();
  try {
    const { srv, web, browser } = env;
    console.log(`# serving dist/ from ${serverHasWebDir ? "préau --web-dir" : "the test's static server"}`);

    // Staff opens the room (pupils join only rooms that exist); Bob, through
    // the Node client, fills it before Alice comes.
    await srv.open(ROOM);
    const bob = await srv.client(BOB);
    const bobSeen: EventFrame[] = [];
    bob.on("event", (e) => bobSeen.push(e));
    await bob.join(ROOM);
    for (let i = 1; i <= 55; i++) await bob.post(ROOM, `ancien ${i}`);

    // Alice in the browser.
    const alice = await (await browser.newContext({ viewport: { width: 1100, height: 700 } })).newPage();
    const pageErrors: string[] = [];
    alice.on("pageerror", (e) => pageErrors.push(String(e)));
    await alice.goto(`${web.url}/`);
    await alice.fill("#token", await srv.token(ALICE));
    await alice.click("text=Se connecter");
    await alice.waitForSelector("header .me:has-text('Alice Martin')");

    // Pupils find rooms in the directory; there is no box to type a name in.
    await alice.waitForSelector(`.rooms li[data-room='${ROOM}']`);
    assert.equal(await alice.locator("#room-name, #open-name").count(), 0);
    // A link to a room no teacher opened: the app says why, and does not list it.
    const UNOPENED = "3B/chat/pas-encore";
    await alice.goto(`${web.url}/?room=${encodeURIComponent(UNOPENED)}`);
    await alice.waitForSelector(`.unknown-room .notice:text-is("Ce salon n'existe pas encore : votre enseignant doit l'ouvrir.")`);
    await alice.waitForSelector(`.rooms li[data-room='${ROOM}']`);
    assert.equal(await alice.locator(`.rooms li[data-room='${UNOPENED}']`).count(), 0);

    await alice.click(`.rooms li[data-room='${ROOM}'] button`);
    await alice.waitForSelector(`section.chat[data-room='${ROOM}'] h2:has-text('General · discussion · 3B')`);

    // The last 50 first; the rest on demand (scroll-back).
    await alice.waitForSelector(".messages .text:text-is('ancien 55')");
    assert.equal(await alice.locator(".messages .text:text-is('ancien 5')").count(), 0);
    await alice.click("button:has-text('Messages plus anciens')");
    await alice.waitForSelector(".messages .text:text-is('ancien 1')");
    await alice.waitForSelector("button:has-text('Messages plus anciens')", { state: "hidden" });
    assert.equal(await alice.locator(".messages li.message").count(), 55);

    await alice.fill(".composer-input", "Bonjour depuis Chromium !");
    await alice.press(".composer-input", "Enter");
    await alice.waitForSelector(".messages .text:has-text('Bonjour depuis Chromium !')");
    await waitFor(() => bobSeen.some((e) => e.body.text === "Bonjour depuis Chromium !"), "alice's message at bob");

    await bob.post(ROOM, "Salut Alice, on révise ?");
    await alice.waitForSelector(".messages .text:has-text('Salut Alice, on révise ?')");
    await alice.waitForSelector(".members:has-text('Bob Leroy')");

    // Alice reports Bob's message (the reason goes through a prompt).
    alice.once("dialog", (d) => void d.accept("hors sujet"));
    const bobMsg = alice.locator(".messages li", { hasText: "Salut Alice, on révise ?" });
    await bobMsg.hover();
    await bobMsg.locator("button.report").click();
    await alice.waitForSelector(".toast:has-text('Signalement envoyé')");
    await alice.screenshot({ path: join(ARTIFACTS, "chat.png") });

    // The teacher's console sees Alice, Bob and the report, and mutes Alice.
    const teacher = await (await browser.newContext({ viewport: { width: 1200, height: 800 } })).newPage();
    teacher.on("pageerror", (e) => pageErrors.push(String(e)));
    await teacher.goto(`${web.url}/console/?room=${encodeURIComponent(ROOM)}`);
    if (serverHasDemo) {
      await teacher.click("button:has-text('Enseignant (M. Durand, 3B)')");
    } else {
      await teacher.fill("#token", await srv.token(TEACHER));
      await teacher.click("text=Se connecter");
    }
    await teacher.waitForSelector("td[data-user='alice']");
    // The console lists the class's rooms: no name to type.
    await teacher.waitForSelector(`.console-rooms li.active[data-room='${ROOM}']`);
    await teacher.waitForSelector("text=Motif : hors sujet.");
    await teacher.waitForSelector(".audit li:has-text('a signalé le message')");
    const aliceRow = teacher.locator("tr", { has: teacher.locator("td[data-user='alice']") });
    await aliceRow.locator("button:has-text('Sourdine 10 min')").click();
    await teacher.waitForSelector("td[data-user='alice'] .tag.muted");
    await teacher.waitForSelector(".audit li:has-text('en sourdine')");

    // Alice's composer is disabled, and the server agrees.
    await alice.waitForSelector(".notice:has-text('Vous êtes en sourdine')");
    assert.equal(await alice.isDisabled(".composer-input"), true);
    await teacher.screenshot({ path: join(ARTIFACTS, "console.png") });
    await alice.screenshot({ path: join(ARTIFACTS, "chat-muted.png") });
    // Resolving the report empties the list.
    await teacher.locator("button:has-text('Traité')").click();
    await teacher.waitForSelector("text=Aucun signalement ouvert.");

    // Deleting a reported message closes its report too, and the log says
    // whose message it was, never an internal number.
    const rude = await bob.post(ROOM, "Message déplacé");
    const aliceNode = await srv.client(ALICE);
    await aliceNode.report(ROOM, rude.offset, "insulte");
    await teacher.waitForSelector("td:has-text('« Message déplacé » — Bob Leroy')");
    await teacher.locator("tr", { hasText: "« Message déplacé »" }).locator("button:has-text('Supprimer le message')").click();
    await teacher.waitForSelector("text=Aucun signalement ouvert.");
    await teacher.waitForSelector(".audit li:has-text('M. Durand a supprimé le message de Bob Leroy du')");
    await teacher.waitForSelector(`.audit li:has-text("M. Durand a traité le signalement d'Alice Martin sur le message de Bob Leroy du")`);
    assert.equal(await teacher.locator(".audit li:has-text('n°')").count(), 0, "no internal numbers in the log");
    await teacher.screenshot({ path: join(ARTIFACTS, "console-audit.png") });
    // Alice's mute was not shown to the class: the teacher may choose to
    // announce one, for that action only.
    assert.equal(await teacher.isChecked("#announce"), false);
    await teacher.check("#announce");
    const bobRow = teacher.locator("tr", { has: teacher.locator("td[data-user='bob']") });
    await bobRow.locator("button:has-text('Sourdine 10 min')").click();
    await alice.waitForSelector(".messages .system:has-text('a mis Bob Leroy en sourdine')");
    assert.equal(await teacher.isChecked("#announce"), false, "the choice is for one action only");
    assert.deepEqual(pageErrors, []);
  } finally {
    await env.close();
  }
});

test("web app: a note typed in the browser reaches a Node Y.Doc", { skip, timeout: 90_000 }, async (t) => {
  const env = await setup();
  try {
    const { srv, web, browser } = env;
    const NOTE = "3B/notes/revisions";
    await srv.open(NOTE);
    const bob = await srv.client(BOB);
    await bob.join(NOTE);
    await bob.leave(NOTE);
    const doc = new Y.Doc();
    const awareness = new Awareness(doc);
    // A state still at clock 0 (never set) is not relayed by y-protocols
    // peers; apps set theirs, as the web app does.
    awareness.setLocalStateField("user", { name: "Bob" });
    const provider = new PreauProvider(bob, NOTE, doc, { awareness });
    try {
      const page = await (await browser.newContext({ viewport: { width: 1000, height: 600 } })).newPage();
      await page.addInitScript(NOTE_TEXT_SCRIPT);
      await page.goto(`${web.url}/`);
      await page.fill("#token", await srv.token(ALICE));
      await page.click("text=Se connecter");
      await page.click(`.rooms li[data-room='${NOTE}'] button`);
      await page.waitForSelector(".status:has-text('Enregistré')");
      await page.click("#note-content");
      await page.keyboard.type("# Révisions\nLes volcans");
      await waitFor(() => doc.getText("content").toString() === "# Révisions\nLes volcans", "the text in bob's doc", 10_000);

      // And back: bob's edit shows in the textarea, with his name listed.
      doc.getText("content").insert(0, "Bob : ");
      await page.waitForFunction((room) => noteText(room).startsWith("Bob : # Révisions"), NOTE);
      await page.waitForSelector(".members:has-text('Bob Leroy')");
      await page.screenshot({ path: join(ARTIFACTS, "notes.png") });
    } finally {
      provider.destroy();
      awareness.destroy();
    }
  } finally {
    await env.close();
  }
});

test("web app: a refused change is taken back in the editor, and the pupil is told why", { skip, timeout: 90_000 }, async () => {
  const env = await setup();
  try {
    const { srv, web, browser } = env;
    const NOTE = "3B/notes/lecture";
    // The teacher opens the note and writes first.
    const prof = await srv.client(TEACHER);
    const doc = new Y.Doc();
    const awareness = new Awareness(doc);
    const provider = new PreauProvider(prof, NOTE, doc, { awareness });
    try {
      await waitFor(() => provider.synced, "the teacher's sync", 10_000);
      doc.getText("content").insert(0, "Texte du professeur.");
      await waitFor(() => provider.pending === 0, "the teacher's text stored", 10_000);

      const page = await (await browser.newContext({ viewport: { width: 1000, height: 600 } })).newPage();
      await page.addInitScript(NOTE_TEXT_SCRIPT);
      const pageErrors: string[] = [];
      page.on("pageerror", (e) => pageErrors.push(String(e)));
      await page.goto(`${web.url}/`);
      await page.fill("#token", await srv.token(ALICE));
      await page.click("text=Se connecter");
      await page.click(`.rooms li[data-room='${NOTE}'] button`);
      await page.waitForSelector(".status:has-text('Enregistré')");
      await page.waitForFunction((room) => noteText(room) === "Texte du professeur.", NOTE);

      // Muted (the editor stays open until a change is refused).
      await prof.moderate(NOTE, { kind: "mute", user: "alice", seconds: 600 });
      await page.click("#note-content");
      await page.keyboard.press("End");
      await page.keyboard.type(" Ajout refusé");
      await page.waitForSelector(".notice:has-text(\"Vos dernières modifications n'ont pas été enregistrées : vous êtes en sourdine sur cette note.\")");
      // The editor shows the note as stored, and no longer takes typing.
      await page.waitForFunction((room) => noteText(room) === "Texte du professeur.", NOTE);
      assert.equal(await page.getAttribute("#note-content", "contenteditable"), "false", "the editor no longer takes typing");
      await page.screenshot({ path: join(ARTIFACTS, "notes-refused.png") });
      assert.equal(doc.getText("content").toString(), "Texte du professeur.");
      assert.equal((await prof.noteExport(NOTE, "text")).content, "Texte du professeur.");

      // Unmuted, the pupil edits again, from the reloaded document.
      await prof.moderate(NOTE, { kind: "unmute", user: "alice" });
      await page.waitForFunction(() => document.getElementById("note-content")?.getAttribute("contenteditable") === "true");
      await page.click("#note-content");
      await page.keyboard.press("End");
      await page.keyboard.type(" Merci.");
      await waitFor(() => doc.getText("content").toString() === "Texte du professeur. Merci.", "alice's edit at the teacher", 10_000);
      assert.deepEqual(pageErrors, []);
    } finally {
      provider.destroy();
      awareness.destroy();
    }
  } finally {
    await env.close();
  }
});

test("forum: the console opens a help forum, a pupil asks in the app, a reply arrives live and becomes the answer", { skip, timeout: 120_000 }, async () => {
  const env = await setup();
  try {
    const { srv, web, browser } = env;
    const FORUM = "3B/forum/aide-maths";
    const pageErrors: string[] = [];

    // The teacher opens the forum from the console, as a help forum.
    const teacher = await (await browser.newContext({ viewport: { width: 1200, height: 800 } })).newPage();
    teacher.on("pageerror", (e) => pageErrors.push(String(e)));
    teacher.on("dialog", (d) => void d.accept());
    await teacher.goto(`${web.url}/console/?room=${encodeURIComponent(FORUM)}`);
    if (serverHasDemo) {
      await teacher.click("button:has-text('Enseignant (M. Durand, 3B)')");
    } else {
      await teacher.fill("#token", await srv.token(TEACHER));
      await teacher.click("text=Se connecter");
    }
    await teacher.waitForSelector("text=Ce forum n'est pas encore ouvert");
    await teacher.selectOption("#forum-flavour", "help");
    await teacher.click("#forum-save");
    await teacher.waitForSelector("#forum-save:has-text('Enregistrer les réglages')");
    await teacher.waitForSelector(".forum-card td:has-text(\"Aucun sujet pour l'instant.\")");
    const bob = await srv.client(BOB);
    assert.equal((await bob.threads(FORUM)).settings.flavour, "help", "the server has the settings");
    const bobSeen: EventFrame[] = [];
    bob.on("event", (e) => bobSeen.push(e));
    await bob.join(FORUM);

    // Alice finds it in the sidebar (rooms) and asks a question.
    const alice = await (await browser.newContext({ viewport: { width: 1200, height: 760 } })).newPage();
    alice.on("pageerror", (e) => pageErrors.push(String(e)));
    alice.on("dialog", (d) => void d.accept());
    await alice.goto(`${web.url}/`);
    await alice.fill("#token", await srv.token(ALICE));
    await alice.click("text=Se connecter");
    await alice.click(`.rooms li[data-room='${FORUM}'] button`);
    await alice.waitForSelector("section.forum h2 .flavour:has-text('entraide')");
    await alice.click("button:has-text('Poser une question')");
    await alice.fill("#forum-title", "Exercice 4 : factoriser");
    await alice.fill("#forum-text", "Je ne comprends pas la question b.");
    await alice.click(".new-thread-form button:has-text('Publier')");
    await alice.waitForSelector(".thread-view h3:has-text('Exercice 4 : factoriser')");
    await waitFor(() => bobSeen.some((e) => e.body.title === "Exercice 4 : factoriser"), "the new thread at bob");
    const thread = bobSeen.find((e) => e.body.title === "Exercice 4 : factoriser")!.offset;
    await teacher.waitForSelector(`tr[data-thread='${thread}'] :text('Exercice 4 : factoriser')`);

    // She rewrites it before anyone answered: "modifié", the earlier version one click away.
    const question = alice.locator(`.post[data-offset='${thread}']`);
    await question.locator("button.edit").click();
    await alice.fill(".edit-form .edit-text", "Question b : comment factoriser x² − 9 ?");
    await alice.click(".edit-form button:has-text('Enregistrer')");
    await question.locator(".text:has-text('comment factoriser x² − 9 ?')").waitFor();
    await question.locator("details.edited summary:has-text('modifié')").click();
    await question.locator(".versions li:has-text('Je ne comprends pas la question b.')").waitFor();

    // Bob replies (another client), answering and quoting her question: it shows up live.
    const r = await bob.reply(FORUM, thread, "C'est une identité remarquable : (x − 3)(x + 3).", { replyTo: thread, quote: "x² − 9" });
    const answer = alice.locator(`.post[data-offset='${r.offset}']`);
    await answer.locator(".text:has-text('identité remarquable')").waitFor();
    await answer.locator("blockquote:has-text('x² − 9')").waitFor();
    await answer.locator(".reply-to:has-text('en réponse à Alice Martin')").waitFor();
    await teacher.waitForSelector(`tr[data-thread='${thread}'] small:has-text('1 réponse')`);
    // The live re-render kept the unfolded earlier versions open.
    assert.equal(await question.locator(".versions li:has-text('Je ne comprends pas la question b.')").isVisible(), true);

    // Now her question has a reply: the server would refuse an edit, so none is offered.
    await question.locator("button.edit").waitFor({ state: "detached" });
    await question.locator("button.delete").waitFor();

    // She marks Bob's reply as the answer: everyone sees it.
    await answer.locator("button:has-text('Marquer comme réponse')").click();
    await alice.waitForSelector(`.post.answer[data-offset='${r.offset}'] .answer-badge`);
    await alice.waitForSelector(`.thread-list li[data-thread='${thread}'] .answered`);
    await waitFor(() => bobSeen.some((e) => e.body.kind === "answer" && e.body.offset === r.offset), "the answer event at bob");
    assert.equal((await bob.threads(FORUM)).threads[0].answer, r.offset);
    await teacher.waitForSelector(`tr[data-thread='${thread}'] .tag.answered`);

    // Viewing the thread marked it read on the server (mark_read).
    const aliceNode = await srv.client(ALICE);
    let unread = -1;
    for (let i = 0; i < 50 && unread !== 0; i++) {
      unread = (await aliceNode.threads(FORUM)).threads.find((t) => t.thread === thread)!.unread;
      if (unread !== 0) await new Promise((res) => setTimeout(res, 100));
    }
    assert.equal(unread, 0, "alice read bob's reply in the app");

    // "Citer" with a selected excerpt: reply_to + quote of just that excerpt.
    await alice.evaluate((offset) => {
      const p = document.querySelector(`.post[data-offset='${offset}'] .text`)!;
      const node = p.firstChild!;
      const text = node.textContent!;
      const range = document.createRange();
      range.setStart(node, text.indexOf("(x − 3)"));
      range.setEnd(node, text.indexOf("(x + 3)") + "(x + 3)".length);
      const sel = getSelection()!;
      sel.removeAllRanges();
      sel.addRange(range);
    }, r.offset);
    await answer.locator("button.quote").click();
    await alice.waitForSelector(".replying blockquote:text-is('(x − 3)(x + 3)')");
    await alice.fill("#reply-text", "Merci, j'avais oublié !");
    await alice.click(".reply-form button[type='submit']");
    await waitFor(() => bobSeen.some((e) => e.body.text === "Merci, j'avais oublié !"), "alice's reply at bob");
    const thanks = bobSeen.find((e) => e.body.text === "Merci, j'avais oublié !")!;
    assert.deepEqual([thanks.body.thread, thanks.body.reply_to, thanks.body.quote], [thread, r.offset, "(x − 3)(x + 3)"]);
    await alice.waitForSelector(`.post[data-offset='${thanks.offset}'] blockquote:text-is('(x − 3)(x + 3)')`);

    // She deletes that reply of hers (moderate redact): a tombstone for everyone.
    await alice.locator(`.post[data-offset='${thanks.offset}'] button.delete`).click();
    await alice.waitForSelector(`.post.deleted[data-offset='${thanks.offset}']:has-text('Message supprimé par son auteur')`);
    const page = await bob.threadHistory(FORUM, thread);
    assert.equal(page.events.find((e) => e.offset === thanks.offset)?.body.kind, "redacted");

    // The teacher locks and pins the thread from the console: the app follows live.
    await teacher.locator(`tr[data-thread='${thread}'] button:has-text('Verrouiller')`).click();
    await alice.waitForSelector(`.thread-list li[data-thread='${thread}'] .locked`);
    await alice.waitForSelector(".thread-view .notice:has-text('Sujet verrouillé')");
    assert.equal(await alice.isDisabled("#reply-text"), true);
    await assert.rejects(bob.reply(FORUM, thread, "encore"), (e: PreauError) => e.code === "read_only");
    await teacher.locator(`tr[data-thread='${thread}'] button:has-text('Épingler')`).click();
    await alice.waitForSelector(`.thread-list li[data-thread='${thread}'] .pinned`);
    await teacher.waitForSelector(`tr[data-thread='${thread}'] .tag.pinned`);

    // A new thread by Bob appears in Alice's list with its unread badge.
    const t2 = await bob.newThread(FORUM, "Exercice 5", "Et la question c) ?");
    await alice.waitForSelector(`.thread-list li[data-thread='${t2.offset}'] .unread:text-is('1')`);
    // Pinned first, then the newest activity.
    const order = await alice.locator(".thread-list li[data-thread]").evaluateAll((lis) => lis.map((li) => Number((li as HTMLElement).dataset.thread)));
    assert.deepEqual(order, [thread, t2.offset]);
    await alice.screenshot({ path: join(ARTIFACTS, "forum.png") });
    await teacher.screenshot({ path: join(ARTIFACTS, "console-forum.png") });
    assert.deepEqual(await axeViolations(alice), [], "forum: no serious accessibility violation");
    assert.deepEqual(await axeViolations(teacher), [], "console: no serious accessibility violation");

    // The console's settings form grants another class (configure).
    await teacher.fill("#forum-classes", "5C, 4A");
    await teacher.click("#forum-save");
    await waitFor(() => bobSeen.some((e) => (e.body.action as { kind?: string } | undefined)?.kind === "configure"), "the new settings at bob");
    assert.deepEqual((await bob.threads(FORUM)).settings, { flavour: "help", classes: ["5C", "4A"], moderators: [] });
    await teacher.waitForSelector(".forum-status:has-text('classes invitées : 5C, 4A')");

    // In a debate forum, a pupil gets no "Nouveau sujet" button.
    const DEBATE = "3B/forum/debat";
    const prof = await srv.client(TEACHER);
    await prof.configureForum(DEBATE, { flavour: "debate" });
    await alice.goto(`${web.url}/?room=${encodeURIComponent(DEBATE)}`);
    await alice.waitForSelector(`section.forum[data-room='${DEBATE}'] h2 .flavour:has-text('débat')`);
    await alice.waitForSelector(`section.forum[data-room='${DEBATE}']:has-text("Aucun sujet pour l'instant.")`);
    assert.equal(await alice.locator(`section.forum[data-room='${DEBATE}'] button.new-thread`).isVisible(), false);
    assert.deepEqual(pageErrors, []);
  } finally {
    await env.close();
  }
});

const PARENT: UserSpec = { user: "p-martin", name: "Mme Martin", role: "parent", classes: ["3B"] };
const SIZES = [
  { name: "phone", viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true },
  { name: "desktop", viewport: { width: 1280, height: 800 }, isMobile: false, hasTouch: false },
];

for (const size of SIZES) {
  test(`shell at ${size.name} size: a pupil, a teacher and a parent find their rooms, the agenda reaches the parent, no serious accessibility violation`, { skip, timeout: 120_000 }, async () => {
    const env = await setup();
    try {
      const { srv, web, browser } = env;
      const CHAT = "3B/chat/revisions";
      const AGENDA = "3B/agenda/agenda-de-la-classe";
      await srv.open(CHAT);
      const pageErrors: string[] = [];
      const violations: string[] = [];
      const newPage = async () => {
        const page = await (await browser.newContext({ viewport: size.viewport, isMobile: size.isMobile, hasTouch: size.hasTouch, locale: "fr-FR" })).newPage();
        page.on("pageerror", (e) => pageErrors.push(String(e)));
        page.on("dialog", (d) => void d.accept(""));
        return page;
      };
      const signInAs = async (page: Page, u: UserSpec) => {
        await page.goto(`${web.url}/`);
        violations.push(...(await axeViolations(page)).map((v) => `sign-in: ${v}`));
        await page.fill("#token", await srv.token(u));
        await page.click("text=Se connecter");
        await page.waitForSelector(`header .me:has-text('${u.name}')`);
      };
      const shot = (page: Page, what: string) => page.screenshot({ path: join(ARTIFACTS, `shell-${size.name}-${what}.png`) });
      // On a phone the list and the room take the screen in turn.
      const listShown = (page: Page) => page.locator("aside").isVisible();

      // The teacher opens the class agenda from the app (no room name to know) and adds a test.
      const teacher = await newPage();
      await signInAs(teacher, TEACHER);
      await teacher.selectOption("#open-kind", "agenda");
      await teacher.fill("#open-name", "Agenda de la classe");
      await teacher.click(".open-room button[type='submit']");
      await teacher.waitForSelector(`section.agenda[data-room='${AGENDA}'] h2:has-text('Agenda de la classe · agenda · 3B')`);
      assert.equal(await listShown(teacher), !size.isMobile, "the list beside the room only on wide screens");
      await teacher.click(".agenda-add summary:text-is('Ajouter un événement')");
      await teacher.fill("#agenda-title", "Contrôle de mathématiques");
      await teacher.fill("#agenda-start", "10:00");
      await teacher.fill("#agenda-end", "11:00");
      await teacher.fill("#agenda-place", "Salle 12");
      await teacher.click(".agenda-form button[type='submit']");
      // The form's day is today: the week view shows the event under today, Monday to Sunday.
      await teacher.waitForSelector(".agenda-day.today .agenda-item:has-text('Contrôle de mathématiques'):has-text('10:00 – 11:00')");
      assert.equal(await teacher.locator(`section.agenda[data-room='${AGENDA}'] .agenda-day`).count(), 7);
      await teacher.waitForSelector(`section.agenda[data-room='${AGENDA}'] .week-label:has-text('Cette semaine : du lundi')`);
      violations.push(...(await axeViolations(teacher)).map((v) => `teacher agenda: ${v}`));
      await shot(teacher, "teacher-agenda");

      // The parent sees the class's agenda and not the pupils' chat.
      const parent = await newPage();
      await signInAs(parent, PARENT);
      // A parent starts from their children's week (web/diary.ts, tested in diary.test.ts); on a phone the list is one step back.
      await parent.waitForSelector("section.home h2:text-is('La semaine de mes enfants')");
      if (size.isMobile) await parent.click("button.back");
      await parent.waitForSelector(`.rooms li[data-room='${AGENDA}']`);
      assert.equal(await parent.locator(".rooms li[data-kind='chat']").count(), 0, "no chat listed for a parent");
      assert.equal(await parent.locator("#open-name").count(), 0, "parents open no room");
      violations.push(...(await axeViolations(parent)).map((v) => `parent list: ${v}`));
      await shot(parent, "parent-list");
      await parent.click(`.rooms li[data-room='${AGENDA}'] button`);
      await parent.waitForSelector(".agenda-item:has-text('Contrôle de mathématiques'):has-text('Lieu : Salle 12')");
      assert.equal(await parent.locator("#agenda-title").count(), 0, "a parent reads the agenda, and does not write it");
      // A cancellation reaches the parent live.
      await teacher.locator(".agenda-item:has-text('Contrôle de mathématiques') button.cancel").click();
      await parent.waitForSelector(".agenda-item.cancelled:has-text('Contrôle de mathématiques') .cancelled-tag:text-is('Annulé')");
      violations.push(...(await axeViolations(parent)).map((v) => `parent agenda: ${v}`));
      await shot(parent, "parent-agenda");
      // A link to the pupils' chat: refused, said in words, and not listed.
      await parent.goto(`${web.url}/?room=${encodeURIComponent(CHAT)}`);
      await parent.waitForSelector(".unknown-room .notice:text-is(\"Vous n'avez pas accès à ce salon.\")");
      assert.equal(await parent.locator(`.rooms li[data-room='${CHAT}']`).count(), 0);

      // The pupil finds the chat and the agenda, chats, sees the teacher's message marked as such.
      const pupil = await newPage();
      await signInAs(pupil, ALICE);
      await pupil.waitForSelector(`.rooms li[data-room='${AGENDA}']`);
      await pupil.click(`.rooms li[data-room='${CHAT}'] button`);
      await pupil.waitForSelector(`section.chat[data-room='${CHAT}'] h2:has-text('Revisions · discussion · 3B')`);
      assert.equal(await listShown(pupil), !size.isMobile);
      const send = await pupil.locator(".composer button[type='submit']").boundingBox();
      assert.ok(send && send.x >= 0 && send.x + send.width <= size.viewport.width && send.y + send.height <= size.viewport.height, `"Envoyer" on screen: ${JSON.stringify(send)}`);
      await pupil.fill(".composer-input", "On révise le chapitre 3 ?");
      await pupil.press(".composer-input", "Enter");
      await pupil.waitForSelector(".messages .text:text-is('On révise le chapitre 3 ?')");
      const prof = await srv.client(TEACHER);
      await prof.join(CHAT);
      await prof.post(CHAT, "Oui, pensez aux exercices 4 et 5.");
      const fromTeacher = pupil.locator("li.message.from-staff", { hasText: "exercices 4 et 5" });
      await fromTeacher.locator(".role-tag:text-is('enseignant')").waitFor();
      // "Signaler" is there without hovering (touch screens).
      assert.equal(await fromTeacher.locator("button.report").isVisible(), true);
      // A mute is said to the muted pupil, not to the whole class.
      const bob = await srv.client(BOB);
      await bob.join(CHAT);
      await prof.moderate(CHAT, { kind: "mute", user: "bob", seconds: 600 });
      await prof.post(CHAT, "Reprenons.");
      await pupil.waitForSelector(".messages .text:text-is('Reprenons.')");
      assert.equal(await pupil.locator(".messages .system:has-text('sourdine')").count(), 0, "the class does not read who was muted");
      violations.push(...(await axeViolations(pupil)).map((v) => `pupil chat: ${v}`));
      await shot(pupil, "pupil-chat");
      if (size.isMobile) {
        await pupil.click("button.back");
        await pupil.waitForSelector(`.rooms li[data-room='${CHAT}']`, { state: "visible" });
        assert.equal(await pupil.locator("main.room").isVisible(), false);
        await shot(pupil, "pupil-list");
      }
      // What arrives in a room opened earlier while another is shown is counted on its line and in the tab's title.
      if (!size.isMobile) await pupil.waitForSelector(`.rooms li[data-room='${AGENDA}'] button`);
      await pupil.click(`.rooms li[data-room='${AGENDA}'] button`);
      await prof.post(CHAT, "Et l'exercice 6 aussi.");
      await prof.post(CHAT, "Pour jeudi.");
      const badge = pupil.locator(`.rooms li[data-room='${CHAT}'] .unread`);
      await pupil.waitForFunction((room) => document.querySelector(`.rooms li[data-room='${room}'] .unread`)?.textContent === "2", CHAT);
      assert.equal(await pupil.title(), "(2) préau");
      if (size.isMobile) await pupil.click("button.back");
      assert.equal(await badge.isVisible(), true);
      await shot(pupil, "pupil-unread");
      violations.push(...(await axeViolations(pupil)).map((v) => `pupil unread: ${v}`));
      await pupil.click(`.rooms li[data-room='${CHAT}'] button`);
      await pupil.waitForSelector(".messages .text:text-is('Pour jeudi.')");
      assert.equal(await badge.isVisible(), false, "opened: read");
      assert.equal(await pupil.title(), "préau");
      assert.deepEqual(violations, []);
      assert.deepEqual(pageErrors, []);
    } finally {
      await env.close();
    }
  });
}

/**
 * A real OpenID provider (the certified `oidc-provider` package, with its
 * development login and consent pages) in front of préau: the ENT's
 * accounts and the claims préau maps to roles and classes.
 */
async function startProvider(port: number, redirectUri: string): Promise<{ close: () => Promise<void> }> {
  // No type declarations ship with it: imported by name, untyped.
  const pkg = "oidc-provider";
  const { default: Provider } = (await import(pkg)) as { default: any };
  const accounts: Record<string, Record<string, unknown>> = {
    ana: { name: "Ana Martin", role: "ELEVE", classes: ["3B"] },
    "p-martin": { name: "Mme Martin", role: "Relative", classes: ["3B"], children: ["ana"] },
    "t-durand": { name: "M. Durand", role: "ENSEIGNANT", classes: ["3B"] },
    invite: { name: "Invité", role: "Invité", classes: ["3B"] },
  };
  const provider = new Provider(`http://127.0.0.1:${port}`, {
    clients: [{ client_id: "preau", token_endpoint_auth_method: "none", redirect_uris: [redirectUri], grant_types: ["authorization_code"], response_types: ["code"] }],
    claims: { openid: ["sub"], profile: ["name", "role", "classes", "children"] },
    pkce: { required: () => true },
    async findAccount(_ctx: unknown, sub: string) {
      const known = accounts[sub];
      if (!known) return undefined;
      return { accountId: sub, claims: async () => ({ sub, ...known }) };
    },
  });
  const server = http.createServer(provider.callback());
  await new Promise<void>((r) => server.listen(port, "127.0.0.1", () => r()));
  return {
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

test("ENT sign-in: OpenID Connect with PKCE through a real provider, roles and classes from its claims", { skip: skip || (!serverHasWebDir && "needs --web-dir"), timeout: 120_000 }, async () => {
  const providerPort = await freePort();
  const srv = await TestServer.start((port) => [
    "--web-dir", DIST,
    "--oidc-issuer", `http://127.0.0.1:${providerPort}`,
    "--oidc-client-id", "preau",
    "--oidc-redirect-url", `http://127.0.0.1:${port}/auth/callback`,
  ]);
  const provider = await startProvider(providerPort, `${srv.httpUrl}/auth/callback`);
  const { chromium } = await import("playwright-core");
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  try {
    const AGENDA = "3B/agenda/classe";
    await srv.open("3B/chat/general", AGENDA);
    const pageErrors: string[] = [];
    const signInThroughEnt = async (login: string, size = { width: 390, height: 844 }, path = "/") => {
      const page = await (await browser.newContext({ viewport: size })).newPage();
      page.on("pageerror", (e) => pageErrors.push(String(e)));
      await page.goto(`${srv.httpUrl}${path}`);
      // The ENT is the way in; the token box is folded away for developers.
      await page.click("a.ent:text-is(\"Se connecter avec l'ENT\")");
      await page.fill("input[name=login]", login);
      await page.fill("input[name=password]", "n'importe quoi");
      await page.click("button[type=submit]");
      await page.click("button[type=submit]:has-text('Continue')");
      return page;
    };

    const pupil = await signInThroughEnt("ana");
    await pupil.waitForSelector("header .me:has-text('Ana Martin (élève)')");
    await pupil.waitForSelector(".rooms li[data-room='3B/chat/general']");
    assert.equal(new URL(pupil.url()).hash, "", "the token left the address bar");
    await pupil.screenshot({ path: join(ARTIFACTS, "ent-signin-pupil.png") });

    const parent = await signInThroughEnt("p-martin", { width: 1280, height: 800 });
    await parent.waitForSelector("header .me:has-text('Mme Martin (parent)')");
    await parent.waitForSelector(`.rooms li[data-room='${AGENDA}']`);
    assert.equal(await parent.locator(".rooms li[data-kind='chat']").count(), 0);

    // The teacher signs in to the console through the ENT, lands back on
    // the console, finds the chat in the class's list and mutes a pupil.
    const ana = await srv.client({ user: "ana", name: "Ana Martin", role: "student", classes: ["3B"] });
    await ana.join("3B/chat/general");
    const teacher = await signInThroughEnt("t-durand", { width: 1280, height: 800 }, "/console/");
    await teacher.waitForSelector("header .me:has-text('M. Durand (enseignant)')");
    assert.equal(new URL(teacher.url()).pathname, "/console/");
    await teacher.click(".console-rooms li[data-room='3B/chat/general'] button");
    const anaRow = teacher.locator("tr", { has: teacher.locator("td[data-user='ana']") });
    await anaRow.locator("button:has-text('Sourdine 10 min')").click();
    await teacher.waitForSelector("td[data-user='ana'] .tag.muted");
    await assert.rejects(ana.post("3B/chat/general", "encore ?"), (e: PreauError) => e.code === "muted");
    await teacher.screenshot({ path: join(ARTIFACTS, "ent-signin-console.png") });

    // A callback whose state was not started here is refused, in French.
    const forged = await fetch(`${srv.httpUrl}/auth/callback?code=x&state=y`);
    assert.equal(forged.status, 400);
    assert.match(await forged.text(), /La connexion a expiré ou a été commencée dans un autre onglet/);
    // An account whose role préau does not know: refused with words, and no token.
    const guest = await signInThroughEnt("invite");
    await guest.waitForSelector("h1:text-is('Connexion impossible')");
    await guest.waitForSelector("[role=alert]:has-text(\"Votre compte ENT n'indique pas de profil que préau connaît\")");
    assert.equal(new URL(guest.url()).hash, "");
    assert.match(srv.log, /claim `role` holds no known role/);
    assert.deepEqual(pageErrors, []);
  } finally {
    await browser.close();
    await provider.close();
    await srv.stop();
  }
});

test("notes: two editors in CodeMirror see each other's cursors with names; the teacher validates and exports", { skip, timeout: 120_000 }, async () => {
  const env = await setup();
  try {
    const { srv, web, browser } = env;
    const NOTE = "3B/notes/chapitre-3";
    await srv.open(NOTE);
    const pageErrors: string[] = [];
    const editorPage = async (u: UserSpec, viewport: { width: number; height: number }) => {
      const page = await (await browser.newContext({ viewport, acceptDownloads: true })).newPage();
      page.on("pageerror", (e) => pageErrors.push(String(e)));
      await page.addInitScript(NOTE_TEXT_SCRIPT);
      await page.goto(`${web.url}/`);
      await page.fill("#token", await srv.token(u));
      await page.click("text=Se connecter");
      await page.click(`.rooms li[data-room='${NOTE}'] button`);
      await page.waitForSelector(".status:has-text('Enregistré')");
      return page;
    };
    const teacher = await editorPage(TEACHER, { width: 1280, height: 800 });
    const pupil = await editorPage(ALICE, { width: 390, height: 844 });

    await teacher.click("#note-content");
    await teacher.keyboard.type("# Chapitre 3\nLes fractions");
    await pupil.waitForFunction((room) => noteText(room) === "# Chapitre 3\nLes fractions", NOTE);
    await pupil.click("#note-content");
    await pupil.keyboard.press("Control+End");
    await pupil.keyboard.type(" égales");
    await teacher.waitForFunction((room) => noteText(room) === "# Chapitre 3\nLes fractions égales", NOTE);
    // Each sees the other's cursor, labelled with the other's name.
    await teacher.waitForSelector(".cm-ySelectionInfo:text-is('Alice Martin')", { state: "attached" });
    await pupil.waitForSelector(".cm-ySelectionInfo:text-is('M. Durand')", { state: "attached" });
    await teacher.screenshot({ path: join(ARTIFACTS, "notes-teacher-cursors.png") });
    await pupil.screenshot({ path: join(ARTIFACTS, "notes-pupil-cursors.png") });
    assert.deepEqual(await axeViolations(teacher), [], "notes (teacher): no serious accessibility violation");
    assert.deepEqual(await axeViolations(pupil), [], "notes (pupil): no serious accessibility violation");

    // Undo takes back one's own edit only.
    await pupil.keyboard.press("Control+z");
    await teacher.waitForFunction((room) => noteText(room) === "# Chapitre 3\nLes fractions", NOTE);

    // The preview sets the Markdown and the formulas; what a pupil writes cannot run in it.
    await teacher.click("#note-preview-toggle");
    await teacher.waitForSelector(".note-preview h1:text-is('Chapitre 3')");
    await pupil.click("#note-content");
    await pupil.keyboard.press("Control+End");
    await pupil.keyboard.type('\n\nUn demi : $\\frac{1}{2}$\n\n<img src=x onerror="window.pwned=1">');
    await teacher.waitForSelector(".note-preview .katex");
    // The image is not fetched (nor its handler run): a link says what it was.
    await teacher.waitForSelector(".note-preview a:text-is('[image : sans description]')");
    assert.equal(await teacher.locator(".note-preview img").count(), 0, "no image fetched from a pupil's note");
    assert.equal(await teacher.evaluate(() => (window as any).pwned), undefined);
    assert.deepEqual(await axeViolations(teacher), [], "notes preview: no serious accessibility violation");
    await teacher.screenshot({ path: join(ARTIFACTS, "notes-preview.png") });

    // The teacher validates a version and locks the note: the pupil's editor says so and stops taking typing.
    assert.equal(await pupil.locator("#note-validate").count(), 0, "pupils do not validate");
    const answers = ["Chapitre 3", true];
    teacher.on("dialog", (d) => void (d.type() === "prompt" ? d.accept(String(answers[0])) : d.accept()));
    await teacher.click("#note-validate");
    await pupil.waitForSelector(".notice:has-text(\"Cette note est verrouillée par l'enseignant.\")");
    assert.equal(await pupil.getAttribute("#note-content", "contenteditable"), "false");
    // Someone opening the locked note is told at once, before typing anything.
    const late = await editorPage(BOB, { width: 390, height: 844 });
    await late.waitForSelector(".notice:has-text(\"Cette note est verrouillée par l'enseignant.\")");
    assert.equal(await late.getAttribute("#note-content", "contenteditable"), "false");
    await teacher.click("button:has-text('Versions validées')");
    await teacher.waitForSelector(".versions-list li:has-text('« Chapitre 3 », validée par M. Durand')");
    // The teacher (a moderator writes a locked note) goes on; the comparison shows what changed since.
    await teacher.click("#note-content");
    await teacher.keyboard.press("Control+End");
    await teacher.keyboard.type("\n\nÀ revoir : les fractions irréductibles.");
    await teacher.waitForFunction((room) => noteText(room).endsWith("irréductibles."), NOTE);
    await teacher.click(".versions-list li button.compare");
    await teacher.waitForSelector(".note-preview pre.diff ins:has-text('À revoir : les fractions irréductibles.')");
    // The print view is the rendered note alone.
    await teacher.click("#note-preview-toggle");
    await teacher.waitForSelector(".note-preview", { state: "hidden" });
    await teacher.click("#note-preview-toggle");
    await teacher.waitForSelector(".note-preview h1:text-is('Chapitre 3')");
    await teacher.emulateMedia({ media: "print" });
    assert.equal(await teacher.locator(".note-editor").isVisible(), false, "print: no editor");
    assert.equal(await teacher.locator("header").isVisible(), false, "print: no header");
    assert.equal(await teacher.locator(".note-preview h1:text-is('Chapitre 3')").isVisible(), true, "print: the note");
    await teacher.screenshot({ path: join(ARTIFACTS, "notes-print.png") });
    await teacher.emulateMedia({ media: "screen" });
    // Its export is the validated text, as Markdown.
    const [download] = await Promise.all([teacher.waitForEvent("download"), teacher.click(".versions-list li button:has-text('Exporter')")]);
    const path = await download.path();
    const exported = readFileSync(path!, "utf8");
    assert.match(exported, /# Chapitre 3\nLes fractions/);

    // The same from the console, in one click each: unlock, validate, export.
    const consolePage = await (await browser.newContext({ viewport: { width: 1280, height: 800 }, acceptDownloads: true })).newPage();
    consolePage.on("pageerror", (e) => pageErrors.push(String(e)));
    await consolePage.goto(`${web.url}/console/`);
    await consolePage.fill("#token", await srv.token(TEACHER));
    await consolePage.click("text=Se connecter");
    await consolePage.click(`.console-rooms li[data-room='${NOTE}'] button`);
    await consolePage.waitForSelector(".notes-card .versions li:has-text('« Chapitre 3 », validée par M. Durand')");
    assert.equal(await consolePage.locator("section.card:has(h3:text-is('Derniers messages'))").isVisible(), false, "a note shows no message cards");
    await consolePage.click("button:text-is('Déverrouiller la note')");
    await pupil.waitForFunction(() => document.querySelector("#note-content")?.getAttribute("contenteditable") === "true");
    await consolePage.fill("#note-label", "Chapitre 3, corrigé");
    await consolePage.check("#note-lock");
    await consolePage.click("button:text-is(\"Valider la note telle qu'elle est\")");
    await consolePage.waitForSelector(".notes-card .versions li:has-text('« Chapitre 3, corrigé », validée par M. Durand')");
    await pupil.waitForSelector(".notice:has-text(\"Cette note est verrouillée par l'enseignant.\")");
    assert.deepEqual(await axeViolations(consolePage), [], "console, notes: no serious accessibility violation");
    await consolePage.screenshot({ path: join(ARTIFACTS, "console-notes.png") });
    const [fromConsole] = await Promise.all([
      consolePage.waitForEvent("download"),
      consolePage.click(".notes-card .versions li:has-text('corrigé') button:has-text('Exporter')"),
    ]);
    const corrected = readFileSync((await fromConsole.path())!, "utf8");
    assert.match(corrected, /À revoir : les fractions irréductibles\./, "the corrected version has the teacher's addition");
    assert.equal(fromConsole.suggestedFilename(), "chapitre-3-Chapitre 3, corrigé.md");
    assert.deepEqual(pageErrors, []);
  } finally {
    await env.close();
  }
});

test("phone, offline: what was loaded stays readable and the app says so; back online, it reconnects and posts", { skip, timeout: 90_000 }, async () => {
  const env = await setup();
  try {
    const { srv, web, browser } = env;
    const CHAT = "3B/chat/tunnel";
    await srv.open(CHAT);
    const bob = await srv.client(BOB);
    await bob.join(CHAT);
    await bob.post(CHAT, "Le cours de demain est en salle 12.");
    const context = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
    const page = await context.newPage();
    const pageErrors: string[] = [];
    page.on("pageerror", (e) => pageErrors.push(String(e)));
    await page.goto(`${web.url}/`);
    await page.fill("#token", await srv.token(ALICE));
    await page.click("text=Se connecter");
    await page.click(`.rooms li[data-room='${CHAT}'] button`);
    await page.waitForSelector(".messages .text:text-is('Le cours de demain est en salle 12.')");
    assert.equal(await page.locator(".offline").isVisible(), false);

    await context.setOffline(true);
    await page.waitForSelector(".offline:has-text('Hors ligne : vous lisez ce qui était déjà chargé.')", { timeout: 30_000 });
    assert.equal(await page.locator(".messages .text:text-is('Le cours de demain est en salle 12.')").isVisible(), true, "still readable");
    assert.deepEqual(await axeViolations(page), []);
    await page.screenshot({ path: join(ARTIFACTS, "offline-phone.png") });

    await context.setOffline(false);
    await page.waitForSelector(".offline", { state: "hidden", timeout: 30_000 });
    await page.fill(".composer-input", "De retour !");
    await page.press(".composer-input", "Enter");
    await page.waitForSelector(".messages .text:text-is('De retour !')");
    assert.deepEqual(pageErrors, []);
  } finally {
    await env.close();
  }
});

test("phone: a pupil asks in a help forum, the teacher moderates from the console; both screens pass axe", { skip, timeout: 90_000 }, async () => {
  const env = await setup();
  try {
    const { srv, web, browser } = env;
    const FORUM = "3B/forum/entraide";
    const prof = await srv.client(TEACHER);
    await prof.configureForum(FORUM, { flavour: "help" });
    const phone = { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true };
    const pageErrors: string[] = [];

    const pupil = await (await browser.newContext(phone)).newPage();
    pupil.on("pageerror", (e) => pageErrors.push(String(e)));
    await pupil.goto(`${web.url}/`);
    await pupil.fill("#token", await srv.token(ALICE));
    await pupil.click("text=Se connecter");
    await pupil.click(`.rooms li[data-room='${FORUM}'] button`);
    await pupil.click("button:has-text('Poser une question')");
    await pupil.fill("#forum-title", "Théorème de Pythagore");
    await pupil.fill("#forum-text", "Comment trouver l'hypoténuse ?");
    await pupil.click(".new-thread-form button:has-text('Publier')");
    await pupil.waitForSelector(".thread-view h3:has-text('Théorème de Pythagore')");
    assert.deepEqual(await axeViolations(pupil), [], "forum at phone size");
    await pupil.screenshot({ path: join(ARTIFACTS, "phone-forum.png") });

    const teacher = await (await browser.newContext(phone)).newPage();
    teacher.on("pageerror", (e) => pageErrors.push(String(e)));
    await teacher.goto(`${web.url}/console/`);
    await teacher.fill("#token", await srv.token(TEACHER));
    await teacher.click("text=Se connecter");
    await teacher.click(`.console-rooms li[data-room='${FORUM}'] button`);
    await teacher.waitForSelector(".forum-card tr:has-text('Théorème de Pythagore')");
    const lock = teacher.locator("tr", { hasText: "Théorème de Pythagore" }).locator("button:has-text('Verrouiller')");
    const box = await lock.boundingBox();
    assert.ok(box && box.x + box.width <= 390, `the action fits the phone's width: ${JSON.stringify(box)}`);
    await lock.click();
    await pupil.waitForSelector(".thread-view .notice:has-text('Sujet verrouillé')");
    // The log names the thread by its title, never by an internal number.
    await teacher.waitForSelector(".audit li:has-text('M. Durand a verrouillé le sujet « Théorème de Pythagore ».')");
    assert.equal(await teacher.locator(".audit li:has-text('n°')").count(), 0);
    assert.deepEqual(await axeViolations(teacher), [], "console at phone size");
    await teacher.screenshot({ path: join(ARTIFACTS, "phone-console.png"), fullPage: true });
    assert.deepEqual(pageErrors, []);
  } finally {
    await env.close();
  }
});
