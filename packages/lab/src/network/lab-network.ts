import { access, mkdir } from "node:fs/promises";
import { isAbsolute } from "node:path";
import { parseInput } from "@bmi/core";
import type { SwitchBackend } from "@bmi/driver-hil/testing";
import { z } from "zod";
import { createBridgeSwitch, vlanBridge } from "./bridge-switch.js";
import { ipIn, mustRun, runCommand } from "./commands.js";
import { type BootChain, type DnsmasqHandle, startDnsmasq } from "./dnsmasq.js";
import { bridgeLoopbackPorts } from "./loopback-bridge.js";
import {
  cleanUpDeadLab,
  NETNS_PREFIX,
  type NetworkStateRecord,
  removeAndForget,
  writeNetworkState,
} from "./state-file.js";

/** The provisioning subnet, private to the lab's namespace (nothing routes it anywhere else). */
export const LAB_SUBNET = {
  prefix: "10.247.0",
  host: "10.247.0.1",
  bits: 24,
  netmask: "255.255.255.0",
} as const;
const DHCP_RANGE = { first: `${LAB_SUBNET.prefix}.100`, last: `${LAB_SUBNET.prefix}.199` };
const FIRST_PROBE_HOST = 50;
/** The HIL switch name a fixture cables the lab's NICs to. */
export const LAB_SWITCH = "lab-bridge";

const Mac = z
  .string()
  .regex(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/, { error: "must be a lower-case MAC such as 52:54:00:12:34:56" });
const Name = z.string().regex(/^[a-z0-9][a-z0-9-]{0,11}$/, {
  error: "must be 1-12 lower-case letters, digits or '-' (it names a namespace and devices)",
});
const AbsolutePath = z
  .string()
  .refine(isAbsolute, { error: "must be an absolute path" })
  .refine((p) => !p.includes(","), {
    error: "must not contain ',' (dnsmasq splits its options on commas)",
  });

const OptionsSchema = z.object({
  labId: Name,
  dir: AbsolutePath,
  tftpRoot: AbsolutePath,
  provisioningVlan: z.number().int().min(2).max(4094),
  nics: z
    .array(
      z.object({
        node: z.string().min(1),
        nic: z.string().min(1),
        mac: Mac,
        chain: z.enum(["pxelinux", "ipxe"]).optional(),
      }),
    )
    .max(40),
  dhcpHostsDir: AbsolutePath.optional(),
  ipxeBootFile: z
    .string()
    .regex(/^[\w.-]+(\/[\w.-]+)*$/)
    .default("ipxe-mac/boot.ipxe"),
  mode: z.enum(["auto", "netns", "user"]).default("auto"),
  hostLoopbackPorts: z.array(z.number().int().min(1).max(65535)).max(64).default([]),
  log: z.function().optional(),
});

export interface LabNetworkNic {
  node: string;
  nic: string;
  mac: string;
  /** `pxelinux`: dnsmasq hands this MAC pxelinux.0 (the original's chain); default iPXE's dispatcher. */
  chain?: BootChain;
}

export interface StartLabNetworkOptions {
  /** Names the namespace `bmi-<labId>` (and probes `bmi-<labId>-<probe>`). */
  labId: string;
  /** The lab's directory, kept across runs: the state file that lets the next start clean up. */
  dir: string;
  /** What dnsmasq serves over TFTP (the root `@bmi/driver-pxe` writes). */
  tftpRoot: string;
  /** HIL's provisioning network's VLAN: the host side (dnsmasq, tgtd) is on it, untagged. */
  provisioningVlan: number;
  /** One tap per NIC: a switch port (its HIL port name is the tap's, see `taps`). */
  nics: LabNetworkNic[];
  /** BMI's dnsmasq host entries (`[dhcp] hosts_dir`); when given, only MACs listed there get a lease. */
  dhcpHostsDir?: string;
  /** iPXE's boot file, relative to the TFTP root. Default `ipxe-mac/boot.ipxe`. */
  ipxeBootFile?: string;
  /** `auto` (default): a real network when root with netns and /dev/net/tun, else qemu's user mode. */
  mode?: "auto" | "netns" | "user";
  /**
   * Ports of the host's 127.0.0.1 that processes inside the namespace reach at their own
   * 127.0.0.1 (the lab's Ceph monitors and OSDs, `cephClientPorts()`, for tgtd's rbd backing
   * store), through unix sockets: nothing is routed out of the namespace.
   */
  hostLoopbackPorts?: number[];
  /** Where the lab says which network it uses. */
  log?: (line: string) => void;
}

export interface LabProbe {
  /** The probe's own namespace (a host on the lab network, like a booted node's OS). */
  netns: string;
  /** Its bridge port, for the switch (`attach`) like a NIC's tap. */
  port: string;
  address: string;
  /** Runs a command inside the probe's namespace. */
  run(
    command: string,
    args: readonly string[],
  ): Promise<{ exitCode: number; stdout: string; stderr: string }>;
}

