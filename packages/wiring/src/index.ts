// @bmi/wiring: the composition root. Builds a BMI from bmi_config.cfg (drivers, store, command
// limit, logger) the one way the CLI, the server, the lab and the examples all use.
export { createBmiFromConfig, type WiredBmi } from "./bmi.js";
export { type ConfigDrivers, createDriversFromConfig, type WiringOptions } from "./drivers.js";
export { type RegisteredFromConfig, registerFromConfig } from "./register.js";
export { openStoreFromConfig } from "./store.js";
