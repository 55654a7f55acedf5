export * from "./addresses.js";
export * from "./model.js";
export * from "./names.js";
export * from "./schemas.js";
export * from "./validate.js";
