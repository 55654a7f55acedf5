/**
 * End to end, UEFI: a diskless qemu VM with OVMF runs the chain the PXE driver writes for
 * `firmware: "uefi"` — qemu's EFI iPXE ROM → ipxe-mac/boot.ipxe → <mac>.ipxe → <node>.ipxe →
 * sanboot — up to iPXE attaching BMI's iSCSI export of the RBD clone as its SAN disk.
 *
 * The golden image carries only an MBR boot sector, no EFI system partition, so UEFI cannot run
 * it: iPXE finds no \EFI\BOOT\BOOTX64.EFI on the SAN disk. What proves the chain is iPXE's own
 * console: the EFI build fetched the node's script, logged in to our target (it registers the SAN
 * device only after the iSCSI login and a read of the disk) and started booting from it.
 *
 * Everything is wired from a generated bmi_config.cfg by @bmi/lab on the run's shared Ceph. The
 * node is powered through the SDK (HIL -> its obmd-compatible endpoint -> QMP -> qemu with OVMF),
 * and BMI's waiter sees iPXE's login to the target.
 */
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { type BmiLab, startBmiLab } from "@bmi/lab";
import { afterAll, beforeAll, expect, inject, it } from "vitest";
import { tearDownLab } from "./lab-teardown.js";

const ceph = inject("ceph");
/** Generous: TCG under OVMF on a shared 2-core host. Measured about 11 s to the SAN step when idle. */
const BOOT_BOUND_MS = 180_000;
const SAN_STEP = /Booting from SAN device 0x80/;

let lab: BmiLab;
let golden: string | undefined;

beforeAll(async () => {
  lab = await startBmiLab({ ceph, nodes: 1, project: "uefi" });
  golden = (await lab.createGoldenImage("golden")).cephName;
}, 180_000);

afterAll(() => tearDownLab(lab, ["golden"]), 180_000);

const exists = async (path: string) =>
  stat(path).then(
    () => true,
    () => false,
  );

it("a UEFI VM (OVMF + EFI iPXE ROM) chains dispatcher → MAC entry → node script and attaches BMI's iSCSI clone", async () => {
  const node = lab.nodes[0];
  if (!node) throw new Error("the lab has no node");
  const disk = "disk-uefi";
  lab.configureNode(node.name, { firmware: "uefi" });
  const from = await lab.console(node.name).mark();
  const started = Date.now();
  const provisioning = await lab.bmi.provision({
    project: lab.project,
    node: node.name,
    disk,
    image: "golden",
    nic: node.nic,
    firmware: "uefi",
    power: "cycle",
    wait: true,
    until: "firmware_login",
    timeoutMs: BOOT_BOUND_MS,
  });
  expect(provisioning.boot?.stages.map((s) => s.stage)).toEqual(["powered_on", "firmware_login"]);
  expect(provisioning.target).toMatchObject({ portal: "10.0.2.2", port: lab.tgtd.port, lun: 1 });
  const clone = (await lab.bmi.listDisks({ project: lab.project })).find((d) => d.name === disk)?.cephName;
  expect(clone).toMatch(new RegExp(`^${lab.settings.uid}img\\d+$`));

  // The UEFI entry: no pxelinux file (BIOS only), a per-MAC iPXE entry and the node script.
  const entry = await lab.drivers.boot.read(node.name);
  expect(entry?.firmware).toBe("uefi");
  expect(entry?.target).toEqual(provisioning.target);
  expect(entry?.files.some((file) => file.startsWith("pxelinux.cfg/"))).toBe(false);
  const macEntry = `ipxe-mac/${node.mac.replaceAll(":", "-")}.ipxe`;
  expect(entry?.files).toContain(macEntry);
  const script = await readFile(join(lab.tftpRoot, `${node.name}.ipxe`), "utf8");
  expect(script).toContain(`sanboot --keep iscsi:10.0.2.2::${lab.tgtd.port}:1:${provisioning.target.name}`);

  const result = await lab.console(node.name).waitFor(SAN_STEP, { from, timeoutMs: BOOT_BOUND_MS });
  const sanMs = result.seenAt - started;
  const stages = provisioning.boot?.stages.map((s) => `${s.stage} ${s.atMs} ms`).join(", ");
  process.stderr.write(`e2e UEFI boot: SAN step ${sanMs} ms after the provision call; waiter: ${stages}\n`);
  const serial = result.text;
  // The EFI build of iPXE ran (the BIOS build lists PXE/bzImage features instead of EFI).
  expect(serial).toMatch(/Features:[^\n]*\bEFI\b/);
  expect(serial).not.toMatch(/Features:[^\n]*\bPXE\b/);
  // In order: the dispatcher, the node's MAC entry, its script, then the SAN device from our target.
  const steps = [
    `Filename: ${lab.ipxeBootfile}`,
    `${node.mac.replaceAll(":", "-")}.ipxe... ok`,
    `/${node.name}.ipxe... ok`,
    "Registered SAN device 0x80",
    "Booting from SAN device 0x80",
  ];
  const at = steps.map((step) => serial.indexOf(step));
  for (const [i, step] of steps.entries()) expect(at[i], step).toBeGreaterThanOrEqual(0);
  expect([...at].sort((a, b) => a - b)).toEqual(at);
  expect(serial).not.toContain("Could not open SAN device");

  await lab.bmi.deprovision({ project: lab.project, node: node.name, deleteDisk: true, powerOff: true });
  expect(await lab.bmi.powerStatus({ project: lab.project, node: node.name })).toBe("off");
  expect(await lab.drivers.boot.read(node.name)).toBeNull();
  for (const file of entry?.files ?? []) expect(await exists(join(lab.tftpRoot, file)), file).toBe(false);
  expect(await exists(join(lab.tftpRoot, `${node.name}.ipxe`))).toBe(false);
  const left = await lab.leftovers();
  expect(left.targets).toEqual([]);
  expect(left.bootFiles).toEqual([]);
  expect(left.images).toEqual([golden]);
  expect((await lab.bmi.listDisks({ project: lab.project })).map((d) => d.name)).not.toContain(disk);
}, 400_000);
