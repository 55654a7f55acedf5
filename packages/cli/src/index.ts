// @bmi/cli: the `bmi` command line and the REST server speaking the original BMI routes.
export { type DoctorCheck, type DoctorStep, doctorSteps, runDoctor } from "./doctor.js";
export { EXIT, exitCodeFor, httpStatusFor } from "./exit-codes.js";
export { type Column, FORMATS, type Format, type Result, render } from "./output.js";
export { type Connect, type Connection, type ConnectOptions, type RunOptions, run } from "./program.js";
export {
  basicCredentials,
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
