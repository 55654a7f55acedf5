// @bmi/driver-hil: the IsolationDriver and PowerDriver over HIL's REST API v0, and a typed HIL client.
export {
  backoffDelay,
  createHilClient,
  type FetchLike,
  type HilClient,
  type HilClientOptions,
  OBM_METHODS,
  type ObmInit,
  type ObmOperation,
  type RequestOptions,
  type WaiterResult,
  type WaiterState,
  type WaitOptions,
} from "./client.js";
export {
  createHilIsolation,
  type HilIsolationOptions,
  hilOptionsFromConfig,
  registerHilIsolation,
} from "./driver.js";
export { errorFromResponse, type HilErrorDetails, obmdError } from "./errors.js";
export { createHilPower, type HilPowerOptions, powerOptionsFromConfig, powerStateOf } from "./power.js";
export * from "./schemas.js";
