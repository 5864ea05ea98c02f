// Test harness: each test starts its own préau server (the real binary) on a
// free port with a temporary data folder, and may put a TCP proxy in front
// of it to cut the network under a client.

import { spawn, execFile, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import net from "node:net";
import { createHmac } from "node:crypto";
import { createRequire } from "node:module";
import type { Page } from "playwright-core";
import { promisify } from "node:util";
import WebSocket from "ws";
import { PreauClient, type WebSocketCtor } from "../src/client.js";

const execFileP = promisify(execFile);

// build/test/harness.js -> clients/
export const CLIENTS_DIR = resolve(fileURLToPath(new URL("../../", import.meta.url)));
/** PREAU_BIN, or ../target/debug/preau relative to clients/. */
export const PREAU_BIN = process.env.PREAU_BIN
  ? resolve(process.env.PREAU_BIN)
  : resolve(CLIENTS_DIR, "../target/debug/preau");

const SECRET = "k1:preau-tests-0123456789abcdef";

export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", rej);
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => res(port));
    });
  });
}

export interface UserSpec {
  user: string;
  name: string;
  role: "student" | "teacher" | "parent" | "staff";
  classes?: string[];
  /** A parent's children: ids, or objects naming them and their classes (what an ENT gives). */
  children?: Array<string | { id: string; name?: string; classes?: string[] }>;
}

/**
 * An HS256 token signed with the test secret, as an ENT would issue it.
 * `preau token --child` takes children's ids only; a child's name and
 * classes (the diary labels a parent's items with them) need the object
 * form, so such tokens are signed here (protocol/README.md, "Tokens").
 */
export function signToken(u: UserSpec, ttlSeconds = 8 * 3600): string {
  const [kid, secret] = [SECRET.slice(0, SECRET.indexOf(":")), SECRET.slice(SECRET.indexOf(":") + 1)];
  const now = Math.floor(Date.now() / 1000);
  const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");
  const head = b64({ alg: "HS256", typ: "JWT", kid });
  const claims = b64({ sub: u.user, name: u.name, role: u.role, classes: u.classes ?? [], children: u.children ?? [], iat: now, exp: now + ttlSeconds });
  const sig = createHmac("sha256", secret).update(`${head}.${claims}`).digest("base64url");
  return `${head}.${claims}.${sig}`;
}

export class TestServer {
  proc!: ChildProcess;
  port = 0;
  dataDir = "";
  log = "";
  private tokens = new Map<string, string>();
  // Closed in stop(), so that a failed assertion does not leave a client
  // reconnecting forever and the test process hanging.
  private clients = new Set<PreauClient>();

