// Socket.IO 4 peer with préau's room semantics, for benches/loadgen.rs
// (--target socketio). WebSocket transport only, no compression, no auth,
// no persistence.
//
//   node server.js [--port 9003]
//   REDIS_URL=redis://127.0.0.1:6379 node server.js --port 9003 --redis-adapter
//
// --redis-adapter: several processes serve the same rooms through
// @socket.io/redis-adapter (classic Redis pub/sub: every broadcast is
// published once and every node receives it), with the `redis` client on
// REDIS_URL. Then there is no shared order: the per-room counter below is
// per process, so events carry offset 0 (the generator skips its order
// check for offset 0) and acks carry the local counter.
//
// Events (client → server):
//   "join" (room, ack)        → socket.join(room); ack({ room, head })
//   "post" (room, text, ack?) → offset = ++room counter;
//                               io.to(room).emit("event", { room, offset, text })
//                               (the sender is in the room, so it gets it too);
//                               ack({ offset }) if the client asked for one.
// The per-room counter mirrors préau's offsets so the generator can check
// order; it costs one Map lookup per post.
"use strict";

const { Server } = require("socket.io");

let port = 9003;
let redisAdapter = false;
const args = process.argv.slice(2);
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--port") port = Number(args[++i]);
  else if (args[i] === "--redis-adapter") redisAdapter = true;
}

const io = new Server({
  transports: ["websocket"],
  perMessageDeflate: false,
  httpCompression: false,
  serveClient: false,
  maxHttpBufferSize: 64 * 1024,
});

const heads = new Map();

io.on("connection", (socket) => {
  socket.on("join", (room, ack) => {
    if (typeof room !== "string") return;
    socket.join(room);
    if (typeof ack === "function") ack({ room, head: heads.get(room) || 0 });
  });
  socket.on("leave", (room, ack) => {
    socket.leave(room);
    if (typeof ack === "function") ack({});
  });
  socket.on("post", (room, text, ack) => {
    if (typeof room !== "string" || typeof text !== "string") return;
    if (!socket.rooms.has(room)) return;
    const offset = (heads.get(room) || 0) + 1;
    heads.set(room, offset);
    io.to(room).emit("event", { room, offset: redisAdapter ? 0 : offset, text });
    if (typeof ack === "function") ack({ offset });
  });
  socket.on("disconnect", () => {});
});

// Rooms disappear from the adapter when empty; forget their counters then.
io.of("/").adapter.on("delete-room", (room) => heads.delete(room));

async function useRedis() {
  const url = process.env.REDIS_URL;
  if (!url) throw new Error("--redis-adapter needs REDIS_URL");
  const { createClient } = require("redis");
  const { createAdapter } = require("@socket.io/redis-adapter");
  const pub = createClient({ url });
  const sub = pub.duplicate();
  pub.on("error", (err) => console.error("redis (pub):", err.message));
  sub.on("error", (err) => console.error("redis (sub):", err.message));
  await Promise.all([pub.connect(), sub.connect()]);
  io.adapter(createAdapter(pub, sub));
  io.of("/").adapter.on("delete-room", (room) => heads.delete(room));
  return ` with @socket.io/redis-adapter ${require("@socket.io/redis-adapter/package.json").version} on ${url}`;
}

(redisAdapter ? useRedis() : Promise.resolve(""))
  .then((cluster) => {
    // Listen only once the adapter is in place.
    io.listen(port);
    console.error(`socket.io ${require("socket.io/package.json").version} peer listening on ${port}${cluster} (node ${process.version})`);
  })
  .catch((err) => {
    console.error(`cannot start: ${err.message}`);
    process.exit(1);
  });
