// @bmi/core/testing/contracts: the suites every driver of a port must pass. They declare vitest
// tests (vitest is an optional peer dependency), so they live apart from the in-memory drivers,
// which load in any test runner.
export * from "./boot.js";
export * from "./export.js";
export * from "./isolation.js";
export * from "./operations.js";
export * from "./power.js";
export * from "./storage.js";
export * from "./store.js";
