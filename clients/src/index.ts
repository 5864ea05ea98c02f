export * from "./client.js";
export * from "./yjs-provider.js";
export * from "./forum.js";
export * from "./agenda.js";
export * from "./homework.js";
export * from "./messages.js";
export * from "./announce.js";
