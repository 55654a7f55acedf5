/**
 * End to end: a qemu VM with no disk boots, through PXE and iPXE, from the iSCSI export of an RBD
 * clone that BMI created, then BMI deprovisions it and everything it made is gone.
 *
 * Real: the lab's Ceph (rbd), a private tgtd with the rbd backing store, the PXE driver writing
 * into a TFTP root that qemu's user-mode network serves, the SQLite store, the `createBmi`
 * facade. Isolation: the in-memory driver (the node's NIC and owner), since the VM's network is
 * qemu's own and there is no switch for HIL to configure.
 *
 * The guest reaches the host's loopback as 10.0.2.2, so the portal written into boot scripts is
 * 10.0.2.2 and the port is our tgtd's.
 */
import { rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { type Bmi, createBmi, defaultSettings, openSqliteStore, type SqliteStore } from "@bmi/core";
import { createMemoryIsolation } from "@bmi/core/testing";
import { createCephStorage } from "@bmi/driver-ceph";
import { createPxeBoot, installTftpRoot, type PxeBoot } from "@bmi/driver-pxe";
import { createTgtExport } from "@bmi/driver-tgt";
import { bootVm, buildBootImage, makeTempDir, startTgtd, type TgtdHandle } from "@bmi/lab";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { filePrefix, rbdAsClient } from "../integration/ceph-helpers.js";

const ceph = inject("ceph");
const prefix = filePrefix("e2e");
/** A uid of our own: RBD names are `<uid>img<id>`, and other files share the pool. */
const uid = `e2e${prefix.slice(3)}`;
const PROJECT = "e2e";
const GOLDEN = "golden";
const MARKER = "BMI-BOOT-OK from the iSCSI clone";
/** Generous: TCG on a shared 2-core host. Measured 9-13 s when idle. */
const BOOT_BOUND_MS = 240_000;

const nodes = {
  pxelinux: { name: "node-pxelinux", mac: "52:54:00:e2:e0:01" },
  ipxe: { name: "node-ipxe", mac: "52:54:00:e2:e0:02" },
};

let scratch: { path: string; remove: () => Promise<void> };
let tftpRoot: string;
let tgtd: TgtdHandle;
let store: SqliteStore;
let boot: PxeBoot;
let bmi: Bmi;
const sourceImage = `${prefix}-src`;
const timings: string[] = [];

async function rbd(args: readonly string[]): Promise<string> {
  const result = await rbdAsClient(ceph, args);
  if (result.exitCode !== 0)
    throw new Error(`rbd ${args.join(" ")}: exit ${result.exitCode}: ${result.stderr}`);
  return String(result.stdout);
}

const exists = async (path: string) =>
  stat(path).then(
    () => true,
    () => false,
  );

beforeAll(async () => {
  scratch = await makeTempDir("e2e-boot");
  tftpRoot = join(scratch.path, "tftp");
  await installTftpRoot({ root: tftpRoot });
  const image = await buildBootImage(join(scratch.path, "golden.raw"), { marker: MARKER });
  await rbd(["import", "--no-progress", image.path, `${ceph.pool}/${sourceImage}`]);
  await rm(image.path);
  tgtd = await startTgtd();

  const settings = defaultSettings({ uid });
  settings.iscsi = { ...settings.iscsi, portal: "10.0.2.2", port: tgtd.port };
  store = openSqliteStore({
    create: true,
    path: join(scratch.path, "bmi.db"),
    uid,
    snapshotName: settings.snapshotName,
  });
  boot = createPxeBoot({ root: tftpRoot });
  bmi = createBmi({
    settings,
    store,
    storage: createCephStorage({
      pool: ceph.pool,
      conf: ceph.conf,
      clientId: ceph.clientId,
      keyring: ceph.keyring,
    }),
    export: createTgtExport({
      portal: "10.0.2.2",
      port: tgtd.port,
      controlPort: tgtd.controlPort,
      naming: settings.iscsi.naming,
      rbd: { conf: ceph.conf, clientId: ceph.clientId },
    }),
    boot,
    isolation: createMemoryIsolation({
      nodes: Object.values(nodes).map((node) => ({
        name: node.name,
        project: PROJECT,
        nics: [{ label: "eth0", mac: node.mac }],
      })),
    }),
  });
  await bmi.createProject({ name: PROJECT });
  await bmi.importImage({ project: PROJECT, source: sourceImage, name: GOLDEN });
}, 180_000);

afterAll(async () => {
  // Whatever a failed case left: deprovision, then the golden image and its source.
  for (const node of Object.values(nodes)) {
    await bmi?.deprovision({ project: PROJECT, node: node.name, deleteDisk: true }).catch(() => undefined);
  }
  await bmi?.removeImage({ project: PROJECT, image: GOLDEN }).catch(() => undefined);
  await rbdAsClient(ceph, ["rm", "--no-progress", `${ceph.pool}/${sourceImage}`]);
  store?.close();
  await tgtd?.stop();
  await scratch?.remove();
  if (timings.length > 0) process.stderr.write(`e2e boot times:\n  ${timings.join("\n  ")}\n`);
}, 180_000);

async function provisionBootDeprovision(
  node: { name: string; mac: string },
  chain: string,
  bootfile: string,
): Promise<void> {
  const disk = `disk-${node.name}`;
  const provisioning = await bmi.provision({
    project: PROJECT,
    node: node.name,
    disk,
    image: GOLDEN,
    nic: "eth0",
    firmware: "bios",
  });
  expect(provisioning.target).toMatchObject({ portal: "10.0.2.2", port: tgtd.port, lun: 1 });
  const clone = bmi.listDisks({ project: PROJECT }).find((d) => d.name === disk)?.cephName;
  expect(clone).toMatch(new RegExp(`^${uid}img\\d+$`));
  const entry = await boot.read(node.name);
  expect(entry?.target).toEqual(provisioning.target);
  expect(entry?.macs).toEqual([node.mac]);

  const serialLog = join(scratch.path, `${node.name}.serial.log`);
  const result = await bootVm({
    mac: node.mac,
    tftpRoot,
    bootfile,
    serialLog,
    expect: new RegExp(`${MARKER}\\r?\\n`),
    timeoutMs: BOOT_BOUND_MS,
  });
  timings.push(`${chain}: marker ${result.markerMs} ms after qemu start`);
  // The VM booted from SAN: iPXE attached the target BMI exported, then ran its boot sector.
  expect(result.serial).toContain("Registered SAN device 0x80");
  expect(result.serial).toContain("Booting from SAN device 0x80");
  expect(result.markerMs).toBeLessThan(BOOT_BOUND_MS);

  await bmi.deprovision({ project: PROJECT, node: node.name, deleteDisk: true });
  expect(await boot.read(node.name)).toBeNull();
  for (const file of entry?.files ?? []) expect(await exists(join(tftpRoot, file)), file).toBe(false);
  const shown = await tgtd.tgtadm(["--lld", "iscsi", "--mode", "target", "--op", "show"]);
  expect(shown.exitCode).toBe(0);
  expect(shown.stdout).not.toContain(provisioning.target.name);
  expect(JSON.parse(await rbd(["ls", "--format", "json", ceph.pool]))).not.toContain(clone);
  expect(bmi.listDisks({ project: PROJECT }).map((d) => d.name)).not.toContain(disk);
}

describe("a diskless VM boots from BMI's iSCSI clone", () => {
  it("through the original's chain: PXE → pxelinux.0 → pxelinux.cfg/01-<mac> → ipxe.lkrn + <node>.ipxe → sanboot", async () => {
    await provisionBootDeprovision(nodes.pxelinux, "PXE → pxelinux → ipxe.lkrn → script", "pxelinux.0");
  }, 400_000);

  it("through iPXE directly: qemu's iPXE ROM → ipxe-mac/boot.ipxe → <mac>.ipxe → <node>.ipxe → sanboot", async () => {
    await provisionBootDeprovision(
      nodes.ipxe,
      "iPXE ROM → dispatcher → MAC entry → script",
      "ipxe-mac/boot.ipxe",
    );
  }, 400_000);
});
