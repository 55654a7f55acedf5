/**
 * End to end: a qemu VM with no disk boots, through PXE and iPXE, from the iSCSI export of an RBD
 * clone that BMI created, by both of the original's boot chains; then BMI deprovisions it and
 * everything it made is gone.
 *
 * Real: the run's shared Ceph, the lab's tgtd, the HIL-compatible server (ownership, the NIC on
 * the provisioning network, power through its obmd endpoint -> QMP -> qemu), the PXE driver's
 * TFTP root, the SQLite store. Nothing here starts a VM: BMI powers the node through HIL.
 */
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { type BmiLab, type LabNode, startBmiLab } from "@bmi/lab";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { tearDownLab } from "./lab-teardown.js";

const ceph = inject("ceph");
const MARKER = "BMI-BOOT-OK from the iSCSI clone";
/** Generous: TCG on a shared 2-core host. Measured 9-13 s when idle. */
const BOOT_BOUND_MS = 240_000;

let lab: BmiLab;
const timings: string[] = [];

const exists = async (path: string) =>
  stat(path).then(
    () => true,
    () => false,
  );

beforeAll(async () => {
  lab = await startBmiLab({ ceph, nodes: 2, project: "e2e" });
  await lab.createGoldenImage("golden", { marker: MARKER });
}, 180_000);

afterAll(async () => {
  try {
    await tearDownLab(lab, ["golden"]);
  } finally {
    if (timings.length > 0) process.stderr.write(`e2e boot times:\n  ${timings.join("\n  ")}\n`);
  }
}, 180_000);

async function provisionBootDeprovision(node: LabNode, chain: "pxelinux" | "ipxe", label: string) {
  lab.configureNode(node.name, { chain, firmware: "bios" });
  const disk = `disk-${node.name}`;
  const from = await lab.console(node.name).mark();
  const started = Date.now();
  const provisioning = await lab.bmi.provision({
    project: lab.project,
    node: node.name,
    disk,
    image: "golden",
    nic: node.nic,
    firmware: "bios",
    power: "cycle",
    wait: true,
    until: "firmware_login",
    timeoutMs: BOOT_BOUND_MS,
  });
  expect(provisioning.boot?.state).toBe("SUCCESS");
  const clone = (await lab.bmi.listDisks({ project: lab.project })).find((d) => d.name === disk)?.cephName;
  expect(clone).toMatch(new RegExp(`^${lab.settings.uid}img\\d+$`));
  const entry = await lab.drivers.boot.read(node.name);
  expect(entry?.target).toEqual(provisioning.target);
  expect(entry?.macs).toEqual([node.mac]);

  const booted = await lab.console(node.name).waitFor(new RegExp(`${MARKER}\\r?\\n`), {
    from,
    timeoutMs: BOOT_BOUND_MS,
  });
  timings.push(`${label}: marker ${booted.seenAt - started} ms after provision was called`);
  // The VM booted from SAN: iPXE attached the target BMI exported, then ran its boot sector.
  expect(booted.text).toContain("Registered SAN device 0x80");
  expect(booted.text).toContain("Booting from SAN device 0x80");

  await lab.bmi.deprovision({ project: lab.project, node: node.name, deleteDisk: true, powerOff: true });
  expect(await lab.bmi.powerStatus({ project: lab.project, node: node.name })).toBe("off");
  expect(await lab.drivers.boot.read(node.name)).toBeNull();
  for (const file of entry?.files ?? []) expect(await exists(join(lab.tftpRoot, file)), file).toBe(false);
  expect((await lab.drivers.export.list()).map((t) => t.target)).not.toContain(provisioning.target.name);
  expect(await lab.drivers.storage.exists(clone ?? "")).toBe(false);
  expect((await lab.bmi.listDisks({ project: lab.project })).map((d) => d.name)).not.toContain(disk);
}

describe("a diskless VM, powered through HIL, boots from BMI's iSCSI clone", () => {
  it("through the original's chain: PXE → pxelinux.0 → pxelinux.cfg/01-<mac> → ipxe.lkrn + <node>.ipxe → sanboot", async () => {
    const node = lab.nodes[0] as LabNode;
    await provisionBootDeprovision(node, "pxelinux", "PXE → pxelinux → ipxe.lkrn → script");
  }, 400_000);

  it("through iPXE directly: qemu's iPXE ROM → ipxe-mac/boot.ipxe → <mac>.ipxe → <node>.ipxe → sanboot", async () => {
    const node = lab.nodes[1] as LabNode;
    await provisionBootDeprovision(node, "ipxe", "iPXE ROM → dispatcher → MAC entry → script");
  }, 400_000);
});
