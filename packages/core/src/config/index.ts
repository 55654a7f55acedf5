export * from "./ini-reader.js";
export * from "./load-config.js";
export * from "./settings.js";
