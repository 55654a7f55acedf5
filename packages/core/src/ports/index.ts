export * from "./boot.js";
export * from "./common.js";
export * from "./driver-kit.js";
export * from "./export.js";
export * from "./isolation.js";
export * from "./power.js";
export * from "./storage.js";
