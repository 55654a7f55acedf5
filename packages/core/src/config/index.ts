export * from "./config-logger.js";
export * from "./load-config.js";
export * from "./settings.js";
