import { applyAction, type HilState, type NetworkingAction } from "./state.js";

/**
 * The switch behind the HIL-compatible server's networking daemon. Without one the server only
 * changes its records (HIL's mock switch); with one, a connect or detach is applied to a real
 * switch first and ends in ERROR when the switch refuses, as HIL's daemon does.
 */
export interface SwitchNic {
  node: string;
  nic: string;
  /** Where the NIC is cabled (the fixture's `cable`). */
  switch: string;
  port: string;
}

export interface SwitchVlan {
  /** The network's VLAN (its `network_id` under the vlan_pool allocator). */
  id: number;
  /** `vlan/native` is untagged (the port's PVID); `vlan/<id>` is tagged. */
  tagged: boolean;
}

export interface SwitchBackend {
  attach(nic: SwitchNic, vlan: SwitchVlan): Promise<void>;
  detach(nic: SwitchNic, vlan: SwitchVlan): Promise<void>;
}

/** The VLAN a channel (`vlan/native` or `vlan/<id>`) of network `networkId` puts on the port. */
export function vlanOfChannel(channel: string, networkId: string): SwitchVlan {
  const id = Number(networkId);
  if (!Number.isInteger(id) || id < 1 || id > 4094) throw new Error(`network id ${networkId} is not a VLAN`);
  return { id, tagged: channel !== "vlan/native" };
}

/** What the switch must do for one action: the VLAN changes, in order. */
function changesFor(
  state: HilState,
  action: NetworkingAction,
): { op: "attach" | "detach"; vlan: SwitchVlan }[] {
  const nic = state.nodes.get(action.node)?.nics.get(action.nic);
  const idOf = (network: string) => state.networks.get(network)?.networkId ?? "";
  if (!nic) return [];
  if (action.type === "revert_port") {
    return [...nic.networks].map(([channel, network]) => ({
      op: "detach",
      vlan: vlanOfChannel(channel, idOf(network)),
    }));
  }
  if (action.newNetwork !== null) {
    // A second row for a network the NIC already carries changes nothing on the switch.
    if ([...nic.networks.values()].includes(action.newNetwork)) return [];
    return [{ op: "attach", vlan: vlanOfChannel(action.channel, idOf(action.newNetwork)) }];
  }
  return [...nic.networks]
    .filter(([, network]) => network === action.oldNetwork)
    .map(([channel, network]) => ({ op: "detach", vlan: vlanOfChannel(channel, idOf(network)) }));
}

/**
 * The networking daemon's apply step with a switch behind it: the switch is programmed first, and
 * the action ends in ERROR (records unchanged) when it refuses. Without a switch: records only.
 */
export function createActionApplier(
  state: HilState,
  backend: SwitchBackend | undefined,
): (action: NetworkingAction) => void {
  if (backend === undefined) return (action) => applyAction(state, action);
  const inFlight = new Set<string>();
  return (action) => {
    if (action.status !== "PENDING" || action.outcome !== "done" || inFlight.has(action.id)) {
      if (!inFlight.has(action.id)) applyAction(state, action);
      return;
    }
    const nic = state.nodes.get(action.node)?.nics.get(action.nic);
    const port = nic?.port;
    if (!port) return applyAction(state, action);
    inFlight.add(action.id);
    const target: SwitchNic = { node: action.node, nic: action.nic, switch: port.switch, port: port.port };
    void (async () => {
      try {
        for (const change of changesFor(state, action)) await backend[change.op](target, change.vlan);
      } catch {
        // What HIL's daemon does when the switch refuses: the action ends in ERROR.
        action.outcome = "error";
      } finally {
        inFlight.delete(action.id);
        applyAction(state, action);
      }
    })();
  };
}
