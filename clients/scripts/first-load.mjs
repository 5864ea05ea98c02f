// First load of the web app, cold cache, over loopback: bytes on the wire
// and time until the sign-in form is usable, in Chromium at phone size.
//   node scripts/first-load.mjs http://127.0.0.1:8080/ [runs]
// Each run uses a fresh browser context (empty cache). Prints the median.
import { chromium } from "playwright-core";

const url = process.argv[2] ?? "http://127.0.0.1:8080/";
const runs = Number(process.argv[3] ?? 5);
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium", args: ["--no-sandbox"] });
const times = [];
let bytes = 0;
for (let i = 0; i < runs; i++) {
  const context = await browser.newContext({ viewport: { width: 390, height: 844 } });
  const page = await context.newPage();
  let total = 0;
  // Bytes on the wire (compressed when the server compressed them).
  page.on("requestfinished", async (request) => {
    const sizes = await request.sizes().catch(() => null);
    if (sizes) total += sizes.responseBodySize + sizes.responseHeadersSize;
  });
  const start = Date.now();
  await page.goto(url);
  await page.waitForSelector("form.signin button, form.signin a.ent");
  times.push(Date.now() - start);
  await page.waitForLoadState("networkidle");
  bytes = total;
  await context.close();
}
await browser.close();
times.sort((a, b) => a - b);
console.log(JSON.stringify({ url, runs, median_ms: times[Math.floor(times.length / 2)], min_ms: times[0], max_ms: times[times.length - 1], bytes }));