export interface LabNetwork {
  readonly kind: "netns";
  readonly netns: string;
  /** The provisioning VLAN's bridge (`br<vlan>`), where the host side's address is. */
  readonly bridge: string;
  /** The host side's address on the provisioning VLAN: dnsmasq's, and where tgtd's portal goes. */
  readonly hostAddress: string;
  readonly provisioningVlan: number;
  /** `node/nic` → its tap (also its HIL switch port). */
  readonly taps: ReadonlyMap<string, string>;
  tapOf(node: string, nic: string): string;
  /** HIL's switch back end for `startHilServer({ switch })`; cable NICs to `LAB_SWITCH`/their tap. */
  readonly switch: SwitchBackend;
  readonly dnsmasq: DnsmasqHandle;
  /** A host on the lab network in its own namespace, cabled to the bridge (`bmi-<lab>-<name>`). */
  addProbe(name: string): Promise<LabProbe>;
  /** The topology in a few lines, for reports. */
  describe(): string;
  /** Stops dnsmasq, kills what still runs in our namespaces, removes them (bridge and taps with them). */
  stop(): Promise<void>;
}

export interface UserModeNetwork {
  readonly kind: "user";
  /** Why the real network is not used. */
  readonly reason: string;
  stop(): Promise<void>;
}

/** Why a real network cannot be made here, or null when it can. */
export async function whyNoNetns(): Promise<string | null> {
  if (process.getuid?.() !== 0) return "not root (network namespaces and taps need root)";
  try {
    await access("/dev/net/tun");
  } catch {
    return "no /dev/net/tun (taps need the tun driver)";
  }
  const ip = await runCommand("ip", ["netns", "list"]).catch(() => null);
  if (ip === null || ip.exitCode !== 0) return "no usable `ip netns` (install iproute2)";
  return null;
}

/**
 * The lab's provisioning network, for real: its own namespace `bmi-<labId>`, a switch made of one
 * bridge per VLAN (see bridge-switch.ts for why not one VLAN-filtering bridge), one tap per node
 * NIC as a port in no VLAN until HIL attaches it, the host side on the provisioning VLAN with a
 * private address, and dnsmasq serving DHCP and TFTP there. A previous run of this lab killed before its stop is cleaned up first. Without root (or
 * netns, or taps) it falls back to qemu's user-mode network and says why.
 */
export async function startLabNetwork(
  options: StartLabNetworkOptions,
): Promise<LabNetwork | UserModeNetwork> {
  const input = parseInput(OptionsSchema, options, "network", "config");
  const log = options.log ?? (() => {});
  const why = input.mode === "user" ? "asked for user mode" : await whyNoNetns();
  if (why !== null) {
    if (input.mode === "netns") throw new Error(`cannot make the lab's network namespace: ${why}`);
    log(`lab network: qemu user-mode networking (${why}); no DHCP/TFTP server, no VLAN isolation`);
    return { kind: "user", reason: why, stop: async () => {} };
  }
  await mkdir(input.dir, { recursive: true });
  const left = await cleanUpDeadLab(input.dir);
  if (left !== null)
    log(`lab network: removed what a dead lab (pid ${left.ownerPid}) left: ${left.namespaces.join(", ")}`);

  const netns = `${NETNS_PREFIX}${input.labId}`;
  const existing = await runCommand("ip", ["netns", "list"]);
  if (existing.stdout.split("\n").some((line) => line.split(" ")[0] === netns)) {
    throw new Error(
      `network namespace ${netns} exists and no state file in ${input.dir} says it is ours; not touching it`,
    );
  }
  const state: NetworkStateRecord = { ownerPid: process.pid, namespaces: [netns], processes: [] };
  await writeNetworkState(input.dir, state);
  try {
    return await build(input, netns, state, log);
  } catch (error) {
    await removeAndForget(input.dir, state).catch(() => undefined);
    throw error;
  }
}

type Input = z.infer<typeof OptionsSchema>;

/** The namespace with the provisioning VLAN's bridge, which carries the host side's address. */
async function addHostSide(netns: string, provisioningVlan: number): Promise<string> {
  await mustRun("ip", ["netns", "add", netns]);
  await ipIn(netns, ["link", "set", "lo", "up"]);
  // Tenant VLANs' bridges come with attaches.
  const bridge = vlanBridge(provisioningVlan);
  await ipIn(netns, ["link", "add", bridge, "type", "bridge"]);
  await ipIn(netns, ["addr", "add", `${LAB_SUBNET.host}/${LAB_SUBNET.bits}`, "dev", bridge]);
  await ipIn(netns, ["link", "set", bridge, "up"]);
  return bridge;
}

/** One tap per NIC, keyed `node/nic`. */
async function addTaps(netns: string, nics: Input["nics"]): Promise<Map<string, string>> {
  const taps = new Map<string, string>();
  for (const [index, nic] of nics.entries()) {
    const tap = `tap${index}`;
    // In no bridge (no VLAN) until HIL attaches it: an unattached NIC reaches nothing.
    await ipIn(netns, ["tuntap", "add", "dev", tap, "mode", "tap"]);
    await ipIn(netns, ["link", "set", tap, "up"]);
    taps.set(`${nic.node}/${nic.nic}`, tap);
  }
  return taps;
}

