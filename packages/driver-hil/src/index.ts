// @bmi/driver-hil: the IsolationDriver over HIL's REST API v0, and a typed HIL client.
export {
  backoffDelay,
  createHilClient,
  type FetchLike,
  type HilClient,
  type HilClientOptions,
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
export { errorFromResponse, type HilErrorDetails } from "./errors.js";
export * from "./schemas.js";
