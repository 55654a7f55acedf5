// The REST server lives in ./server/ (one file per route group); this path stays for its importers.
export * from "./server/index.js";
