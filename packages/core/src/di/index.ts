export * from "./container.js";
export * from "./tokens.js";
