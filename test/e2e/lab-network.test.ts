/**
 * Issue 17: the lab on its own network, `startBmiLab({ network: "netns" })`, as the demo runs it.
 *
 * Real: the lab's network namespace with a bridge per VLAN as HIL's switch, a tap per node,
 * Debian's dnsmasq (DHCP only for MACs with a host entry the PXE driver wrote, TFTP from its
 * root), tgtd inside the namespace with its portal on the provisioning address, the
 * HIL-compatible server programming the bridges and powering the nodes (obmd -> QMP -> qemu on
 * their taps), the run's Ceph, the SQLite store, BMI wired from the lab's bmi_config.cfg.
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { readFile, rm, stat } from "node:fs/promises";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { type BmiLab, isAlive, type LabNetwork, startBmiLab, stopPid } from "@bmi/lab";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { tearDownLab } from "./lab-teardown.js";

const ceph = inject("ceph");
const MARKER = "BMI-BOOT-OK on the lab's own network";
/** TCG on a shared 2-core host; measured 35-42 s per boot here when busy. */
const BOOT_BOUND_MS = 300_000;

let lab: BmiLab;
let killed: { dir: string; netns: string; pids: number[] } | undefined;
let stoppedByTest = false;
const notes: string[] = [];

const namespaces = async () =>
  (await execa("ip", ["netns", "list"])).stdout
    .split("\n")
    .map((line) => line.split(" ")[0] ?? "")
    .filter(Boolean);
const netnsPids = async (netns: string) =>
  (await execa("ip", ["netns", "pids", netns], { reject: false })).stdout
    .split(/\s+/)
    .filter((w) => /^\d+$/.test(w))
    .map(Number);
const exists = (path: string) =>
  stat(path).then(
    () => true,
    () => false,
  );

/** A lab process that starts a lab on its own network and is SIGKILLed: what it made stays. */
async function killALab(): Promise<{ dir: string; netns: string; pids: number[] }> {
  const child = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      fileURLToPath(new URL("./lab-network-child.ts", import.meta.url)),
      JSON.stringify(ceph),
    ],
    {
      env: {
        ...process.env,
        TSX_TSCONFIG_PATH: fileURLToPath(new URL("../reliability/tsconfig.child.json", import.meta.url)),
      },
      stdio: ["ignore", "pipe", "inherit"],
    },
  );
  try {
    const [first] = (await once(child.stdout, "data")) as [Buffer];
    return JSON.parse(first.toString().split("\n")[0] as string);
  } finally {
    child.kill("SIGKILL");
    if (child.exitCode === null && child.signalCode === null) await once(child, "exit");
  }
}

beforeAll(async () => {
  killed = await killALab();
  // A SIGKILLed lab leaves its namespace, dnsmasq and tgtd (children outlive their parent).
  expect(await namespaces()).toContain(killed.netns);
  for (const pid of killed.pids) expect(await isAlive(pid)).toBe(true);
  // The next lab's start removes them.
  lab = await startBmiLab({
    ceph,
    nodes: 2,
    project: "e2e-net",
    network: "netns",
    log: (line) => notes.push(line),
  });
  await lab.createGoldenImage("golden", { marker: MARKER });
}, 300_000);

afterAll(async () => {
  try {
    if (killed) {
      for (const pid of killed.pids) await stopPid(pid, { signal: "SIGKILL" });
      await rm(killed.dir, { recursive: true, force: true });
    }
    if (!stoppedByTest) await tearDownLab(lab, ["golden"]);
  } finally {
    if (notes.length > 0) process.stderr.write(`lab network e2e:\n  ${notes.join("\n  ")}\n`);
  }
}, 180_000);

const real = (): LabNetwork => {
  if (lab.labNetwork === null) throw new Error(`the lab is on qemu's network: ${lab.networkReason}`);
  return lab.labNetwork;
};
const masterOf = async (tap: string) =>
  /\smaster\s(\S+)/.exec(
    (await execa("ip", ["-n", real().netns, "-o", "link", "show", "dev", tap])).stdout,
  )?.[1] ?? null;
/** dnsmasq's log lines of this lab's dnsmasq. */
const dnsmasqLog = async () =>
  (await readFile(real().dnsmasq.logFile, "utf8"))
    .split("\n")
    .filter((l) => l.includes(`[${real().dnsmasq.pid}]`));

