import type { SwitchBackend, SwitchNic, SwitchVlan } from "@bmi/driver-hil/testing";
import { ipIn, runCommand } from "./commands.js";

/** The bridge that is VLAN `id` inside the lab's namespace. */
export const vlanBridge = (id: number) => `br${id}`;

export interface BridgeSwitchOptions {
  netns: string;
  /** The HIL switch name the fixture cables the lab's NICs to. */
  name: string;
  /** The ports it may program (the lab's taps and probes); any other name is refused. */
  ports: () => ReadonlySet<string>;
}

/** The bridge a port is enslaved to, or null. */
async function masterOf(netns: string, port: string): Promise<string | null> {
  const out = await ipIn(netns, ["-o", "link", "show", "dev", port]);
  return /\smaster\s(\S+)/.exec(out)?.[1] ?? null;
}

/**
 * HIL's switch as the lab's bridges, one Linux bridge per VLAN (`br<vlan>`): a NIC attached to a
 * network (`vlan/native`) = its port is a member of that VLAN's bridge; detached = a member of
 * none, so it reaches nothing. One bridge per VLAN, not one VLAN-filtering bridge: the kernels
 * here have neither CONFIG_BRIDGE_VLAN_FILTERING nor 802.1Q devices ("Operation not supported"),
 * so trunked channels (`vlan/<id>`) are refused, as a switch refuses what it cannot do.
 */
export function createBridgeSwitch(options: BridgeSwitchOptions): SwitchBackend {
  const { netns } = options;
  const portOf = (nic: SwitchNic): string => {
    if (nic.switch !== options.name || !options.ports().has(nic.port)) {
      throw new Error(`${nic.switch}/${nic.port} (${nic.node} ${nic.nic}) is not a port of the lab's switch`);
    }
    return nic.port;
  };
  const nativeOnly = (vlan: SwitchVlan) => {
    if (vlan.tagged) {
      throw new Error(
        `VLAN ${vlan.id} tagged: the lab's switch carries native VLANs only (no 802.1Q in this kernel)`,
      );
    }
  };
  const ensureBridge = async (id: number) => {
    const bridge = vlanBridge(id);
    const shown = await runCommand("ip", ["-n", netns, "link", "show", "dev", bridge]);
    if (shown.exitCode !== 0) await ipIn(netns, ["link", "add", bridge, "type", "bridge"]);
    await ipIn(netns, ["link", "set", bridge, "up"]);
    return bridge;
  };
  // One change at a time: two attaches must not both create a VLAN's bridge.
  let queue: Promise<unknown> = Promise.resolve();
  const serial = (work: () => Promise<void>): Promise<void> => {
    const next = queue.then(work, work);
    queue = next.catch(() => undefined);
    return next;
  };
  return {
    attach: (nic, vlan) =>
      serial(async () => {
        const port = portOf(nic);
        nativeOnly(vlan);
        const bridge = vlanBridge(vlan.id);
        const master = await masterOf(netns, port);
        if (master === bridge) return;
        if (master !== null) throw new Error(`${port} already carries ${master} natively`);
        await ipIn(netns, ["link", "set", port, "master", await ensureBridge(vlan.id)]);
      }),
    detach: (nic, vlan) =>
      serial(async () => {
        const port = portOf(nic);
        nativeOnly(vlan);
        const master = await masterOf(netns, port);
        if (master !== vlanBridge(vlan.id)) throw new Error(`${port} is not on VLAN ${vlan.id}`);
        await ipIn(netns, ["link", "set", port, "nomaster"]);
      }),
  };
}
