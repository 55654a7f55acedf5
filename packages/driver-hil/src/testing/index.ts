// @bmi/driver-hil/testing: a HIL-compatible server and an obmd-compatible BMC for tests and labs.
export type { FaultRule, HilFaults, NextActionFault, RouteMatcher, StatusFault } from "./faults.js";
export { type HilFixture, loadFixture } from "./fixture.js";
export {
  createMemoryMachine,
  createObmdEndpoint,
  type MemoryMachine,
  type ObmdEndpoint,
  type ObmdMachine,
  type ObmdOptions,
  type ObmdServer,
  startObmdServer,
} from "./obmd.js";
export { type HilServer, type HilServerKnobs, type HilServerOptions, startHilServer } from "./server.js";
export type {
  ActionStatus,
  HilState,
  NetworkingAction,
  NetworkState,
  NicState,
  NodeState,
  SwitchState,
  UserState,
} from "./state.js";
export { type SwitchBackend, type SwitchNic, type SwitchVlan, vlanOfChannel } from "./switch.js";
