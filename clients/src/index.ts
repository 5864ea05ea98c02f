export * from "./client.js";
export * from "./yjs-provider.js";
