// « Blog de la classe » in the browser (Debian's Chromium through
// playwright-core, the real server serving dist/, its school directory
// synced), at phone and desktop sizes, a teacher, two pupils and a parent
// in their own browser contexts: the teacher opens the class's blog (listed
// before it exists) and sees its settings (« Validation par l'enseignant »);
// Léa writes an article with an image (file input): it shows « En attente
// de validation » to her and to the teacher (live), Inès does not see it;
// the teacher publishes it (« Publier »): Inès sees it live, its image
// shown (fetched with the token, drawn from a `blob:` URL); Inès comments,
// Léa sees the comment live; the teacher deletes the comment: gone for
// everyone, live. The parent reads the article, with no form. axe-core on
// every screen, no page error, no sideways scrolling, 44 px touch targets.
// Screenshots: test-artifacts/blog-<size>-<screen>.png.

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { deflateSync } from "node:zlib";
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
    : !serveHelp.includes("--web-dir") || !serveHelp.includes("--files-chunk-bytes")
      ? "this préau binary cannot serve dist/ (--web-dir) or has no files (--files-chunk-bytes)"
      : false;
if (skip) {
  if (process.env.PREAU_REQUIRE_BROWSER === "1") throw new Error(`blog browser tests cannot run: ${skip}`);
  console.log(`# blog browser tests skipped: ${skip}`);
}

const DURAND: UserSpec = { user: "durand", name: "Mme Durand", role: "teacher", classes: ["3B"] };
const LEA: UserSpec = { user: "lea", name: "Léa Moreau", role: "student", classes: ["3B"] };
const INES: UserSpec = { user: "ines", name: "Inès Benali", role: "student", classes: ["3B"] };
const MOREAU: UserSpec = { user: "p-lea", name: "M. Moreau", role: "parent", classes: ["3B"], children: ["lea"] };

const SCHOOL: DirectorySync = {
  version: 1,
  classes: [{ id: "3B", level: "3e" }],
  people: [
    { id: "durand", name: "Mme Durand", role: "teacher", teaches: [{ class: "3B", subject: "Arts plastiques" }] },
    { id: "lea", name: "Léa Moreau", role: "student", classes: ["3B"] },
    { id: "ines", name: "Inès Benali", role: "student", classes: ["3B"] },
    { id: "p-lea", name: "M. Moreau", role: "parent", children: ["lea"] },
  ],
};

const SIZES = [
  { name: "phone", viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true },
  { name: "desktop", viewport: { width: 1280, height: 800 }, isMobile: false, hasTouch: false },
];

const ROOM = "3B/blog/main";
const TITLE = "Sortie au musée";
const TEXT = "Nous avons vu les impressionnistes.\nMonet, Renoir et Berthe Morisot.";

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(buf: Buffer): number {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** A real PNG, `w`×`h`, a gradient (the server reads and rewrites images). */
function png(w: number, h: number): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type, "latin1"), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(td));
    return Buffer.concat([len, td, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  const raw = Buffer.alloc((w * 3 + 1) * h);
  for (let y = 0; y < h; y++) {
    raw[y * (w * 3 + 1)] = 0;
    for (let x = 0; x < w; x++) {
      const o = y * (w * 3 + 1) + 1 + x * 3;
      raw[o] = (x * 255) / w;
      raw[o + 1] = (y * 255) / h;
      raw[o + 2] = 160;
    }
  }
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk("IHDR", ihdr), chunk("IDAT", deflateSync(raw)), chunk("IEND", Buffer.alloc(0))]);
}