describe("a lab on its own network (network: netns)", () => {
  it("its start removed what a SIGKILLed lab left: namespace (bridge, taps), dnsmasq, tgtd", async () => {
    const left = killed as { netns: string; pids: number[] };
    expect(await namespaces()).not.toContain(left.netns);
    for (const pid of left.pids) expect(await isAlive(pid)).toBe(false);
    expect(notes.some((l) => l.includes(`removed what killed labs left`) && l.includes(left.netns))).toBe(
      true,
    );
  });

  it("reports its network: namespace, provisioning bridge with the host address, a tap per node, tgtd's portal on it", async () => {
    expect(lab.network).toBe("netns");
    expect(lab.networkReason).toBeNull();
    const network = real();
    notes.push(`topology:\n${lab.describe()}`);
    expect(lab.describe()).toContain(network.netns);
    expect(lab.describe()).toContain(`${network.hostAddress}/24`);
    const links = (await execa("ip", ["-n", network.netns, "-o", "addr", "show", "dev", network.bridge]))
      .stdout;
    expect(links).toContain(`inet ${network.hostAddress}/24`);
    expect([...network.taps.values()]).toEqual(["tap0", "tap1"]);
    // tgtd runs inside the namespace, its portal on the provisioning address; BMI's config says so.
    expect(lab.tgtd.portal).toBe(network.hostAddress);
    expect(await netnsPids(network.netns)).toEqual(
      expect.arrayContaining([lab.tgtd.pid, network.dnsmasq.pid]),
    );
    expect(lab.settings.iscsi.portal).toBe(network.hostAddress);
    // No NIC is on any VLAN before HIL attaches it.
    for (const tap of network.taps.values()) expect(await masterOf(tap)).toBeNull();
  });

  it("a provisioned node boots through dnsmasq (DHCP + TFTP) on its tap; deprovisioned, its tap leaves the VLAN", async () => {
    const network = real();
    const node = lab.nodes[0] as (typeof lab.nodes)[number];
    const from = await lab.console(node.name).mark();
    const provisioned = await lab.bmi.provision({
      project: lab.project,
      node: node.name,
      disk: `disk-${node.name}`,
      image: "golden",
      nic: node.nic,
      power: "cycle",
      wait: true,
      until: "firmware_login",
      timeoutMs: BOOT_BOUND_MS,
    });
    expect(provisioned.boot?.state).toBe("SUCCESS");
    const shown = await lab
      .console(node.name)
      .waitFor(new RegExp(`${MARKER}\\r?\\n`), { from, timeoutMs: BOOT_BOUND_MS });
    expect(shown.text).toContain("Booting from SAN device 0x80");
    notes.push(`${node.name}: ${provisioned.boot?.stages.map((s) => `${s.stage} ${s.atMs} ms`).join(", ")}`);
    // HIL's attach put the node's tap on the provisioning VLAN's bridge.
    expect(await masterOf(network.tapOf(node.name, node.nic))).toBe(network.bridge);
    expect(await network.dnsmasq.leasedMacs()).toContain(node.mac);
    const sent = (await dnsmasqLog()).filter((l) => l.includes("dnsmasq-tftp") && l.includes(" sent "));
    expect(sent.some((l) => l.includes(`/${lab.ipxeBootfile} `))).toBe(true);
    expect(sent.some((l) => l.includes(`/${node.name}.ipxe `))).toBe(true);

    await lab.bmi.deprovision({ project: lab.project, node: node.name, deleteDisk: true, powerOff: true });
    expect(await masterOf(network.tapOf(node.name, node.nic))).toBeNull();
    const left = await lab.leftovers();
    expect({ targets: left.targets, bootFiles: left.bootFiles }).toEqual({ targets: [], bootFiles: [] });
    // The PXE driver removed the node's host entry and sent dnsmasq a SIGHUP while dnsmasq still
    // held the node's lease: dnsmasq 2.90 dies right there when the entry carries a `set:` tag.
    expect(await isAlive(network.dnsmasq.pid), "dnsmasq survives the deprovision's SIGHUP").toBe(true);
  }, 600_000);

  it("a node BMI did not provision gets no lease, even with its NIC on the provisioning VLAN", async () => {
    const network = real();
    const node = lab.nodes[1] as (typeof lab.nodes)[number];
    const provisioning = {
      node: node.name,
      nic: node.nic,
      network: lab.settings.provisioningNetwork as string,
    };
    // As an admin might: the NIC on the provisioning network, but no host entry from BMI.
    await lab.drivers.isolation.attach(provisioning);
    try {
      expect(await masterOf(network.tapOf(node.name, node.nic))).toBe(network.bridge);
      const from = await lab.console(node.name).mark();
      await lab.bmi.power({
        project: lab.project,
        node: node.name,
        action: "cycle",
        force: true,
        bootDevice: "pxe",
      });
      const failed = await lab
        .console(node.name)
        .waitFor(/No bootable device/, { from, timeoutMs: BOOT_BOUND_MS });
      expect(failed.text).toMatch(/No configuration methods\s+succeeded/);
      expect(await network.dnsmasq.leasedMacs()).not.toContain(node.mac);
      // Not for want of reaching it: dnsmasq saw the node's DISCOVERs and ignored them (no host entry).
      const ignored = (await dnsmasqLog()).filter((l) =>
        l.includes(`DHCPDISCOVER(${network.bridge}) ${node.mac} ignored`),
      ).length;
      notes.push(
        `${node.name} on the provisioning VLAN, not provisioned: dnsmasq ignored ${ignored} DISCOVER(s)`,
      );
      expect(ignored).toBeGreaterThan(0);
    } finally {
      await lab.bmi.power({ project: lab.project, node: node.name, action: "off" }).catch(() => undefined);
      await lab.drivers.isolation.detach(provisioning).catch(() => undefined);
    }
  }, 600_000);

  it("stop removes the namespace (bridge, taps), dnsmasq, tgtd, the VMs and the network's state dir", async () => {
    const network = real();
    const pids = [...new Set([...(await netnsPids(network.netns)), network.dnsmasq.pid, lab.tgtd.pid])];
    const stateDir = dirname(network.dnsmasq.pidFile);
    stoppedByTest = true;
    await tearDownLab(lab, ["golden"]);
    expect(await namespaces()).not.toContain(network.netns);
    for (const pid of pids) expect(await isAlive(pid), `pid ${pid}`).toBe(false);
    expect(await exists(stateDir)).toBe(false);
  }, 180_000);
});
