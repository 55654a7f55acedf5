// @bmi/core/testing: in-memory drivers, the contract suites every driver must pass, and helpers
// for users' own tests.
export * from "./contracts/boot.js";
export * from "./contracts/export.js";
export * from "./contracts/isolation.js";
export * from "./contracts/storage.js";
export * from "./fault-injector.js";
export * from "./memory/boot.js";
export * from "./memory/export.js";
export * from "./memory/isolation.js";
export * from "./memory/storage.js";
export * from "./memory-bmi.js";
export * from "./recording-runner.js";
export * from "./state.js";