  get httpUrl(): string {
    return `http://127.0.0.1:${this.port}`;
  }
  get wsUrl(): string {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  /** Starts préau; `extraArgs` may depend on its port (a redirect URL). */
  static async start(extraArgs: string[] | ((port: number) => string[]) = []): Promise<TestServer> {
    if (!existsSync(PREAU_BIN)) throw new Error(`préau binary not found at ${PREAU_BIN} (set PREAU_BIN)`);
    const s = new TestServer();
    s.dataDir = mkdtempSync(join(tmpdir(), "preau-client-test-"));
    s.port = await freePort();
    const extra = typeof extraArgs === "function" ? extraArgs(s.port) : extraArgs;
    s.proc = spawn(
      PREAU_BIN,
      ["serve", "--listen", `127.0.0.1:${s.port}`, "--data", s.dataDir, "--secret", SECRET, ...extra],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    s.proc.stdout!.on("data", (d) => (s.log += d));
    s.proc.stderr!.on("data", (d) => (s.log += d));
    const deadline = Date.now() + 15_000;
    for (;;) {
      if (s.proc.exitCode !== null) throw new Error(`préau exited early:\n${s.log}`);
      try {
        const r = await fetch(`${s.httpUrl}/healthz`);
        if (r.ok) break;
      } catch {
        /* not listening yet */
      }
      if (Date.now() > deadline) throw new Error(`préau did not start:\n${s.log}`);
      await sleep(50);
    }
    return s;
  }

  /** A token minted by `preau token` with the test secret. */
  async token(u: UserSpec): Promise<string> {
    const key = JSON.stringify(u);
    const cached = this.tokens.get(key);
    if (cached) return cached;
    if (u.children?.some((c) => typeof c !== "string")) {
      const tok = signToken(u);
      this.tokens.set(key, tok);
      return tok;
    }
    const args = ["token", "--secret", SECRET, "--user", u.user, "--name", u.name, "--role", u.role];
    for (const c of u.classes ?? []) args.push("--class", c);
    for (const c of u.children ?? []) args.push("--child", c as string);
    const { stdout } = await execFileP(PREAU_BIN, args);
    const tok = stdout.trim();
    this.tokens.set(key, tok);
    return tok;
  }

  /** A connected client for `u` (through `url` if given, e.g. a proxy). */
  async client(u: UserSpec, url = this.wsUrl): Promise<PreauClient> {
    const token = await this.token(u);
    const c = new PreauClient({
      url,
      token,
      WebSocket: WebSocket as unknown as WebSocketCtor,
      backoffMs: 50,
      backoffMaxMs: 400,
      requestTimeoutMs: 10_000,
    });
    this.clients.add(c);
    await c.connect();
    return c;
  }

  /**
   * Opens `rooms` the way a school does: a room exists only once a teacher
   * of its class or staff joins it (or acts in it), and a pupil naming a
   * room nobody opened gets `unknown_room`. A staff user ({@link OPENER})
   * joins each room, leaves it and disconnects, so it is no member of any.
   */
  async open(...rooms: string[]): Promise<void> {
    const opener = await this.client(OPENER);
    try {
      for (const room of rooms) {
        await opener.join(room);
        await opener.leave(room);
      }
    } finally {
      opener.close();
      this.clients.delete(opener);
    }
  }

  /**
   * Replaces the school directory (`PUT /admin/directory`, the server
   * started with `--admin-key` {@link ADMIN_KEY}): who exists, their
   * classes, teachings and children. From then on, tokens of people it
   * does not list are refused, and messages follow its rules.
   */
  async syncDirectory(sync: DirectorySync): Promise<void> {
    const r = await fetch(`${this.httpUrl}/admin/directory`, {
      method: "PUT",
      headers: { authorization: `Bearer ${ADMIN_KEY}`, "content-type": "application/json" },
      body: JSON.stringify({ mode: "full", ...sync }),
    });
    if (r.status !== 200) throw new Error(`directory sync: ${r.status} ${await r.text()}`);
  }

  /** Registers a client made by the test itself, to be closed by stop(). */
  track<T extends PreauClient>(c: T): T {
    this.clients.add(c);
    return c;
  }

  async stop(): Promise<void> {
    for (const c of this.clients) c.close();
    if (this.proc.exitCode === null) {
      const exited = new Promise((r) => this.proc.once("exit", r));
      this.proc.kill("SIGTERM");
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([exited, new Promise((r) => (timer = setTimeout(r, 5_000)))]);
      clearTimeout(timer);
      if (this.proc.exitCode === null) this.proc.kill("SIGKILL");
    }
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}

/** A TCP proxy whose connections the test can cut, and which can refuse new ones. */
export class CuttableProxy {
  private server: net.Server;
  private sockets = new Set<net.Socket>();
  blocked = false;
  port = 0;

  private constructor(upstreamPort: number) {
    this.server = net.createServer((down) => {
      if (this.blocked) {
        down.destroy();
        return;
      }
      const up = net.connect(upstreamPort, "127.0.0.1");
      for (const s of [down, up]) {
        this.sockets.add(s);
        s.on("close", () => this.sockets.delete(s));
        s.on("error", () => {});
      }
      down.pipe(up);
      up.pipe(down);
      down.on("close", () => up.destroy());
      up.on("close", () => down.destroy());
    });
  }

  static async start(upstreamPort: number): Promise<CuttableProxy> {
    const p = new CuttableProxy(upstreamPort);
    await new Promise<void>((r) => p.server.listen(0, "127.0.0.1", () => r()));
    p.port = (p.server.address() as net.AddressInfo).port;
    return p;
  }

  get wsUrl(): string {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  /** Network loss: every connection dies at once, without a close frame. */
  cut(): void {
    for (const s of this.sockets) s.destroy();
  }

  close(): Promise<void> {
    this.cut();
    return new Promise((r) => this.server.close(() => r()));
  }
}

/** The admin key of servers started with `--admin-key` (directory syncs). */
export const ADMIN_KEY = "preau-tests-admin-key-0123456789abcdef";

/** A full directory sync (protocol/directory.openapi.yaml). */
export interface DirectorySync {
  version: number;
  classes: Array<{ id: string; level?: string }>;
  people: Array<{
    id: string;
    name: string;
    role: UserSpec["role"];
    classes?: string[];
    teaches?: Array<{ class: string; subject: string }>;
    children?: string[];
  }>;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `cond` until true, or fails with `what` after `ms`. */
export async function waitFor(cond: () => boolean, what: string, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

export const ALICE: UserSpec = { user: "alice", name: "Alice Martin", role: "student", classes: ["3B"] };
export const BOB: UserSpec = { user: "bob", name: "Bob Leroy", role: "student", classes: ["3B"] };
export const TEACHER: UserSpec = { user: "t-durand", name: "M. Durand", role: "teacher", classes: ["3B"] };
/** The staff user who opens rooms before pupils use them ({@link TestServer.open}). */
export const OPENER: UserSpec = { user: "opener", name: "Ouverture des salons", role: "staff" };

const AXE_PATH = createRequire(import.meta.url).resolve("axe-core/axe.min.js");

/** axe-core's serious and critical violations on the page as it is now (WCAG 2 A and AA rules). */
/**
 * Visible controls smaller than a fingertip (44 px), controls past the
 * right edge, and whether the page scrolls sideways: phone-first checks.
 * `also`: more selectors to check (e.g. a label that acts as a checkbox).
 */
export async function layoutProblems(page: Page, also = ""): Promise<string[]> {
  const selector = ["button, a, summary, select, input:not([type=checkbox]), textarea", also].filter(Boolean).join(", ");
  return page.evaluate((selector) => {
    const problems: string[] = [];
    if (document.documentElement.scrollWidth > window.innerWidth) problems.push(`scrolls sideways: ${document.documentElement.scrollWidth} > ${window.innerWidth}`);
    for (const node of document.querySelectorAll<HTMLElement>(selector)) {
      const r = node.getBoundingClientRect();
      if (r.width === 0 || r.height === 0 || getComputedStyle(node).visibility === "hidden") continue;
      if (r.height < 44 || r.width < 44) problems.push(`${node.tagName.toLowerCase()} « ${(node.textContent ?? "").trim().slice(0, 30)} » ${Math.round(r.width)}×${Math.round(r.height)}`);
      if (r.right > window.innerWidth + 1) problems.push(`${node.tagName.toLowerCase()} « ${(node.textContent ?? "").trim().slice(0, 30)} » goes past the right edge`);
    }
    return problems;
  }, selector);
}

export async function axeViolations(page: Page): Promise<string[]> {
  await page.addScriptTag({ path: AXE_PATH });
  const found = await page.evaluate(async () => {
    const result = await (window as any).axe.run(document, { runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"] } });
    return result.violations.map((v: any) => ({ id: v.id, impact: v.impact, nodes: v.nodes.map((n: any) => n.target.join(" ")).slice(0, 3) }));
  });
  return found.filter((v: any) => v.impact === "serious" || v.impact === "critical").map((v: any) => `${v.id} (${v.impact}): ${v.nodes.join(", ")}`);
}