/** dnsmasq on the bridge and, when asked, the host's loopback ports; each in the state file as it starts. */
async function startNetworkDaemons(input: Input, netns: string, bridge: string, state: NetworkStateRecord) {
  // dnsmasq watches the hosts dir only if it exists when it starts.
  if (input.dhcpHostsDir !== undefined) await mkdir(input.dhcpHostsDir, { recursive: true });
  const dnsmasq = await startDnsmasq({
    netns,
    bridge,
    dir: input.dir,
    tftpRoot: input.tftpRoot,
    range: { ...DHCP_RANGE, netmask: LAB_SUBNET.netmask },
    ...(input.dhcpHostsDir === undefined ? {} : { hostsDir: input.dhcpHostsDir }),
    pxelinuxMacs: input.nics.filter((nic) => nic.chain === "pxelinux").map((nic) => nic.mac),
    ipxeBootFile: input.ipxeBootFile,
  });
  state.processes.push({ pid: dnsmasq.pid, match: dnsmasq.pidFile });
  await writeNetworkState(input.dir, state);
  const loopback =
    input.hostLoopbackPorts.length === 0
      ? undefined
      : await bridgeLoopbackPorts(netns, input.dir, input.hostLoopbackPorts);
  if (loopback !== undefined) {
    state.processes.push({ pid: loopback.pid, match: input.dir });
    await writeNetworkState(input.dir, state);
  }
  return { dnsmasq, loopback };
}

/** Probes: hosts in namespaces of their own, each a bridge port; named in the state file before they are made. */
function probeMaker(netns: string, dir: string, state: NetworkStateRecord, ports: Set<string>) {
  const probes: LabProbe[] = [];
  const addProbe = async (name: string): Promise<LabProbe> => {
    const probeName = parseInput(Name, name, "probe", "config");
    const probeNetns = `${netns}-${probeName}`;
    const port = `p-${probeName}`.slice(0, 15);
    const address = `${LAB_SUBNET.prefix}.${FIRST_PROBE_HOST + probes.length}`;
    state.namespaces.push(probeNetns);
    await writeNetworkState(dir, state);
    await mustRun("ip", ["netns", "add", probeNetns]);
    await ipIn(probeNetns, ["link", "set", "lo", "up"]);
    await ipIn(netns, ["link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", probeNetns]);
    await ipIn(netns, ["link", "set", port, "up"]);
    await ipIn(probeNetns, ["addr", "add", `${address}/${LAB_SUBNET.bits}`, "dev", "eth0"]);
    await ipIn(probeNetns, ["link", "set", "eth0", "up"]);
    ports.add(port);
    const probe: LabProbe = {
      netns: probeNetns,
      port,
      address,
      run: (command, args) => runCommand("ip", ["netns", "exec", probeNetns, command, ...args]),
    };
    probes.push(probe);
    return probe;
  };
  return { probes, addProbe };
}

async function build(
  input: Input,
  netns: string,
  state: NetworkStateRecord,
  log: (line: string) => void,
): Promise<LabNetwork> {
  const bridge = await addHostSide(netns, input.provisioningVlan);
  const taps = await addTaps(netns, input.nics);
  const ports = new Set<string>(taps.values());
  const { dnsmasq, loopback } = await startNetworkDaemons(input, netns, bridge, state);
  const { probes, addProbe } = probeMaker(netns, input.dir, state, ports);
  log(
    `lab network: namespace ${netns}, one bridge per VLAN, provisioning VLAN ${input.provisioningVlan} at ${LAB_SUBNET.host}/${LAB_SUBNET.bits}, ${taps.size} tap(s), dnsmasq pid ${dnsmasq.pid}`,
  );
  let stopped = false;
  return {
    kind: "netns",
    netns,
    bridge,
    hostAddress: LAB_SUBNET.host,
    provisioningVlan: input.provisioningVlan,
    taps,
    tapOf(node, nic) {
      const tap = taps.get(`${node}/${nic}`);
      if (tap === undefined) throw new Error(`the lab network has no tap for ${node} ${nic}`);
      return tap;
    },
    switch: createBridgeSwitch({ netns, name: LAB_SWITCH, ports: () => ports }),
    dnsmasq,
    addProbe,
    describe: () =>
      [
        `namespace ${netns}: one bridge per VLAN (br<vlan>); a port in none reaches nothing`,
        `  provisioning VLAN ${input.provisioningVlan}: ${bridge} ${LAB_SUBNET.host}/${LAB_SUBNET.bits} (dnsmasq DHCP ${DHCP_RANGE.first}-${DHCP_RANGE.last}, TFTP)`,
        ...[...taps].map(([nic, tap]) => `  ${tap}: ${nic}`),
        ...probes.map((p) => `  ${p.port}: probe ${p.netns} at ${p.address}`),
      ].join("\n"),
    async stop() {
      if (stopped) return;
      stopped = true;
      await dnsmasq.stop();
      await loopback?.stop();
      // The state file names everything (also what a failed probe left half made); then it goes.
      await removeAndForget(input.dir, state);
    },
  };
}
