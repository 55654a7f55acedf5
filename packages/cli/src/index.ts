// @bmi/cli: the `bmi` command line and the REST server speaking the original BMI routes.

/**
 * @deprecated since 0.2: import these from `@bmi/wiring`. Re-exported for one release, removed in 0.3.
 */
export {
  type ConfigDrivers,
  createBmiFromConfig,
  createDriversFromConfig,
  type WiredBmi,
  type WiringOptions,
} from "@bmi/wiring";
export type { DoctorOptions } from "./doctor.js";
export { type DoctorCheck, type DoctorStep, doctorSteps, runDoctor } from "./doctor.js";
export { EXIT, exitCodeFor, httpStatusFor } from "./exit-codes.js";
export { type Column, FORMATS, type Format, type Result, render } from "./output.js";
export { type Connect, type Connection, type ConnectOptions, type RunOptions, run } from "./program.js";
export type { Credentials, RestLimits, Route, RouteCall } from "./server.js";
export {
  basicCredentials,
  type HealthDrivers,
  type RestServer,
  type RestServerOptions,
  ROUTES,
  startRestServer,
} from "./server.js";
