import { randomBytes } from "node:crypto";
import { readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { CephLabInfo } from "./ceph.js";
import { type LabNetwork, startLabNetwork, whyNoNetns } from "./network/lab-network.js";
import { cephClientPorts } from "./network/loopback-bridge.js";
import { cleanUpDeadLab } from "./network/state-file.js";

/** `netns`: the lab's own provisioning network; `user`: qemu's; `auto`: netns where it can be made. */
export type BmiLabNetworkMode = "auto" | "netns" | "user";

/**
 * Where each lab keeps its network's state file (a directory per lab), outside the lab's own
 * directory, which is a fresh temp dir per run: the next lab's start finds what a killed one left.
 */
export const LAB_NETWORKS_ROOT = join(tmpdir(), "bmi-lab-networks");

/** The provisioning network's VLAN on the lab's switch (its bridge is `br100`). */
export const LAB_PROVISIONING_VLAN = 100;

/** iSCSI's own port: tgtd is alone in the lab's namespace, so nothing else can hold it. */
export const LAB_ISCSI_PORT = 3260;

export type BmiLabNetworkChoice = { kind: "netns" } | { kind: "user"; reason: string };

/** Which network a lab started with `mode` gets; `netns` where none can be made throws why. */
export async function chooseLabNetwork(mode: BmiLabNetworkMode): Promise<BmiLabNetworkChoice> {
  if (mode === "user") return { kind: "user", reason: "asked for network: user" };
  const why = await whyNoNetns();
  if (why === null) return { kind: "netns" };
  if (mode === "netns") throw new Error(`the lab cannot make its network namespace: ${why}`);
  return { kind: "user", reason: why };
}

/**
 * Removes what labs killed before their stop left (namespace with bridges and taps, dnsmasq,
 * tgtd and qemu inside it), only where the state file's owner is dead; a live lab is not
 * touched, nor a directory without a state file (a lab that is starting). Returns the namespaces.
 */
export async function removeDeadLabNetworks(root = LAB_NETWORKS_ROOT): Promise<string[]> {
  const entries = await readdir(root, { withFileTypes: true }).catch(() => []);
  const removed: string[] = [];
  for (const entry of entries.filter((e) => e.isDirectory())) {
    const dir = join(root, entry.name);
    // Throws for a live owner: another lab that is running, left alone.
    const left = await cleanUpDeadLab(dir).catch(() => null);
    if (left === null) continue;
    removed.push(...left.namespaces);
    await rm(dir, { recursive: true, force: true });
  }
  return removed;
}

export interface StartBmiLabNetworkOptions {
  ceph: CephLabInfo;
  /** What dnsmasq serves over TFTP: the PXE driver's root. */
  tftpRoot: string;
  /** Where the PXE driver writes its dnsmasq host entries (inside the TFTP root). */
  dhcpHostsDir: string;
  /** iPXE's boot file (the dispatcher), relative to the TFTP root. */
  ipxeBootFile: string;
  nodes: readonly { name: string; nic: string; mac: string }[];
  log: (line: string) => void;
}

/**
 * The lab's real network (see startLabNetwork): its namespace named after a fresh lab id, the
 * provisioning VLAN, one tap per node NIC, dnsmasq answering only MACs with a host entry, and the
 * lab's Ceph reachable inside at 127.0.0.1 for tgtd's rbd backing store. Stop removes its state dir.
 */
export async function startBmiLabNetwork(options: StartBmiLabNetworkOptions): Promise<LabNetwork> {
  const gone = await removeDeadLabNetworks();
  if (gone.length > 0) options.log(`lab network: removed what killed labs left: ${gone.join(", ")}`);
  const labId = `l${process.pid.toString(36)}${randomBytes(2).toString("hex")}`;
  const dir = join(LAB_NETWORKS_ROOT, labId);
  const removeDir = () => rm(dir, { recursive: true, force: true });
  try {
    const network = await startLabNetwork({
      labId,
      dir,
      tftpRoot: options.tftpRoot,
      provisioningVlan: LAB_PROVISIONING_VLAN,
      nics: options.nodes.map((n) => ({ node: n.name, nic: n.nic, mac: n.mac })),
      dhcpHostsDir: options.dhcpHostsDir,
      ipxeBootFile: options.ipxeBootFile,
      mode: "netns",
      hostLoopbackPorts: await cephClientPorts(options.ceph),
      log: options.log,
    });
    if (network.kind !== "netns") throw new Error(`no lab network: ${network.reason}`);
    return {
      ...network,
      async stop() {
        await network.stop();
        await removeDir();
      },
    };
  } catch (error) {
    await removeDir();
    throw error;
  }
}
