// @bmi/core/testing: in-memory drivers, a whole in-memory BMI and helpers for users' own tests,
// in any test runner (nothing here imports vitest). The drivers' contract suites are on
// @bmi/core/testing/contracts.
export * from "./fault-injector.js";
export * from "./memory/boot.js";
export * from "./memory/export.js";
export * from "./memory/isolation.js";
export * from "./memory/power.js";
export * from "./memory/storage.js";
export * from "./memory-bmi.js";
export * from "./recording-runner.js";
export * from "./scenarios.js";
export * from "./state.js";
export * from "./text-sink.js";
