export * from "./load-config.js";
export * from "./settings.js";
