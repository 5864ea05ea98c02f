// Chat through PreauClient against the real server.

import { test } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { PreauClient, PreauError, type EventFrame, type WebSocketCtor } from "../src/client.js";
import { ALICE, BOB, CuttableProxy, TestServer, waitFor } from "./harness.js";

const FAST = ["--rate-per-sec", "1000", "--rate-burst", "1000"];
const ROOM = "3B/chat/general";

function collect(c: PreauClient, room = ROOM): EventFrame[] {
  const seen: EventFrame[] = [];
  c.on("event", (ev) => {
    if (ev.room === room) seen.push(ev);
  });
  return seen;
}

function offsets(evs: EventFrame[]): number[] {
  return evs.map((e) => e.offset);
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

test("hello, join, post: both members receive the message", async () => {
  const srv = await TestServer.start(FAST);
  try {
    await srv.open(ROOM);
    const alice = await srv.client(ALICE);
    const bob = await srv.client(BOB);
    assert.equal(alice.user?.id, "alice");
    assert.equal(typeof alice.hello?.limits.max_message_len, "number");
    const aliceSeen = collect(alice);
    const bobSeen = collect(bob);
    const presence: string[] = [];
    alice.on("presence", (p) => presence.push(`${p.action}:${p.user.id}`));

    const j = await alice.join(ROOM);
    assert.equal(j.head, 0);
    assert.deepEqual(j.events, []);
    await bob.join(ROOM);
    await waitFor(() => presence.includes("join:bob"), "bob's presence");

    const ok = await alice.post(ROOM, "Bonjour à tous 👋");
    assert.equal(ok.offset, 1);
    assert.equal(typeof ok.ts, "number");
    assert.ok(ok.ts > 1.7e12, "ts is milliseconds since the epoch, as a number");
    await waitFor(() => bobSeen.length === 1 && aliceSeen.length === 1, "the event on both sides");
    assert.equal(bobSeen[0].body.text, "Bonjour à tous 👋");
    assert.equal(bobSeen[0].from.name, "Alice Martin");
    assert.equal(bobSeen[0].ts, ok.ts);

    // typing reaches the other member only
    const typing: string[] = [];
    bob.on("typing", (t) => typing.push(t.user.id));
    await alice.typing(ROOM);
    await waitFor(() => typing.length === 1, "typing");
    assert.deepEqual(typing, ["alice"]);
    alice.close();
    bob.close();
  } finally {
    await srv.stop();
  }
});

test("error replies reject with code and retryAfterMs", async () => {
  const srv = await TestServer.start(["--rate-per-sec", "1", "--rate-burst", "2"]);
  try {
    await srv.open(ROOM);
    const alice = await srv.client(ALICE);
    await assert.rejects(alice.post(ROOM, "x"), (e: PreauError) => e instanceof PreauError && e.code === "not_joined");
    await assert.rejects(alice.join("3B/nope/x"), (e: PreauError) => e.code === "invalid_room");
    await assert.rejects(alice.join("4C/chat/x"), (e: PreauError) => e.code === "forbidden");
    // A room nobody opened does not exist for a pupil (a teacher of the class or staff opens it).
    await assert.rejects(alice.join("3B/chat/jamais"), (e: PreauError) => e.code === "unknown_room");
    await alice.join(ROOM);
    await assert.rejects(alice.join(ROOM), (e: PreauError) => e.code === "already_joined");
    await alice.post(ROOM, "un");
    await alice.post(ROOM, "deux");
    await assert.rejects(alice.post(ROOM, "trois"), (e: PreauError) => {
      assert.equal(e.code, "rate_limited");
      assert.ok(typeof e.retryAfterMs === "number" && e.retryAfterMs >= 1, `retryAfterMs ${e.retryAfterMs}`);
      return true;
    });
    alice.close();
  } finally {
    await srv.stop();
  }
});

test("a bad token is fatal: connect() rejects and the client does not retry", async () => {
  const srv = await TestServer.start();
  try {
    const c = srv.track(new PreauClient({
      url: srv.wsUrl,
      token: "not.a.jwt",
      WebSocket: WebSocket as unknown as WebSocketCtor,
      backoffMs: 20,
    }));
    let fatal: PreauError | undefined;
    c.on("fatal", (e) => (fatal = e));
    await assert.rejects(c.connect(), (e: PreauError) => e.code === "unauthorized");
    assert.equal(c.state, "closed");
    assert.equal(fatal?.code, "unauthorized");
  } finally {
    await srv.stop();
  }
});

test("history pages backwards and forwards without gaps", async () => {
  const srv = await TestServer.start(FAST);
  try {
    await srv.open(ROOM);
    const alice = await srv.client(ALICE);
    await alice.join(ROOM);
    for (let i = 1; i <= 25; i++) await alice.post(ROOM, `message ${i}`);

    // Backwards from the newest, as a chat view scrolls up.
    const pages: number[][] = [];
    let before: number | undefined;
    for (;;) {
      const page = await alice.history(ROOM, { before, limit: 10 });
      assert.equal(page.head, 25);
      pages.push(offsets(page.events));
      if (!page.more) break;
      before = page.events[0].offset;
    }
    assert.deepEqual(pages, [range(16, 25), range(6, 15), range(1, 5)]);

    // Forwards, as a too_far_behind catch-up does.
    const fwd: number[] = [];
    let after = 0;
    for (;;) {
      const page = await alice.history(ROOM, { after, limit: 7 });
      fwd.push(...offsets(page.events));
      if (!page.more) break;
      after = page.events[page.events.length - 1].offset;
    }
    assert.deepEqual(fwd, range(1, 25));
    const one = await alice.history(ROOM, { before: 3, limit: 1 });
    assert.equal(one.events[0].body.text, "message 2");
    alice.close();
  } finally {
    await srv.stop();
  }
});

// Alice sits behind a proxy; the test cuts her network while Bob keeps posting.
async function cutAndRecover(extraArgs: string[], offline: number) {
  const srv = await TestServer.start([...FAST, ...extraArgs]);
  const proxy = await CuttableProxy.start(srv.port);
  try {
    await srv.open(ROOM);
    const alice = await srv.client(ALICE, proxy.wsUrl);
    const bob = await srv.client(BOB);
    const seen = collect(alice);
    const recoveries: unknown[] = [];
    const resets: unknown[] = [];
    alice.on("recovery", (r) => recoveries.push(r));
    alice.on("reset", (r) => resets.push(r));
    await alice.join(ROOM);
    await bob.join(ROOM);
    for (let i = 1; i <= 3; i++) await bob.post(ROOM, `avant ${i}`);
    await waitFor(() => seen.length === 3, "the first three live events");

    proxy.blocked = true;
    proxy.cut();
    await waitFor(() => alice.state === "connecting", "alice noticing the loss");
    for (let i = 1; i <= offline; i++) await bob.post(ROOM, `pendant ${i}`);
    proxy.blocked = false;

    await waitFor(() => alice.state === "open", "alice reconnecting", 10_000);
    await waitFor(() => seen.length === 3 + offline, "the missed events", 10_000);
    await bob.post(ROOM, "après");
    await waitFor(() => seen.length === 4 + offline, "the next live event");
    // Exactly once, in order, no gap.
    assert.deepEqual(offsets(seen), range(1, 4 + offline));
    assert.equal(seen[3].body.text, "pendant 1");
    assert.deepEqual(resets, []);
    assert.equal(alice.position(ROOM)?.offset, 4 + offline);
    alice.close();
    bob.close();
    return recoveries;
  } finally {
    await proxy.close();
    await srv.stop();
  }
}

test("network loss: the client reconnects and recovers every missed event once", async () => {
  const recoveries = await cutAndRecover([], 5);
  assert.deepEqual(recoveries, [{ room: ROOM, recovered: true }]);
});

test("network loss past recovery_max: too_far_behind is filled from history, no gap", async () => {
  const recoveries = await cutAndRecover(["--recovery-max", "3"], 12);
  assert.deepEqual(recoveries, [{ room: ROOM, recovered: false, reason: "too_far_behind", caughtUp: true }]);
});

test("an unrecoverable position surfaces as reset (offset_ahead, epoch_mismatch)", async () => {
  const srv = await TestServer.start(FAST);
  try {
    await srv.open(ROOM);
    const alice = await srv.client(ALICE);
    const j = await alice.join(ROOM);
    await alice.post(ROOM, "un");
    await alice.leave(ROOM);
    const resets: Array<{ reason: string; head: number }> = [];
    alice.on("reset", (r) => resets.push(r));
    await alice.join(ROOM, { epoch: j.epoch, offset: 99 });
    await alice.leave(ROOM);
    await alice.join(ROOM, { epoch: "not-this-epoch", offset: 1 });
    assert.deepEqual(
      resets.map((r) => [r.reason, r.head]),
      [
        ["offset_ahead", 1],
        ["epoch_mismatch", 1],
      ],
    );
    // After a reset the client resumes from the head it was given.
    assert.deepEqual(alice.position(ROOM), { epoch: j.epoch, offset: 1 });
    alice.close();
  } finally {
    await srv.stop();
  }
});

test("join before the connection is up waits for it; leave stops re-joining", async () => {
  const srv = await TestServer.start(FAST);
  const proxy = await CuttableProxy.start(srv.port);
  try {
    await srv.open(ROOM);
    const token = await srv.token(ALICE);
    const alice = srv.track(
      new PreauClient({
        url: proxy.wsUrl,
        token,
        WebSocket: WebSocket as unknown as WebSocketCtor,
        backoffMs: 20,
        backoffMaxMs: 100,
      }),
    );
    const joined = alice.join(ROOM);
    await alice.connect();
    assert.equal((await joined).room, ROOM);
    await alice.leave(ROOM);
    const rejoins: string[] = [];
    alice.on("joined", (j) => rejoins.push(j.room));
    let reopened = 0;
    alice.on("open", () => reopened++);
    proxy.cut();
    await waitFor(() => reopened === 1, "the reconnection");
    await alice.ping();
    assert.deepEqual(rejoins, []);
    alice.close();
  } finally {
    await proxy.close();
    await srv.stop();
  }
});
