// Hocuspocus peer for benches/loadgen.rs (`notes --target hocuspocus`): one
// Hocuspocus 3 server, documents kept in memory only (no extension: no
// database, no auth hook, no logger), WebSocket without compression.
//
//   node server.js [--port 9004]
//
// The generator speaks the Hocuspocus protocol itself: every message is
// varString(documentName) then a y-protocols message; a document starts with
// an auth message (type 2, token ignored since no onAuthenticate hook runs),
// then sync step 1. Updates are applied to the server's Y.Doc and the
// re-encoded update is sent to every connection of the document (the sender
// included), plus a SyncStatus ack (type 8) to the sender.
"use strict";

const { Server } = require("@hocuspocus/server");

let port = 9004;
const args = process.argv.slice(2);
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--port") port = Number(args[++i]);
}

const server = new Server({
  port,
  address: "127.0.0.1",
  quiet: true,
  // Keep the defaults otherwise (timeout 30 s, debounce 2 s for
  // onStoreDocument, which no extension implements here).
});

server.listen().then(() => {
  const version = require("./node_modules/@hocuspocus/server/package.json").version;
  console.error(`hocuspocus ${version} peer listening on ${port} (node ${process.version})`);
});
