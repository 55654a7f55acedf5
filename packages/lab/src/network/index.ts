export { type BridgeSwitchOptions, createBridgeSwitch, vlanBridge } from "./bridge-switch.js";
export { type BootChain, type DnsmasqHandle, dnsmasqArgs } from "./dnsmasq.js";
export {
  LAB_SUBNET,
  LAB_SWITCH,
  type LabNetwork,
  type LabNetworkNic,
  type LabProbe,
  type StartLabNetworkOptions,
  startLabNetwork,
  type UserModeNetwork,
  whyNoNetns,
} from "./lab-network.js";
export { bridgeLoopbackPorts, cephClientPorts, type LoopbackBridge } from "./loopback-bridge.js";
export { NETNS_PREFIX, readNetworkState } from "./state-file.js";
