// @bmi/cli: the `bmi` command line and the REST server speaking the original BMI routes.
export { type DoctorCheck, runDoctor } from "./doctor.js";
export { EXIT, exitCodeFor, httpStatusFor } from "./exit-codes.js";
export { type RunOptions, run } from "./program.js";
export {
  basicCredentials,
  type HealthDrivers,
  type RestServer,
  type RestServerOptions,
  ROUTES,
  startRestServer,
} from "./server.js";
export {
  type ConfigDrivers,
  createBmiFromConfig,
  createDriversFromConfig,
  type WiredBmi,
  type WiringOptions,
} from "./wiring.js";
