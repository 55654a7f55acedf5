export * from "./config/index.js";
export * from "./domain/index.js";
export * from "./errors/index.js";
export * from "./exec/index.js";
export * from "./fs/index.js";
export * from "./log/index.js";
export * from "./ports/index.js";
export * from "./store/index.js";
