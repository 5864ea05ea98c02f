// Socket.IO 4 peer with préau's room semantics, for benches/loadgen.rs
// (--target socketio). WebSocket transport only, no compression, no auth,
// no persistence.
//
//   node server.js [--port 9003]
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
const args = process.argv.slice(2);
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--port") port = Number(args[++i]);
}

const io = new Server(port, {
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
    io.to(room).emit("event", { room, offset, text });
    if (typeof ack === "function") ack({ offset });
  });
  socket.on("disconnect", () => {});
});

// Rooms disappear from the adapter when empty; forget their counters then.
io.of("/").adapter.on("delete-room", (room) => heads.delete(room));

console.error(`socket.io ${require("socket.io/package.json").version} peer listening on ${port} (node ${process.version})`);