for (const size of SIZES) {
  test(`blog at ${size.name} size: a pupil's article with an image waits for the teacher, is published live with its image, commented, the comment deleted`, { skip, timeout: 180_000 }, async () => {
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
        // No MediaRecorder in these browsers: the file input only (the recording is handin-ui.test.ts's).
        await context.addInitScript(() => delete (window as { MediaRecorder?: unknown }).MediaRecorder);
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
      const openBlog = async (page: Page) => {
        const link = page.locator(`.rooms li[data-room='${ROOM}'] button`);
        await link.waitFor({ state: "attached" });
        if (size.name === "phone" && !(await link.isVisible())) await page.click("main.room > .back");
        await link.waitFor();
        assert.equal(await link.locator(".name").textContent(), "Blog de la classe");
        await link.click();
        await page.waitForSelector(`section.blog-view h2:text-is("Blog de la classe · 3B")`);
      };
      const check = async (page: Page, screen: string) => {
        problems.push(...(await axeViolations(page)).map((v) => `${screen}: ${v}`));
        problems.push(...(await layoutProblems(page, "label.check")).map((v) => `${screen}: ${v}`));
        await page.screenshot({ path: join(ARTIFACTS, `blog-${size.name}-${screen}.png`), fullPage: true });
      };
      const view = "section.blog-view";
      const post = `${view} article.blog-post:has(h3:text-is("${TITLE}"))`;
      /** Whether the post's image is drawn (fetched, decoded). */
      const imageShown = async (page: Page) => {
        const img = await page.locator(`${post} .blog-image img`).elementHandle();
        await page.waitForFunction((img) => {
          const i = img as HTMLImageElement;
          return i.isConnected && i.src.startsWith("blob:") && i.complete && i.naturalWidth === 64;
        }, img);
      };

      // The teacher opens the blog: its settings say « Validation par l'enseignant ».
      const teacher = await newPage();
      await signInAs(teacher, DURAND);
      await openBlog(teacher);
      await teacher.waitForSelector(`${view} .empty:text-is("Aucun article pour l'instant.")`);
      await teacher.click(`${view} .blog-settings > summary`);
      assert.equal(await teacher.inputValue("#blog-circuit"), "approve");
      assert.equal(await teacher.locator("#blog-circuit option:checked").textContent(), "Validation par l'enseignant");
      assert.equal(await teacher.isChecked("#blog-public"), false);
      await check(teacher, "teacher-settings");
      await teacher.click(`${view} .blog-settings > summary`);

      // Léa and Inès open it.
      const lea = await newPage();
      await signInAs(lea, LEA);
      await openBlog(lea);
      const ines = await newPage();
      await signInAs(ines, INES);
      await openBlog(ines);
      await ines.waitForSelector(`${view} .empty:text-is("Aucun article pour l'instant.")`);
      assert.equal(await lea.locator(`${view} .blog-settings`).count(), 0, "no settings for a pupil");

      // Léa writes an article with an image.
      await lea.click(`${view} .blog-new > summary`);
      await lea.fill("#blog-title", TITLE);
      await lea.fill("#blog-text", TEXT);
      await lea.locator("#blog-files").setInputFiles({ name: "musee.png", mimeType: "image/png", buffer: png(64, 48) });
      await lea.locator(`${view} .blog-attachments li:has-text("musee.png")`).waitFor();
      assert.equal(await lea.locator(`${view} .blog-write button[type=submit]`).textContent(), "Envoyer pour validation");
      await check(lea, "pupil-write");
      await lea.click(`${view} .blog-write button[type=submit]`);
      await lea.locator(`${post} .blog-status:text-is("En attente de validation")`).waitFor();
      await imageShown(lea);
      assert.equal(await lea.locator(`${post} .blog-text`).textContent(), TEXT);
      assert.equal(await lea.locator(`${post} .blog-comment-form`).count(), 0, "no comments before it is published");
      await check(lea, "pupil-pending");

      // The teacher sees it pending, live; Inès does not see it.
      await teacher.locator(`${post} .blog-status:text-is("En attente de validation")`).waitFor();
      await imageShown(teacher);
      assert.match((await teacher.locator(`${post} .meta`).textContent()) ?? "", /^Par Léa Moreau, le /);
      await check(teacher, "teacher-pending");
      assert.equal(await ines.locator(post).count(), 0, "a pending article is not shown to another pupil");

      // The teacher publishes it: Inès sees it live, with its image.
      await teacher.click(`${post} button.approve:text-is("Publier")`);
      await teacher.locator(`${post} button.unpublish:text-is("Retirer")`).waitFor();
      await ines.locator(post).waitFor();
      await imageShown(ines);
      assert.equal(await ines.locator(`${post} .blog-status`).count(), 0);
      await lea.locator(`${post}[data-status="published"]`).waitFor();
      assert.equal(await ines.locator(`${post} button.approve, ${post} button.delete`).count(), 0, "nothing to moderate for a pupil");

      // Inès comments: Léa sees it live.
      await ines.fill(`${post} .blog-comment-form textarea`, "Trop beau, le tableau de Monet !");
      await ines.click(`${post} button:text-is("Commenter")`);
      await ines.locator(`${post} .blog-comment .comment-text:text-is("Trop beau, le tableau de Monet !")`).waitFor();
      await check(ines, "pupil-comment");
      const leaComment = lea.locator(`${post} .blog-comment:has(.comment-text:text-is("Trop beau, le tableau de Monet !"))`);
      await leaComment.waitFor();
      assert.equal(await leaComment.locator("b").textContent(), "Inès Benali");
      assert.equal(await leaComment.locator("button.delete-comment").count(), 0, "Léa does not delete Inès's comment");
      await lea.locator(`${post} .blog-comments h4:text-is("Commentaires (1)")`).waitFor();

      // The parent reads it, with no form.
      const parent = await newPage();
      await signInAs(parent, MOREAU);
      await openBlog(parent);
      await parent.locator(`${post} .blog-comment`).waitFor();
      await imageShown(parent);
      assert.equal(await parent.locator(`${view} form, ${view} button.approve, ${view} button.delete, ${view} button.delete-comment`).count(), 0, "a parent reads");
      await check(parent, "parent");

      // The teacher deletes the comment: gone for everyone, live.
      const tComment = teacher.locator(`${post} .blog-comment:has(.comment-text:text-is("Trop beau, le tableau de Monet !"))`);
      await tComment.waitFor();
      await check(teacher, "teacher-published");
      await tComment.locator("button.delete-comment").click();
      await tComment.waitFor({ state: "detached" });
      await ines.locator(`${post} .blog-comment`).waitFor({ state: "detached" });
      await leaComment.waitFor({ state: "detached" });
      await parent.locator(`${post} .blog-comment`).waitFor({ state: "detached" });
      await check(ines, "pupil-after-delete");

      assert.deepEqual(problems, []);
      assert.deepEqual(pageErrors, []);
    } catch (err) {
      for (const [i, page] of pages.entries()) await page.screenshot({ path: join(ARTIFACTS, `blog-${size.name}-failure-${i}.png`) }).catch(() => {});
      throw err;
    } finally {
      await browser.close();
      await srv.stop();
    }
  });
}
