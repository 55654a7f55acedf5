/**
 * End to end with a real OS: Debian 12, built in this run from Debian packages
 * (`buildDebianImage`), boots with its root on BMI's iSCSI clone: PXE → iPXE → sanboot → GRUB
 * through int13 → kernel + initramfs → open-iscsi logs in again from the iBFT → root mounted →
 * systemd → the image's service prints the OS line, read inside the OS. The host runs a script
 * inside the node through qemu's fw_cfg (`opt/bmi/run`); its output comes back on the serial line.
 *
 * Real: the lab's Ceph, a private tgtd with the rbd backing store, the PXE driver, qemu (TCG).
 * Isolation: the in-memory driver, as in boot.test.ts (qemu's user network has no switch).
 */
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { type Bmi, createBmi, defaultSettings, openSqliteStore, type SqliteStore } from "@bmi/core";
import { createMemoryIsolation } from "@bmi/core/testing";
import { createCephStorage } from "@bmi/driver-ceph";
import { createPxeBoot, installTftpRoot, type PxeBoot } from "@bmi/driver-pxe";
import { createTgtExport } from "@bmi/driver-tgt";
import {
  bootVm,
  buildDebianImage,
  FW_CFG_RUN,
  makeTempDir,
  parseOsLine,
  startTgtd,
  type TgtdHandle,
} from "@bmi/lab";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { filePrefix, rbdAsClient } from "../integration/ceph-helpers.js";

const ceph = inject("ceph");
const prefix = filePrefix("e2eos");
/** A uid of our own: RBD names are `<uid>img<id>`, and other files share the pool. */
const uid = `os${prefix.slice(5)}`;
const PROJECT = "e2eos";
const GOLDEN = "debian12";
const SNAPSHOT = "debian12-node01";
/** TCG on a shared 2-core host: measured ~100 s to the OS line when idle. */
const BOOT_BOUND_MS = 480_000;

const nodes = {
  one: { name: "node-01", mac: "52:54:00:e2:05:01" },
  two: { name: "node-02", mac: "52:54:00:e2:05:02" },
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

beforeAll(async () => {
  scratch = await makeTempDir("e2e-boot");
  tftpRoot = join(scratch.path, "tftp");
  await installTftpRoot({ root: tftpRoot });
  // Built in this run (the cache lives in the run's scratch dir); BMI_DEBIAN_IMAGE_CACHE reuses
  // a cache directory for quick local reruns, like BMI_CEPH_LAB_DIR.
  const image = await buildDebianImage({
    cacheDir: process.env.BMI_DEBIAN_IMAGE_CACHE ?? join(scratch.path, "image-cache"),
    onStep: (step, ms) => timings.push(`image ${step}: ${ms} ms`),
  });
  timings.push(
    `image ${image.cacheHit ? "cache hit" : "built"} in ${image.ms} ms (${image.key}, ${image.allocatedBytes} B allocated)`,
  );
  await rbd(["import", "--no-progress", image.path, `${ceph.pool}/${sourceImage}`]);
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
}, 3_000_000);

afterAll(async () => {
  // Whatever a failed case left: deprovision, then the golden image and its source.
  for (const node of Object.values(nodes)) {
    await bmi?.deprovision({ project: PROJECT, node: node.name, deleteDisk: true }).catch(() => undefined);
  }
  await bmi?.removeImage({ project: PROJECT, image: GOLDEN }).catch(() => undefined);
  await bmi?.removeImage({ project: PROJECT, image: SNAPSHOT }).catch(() => undefined);
  for (const disk of bmi?.listDisks({ project: PROJECT }) ?? []) {
    await bmi.deleteDisk({ project: PROJECT, disk: disk.name, force: true }).catch(() => undefined);
  }
  await rbdAsClient(ceph, ["rm", "--no-progress", `${ceph.pool}/${sourceImage}`]);
  store?.close();
  await tgtd?.stop();
  await scratch?.remove();
  if (timings.length > 0) process.stderr.write(`e2e Debian boot times:\n  ${timings.join("\n  ")}\n`);
}, 180_000);

/** Provisions `node` from `image`, boots it (BIOS, iPXE chain) running `script` inside the OS. */
async function bootWithScript(node: { name: string; mac: string }, image: string, script: string) {
  const disk = `disk-${node.name}-${image}`;
  const provisioning = await bmi.provision({
    project: PROJECT,
    node: node.name,
    disk,
    image,
    nic: "eth0",
    firmware: "bios",
  });
  const scriptFile = join(scratch.path, `${node.name}-run.sh`);
  await writeFile(scriptFile, script);
  const result = await bootVm({
    mac: node.mac,
    tftpRoot,
    bootfile: "ipxe-mac/boot.ipxe",
    serialLog: join(scratch.path, `${node.name}-${image}.serial.log`),
    memoryMb: 1024,
    fwCfgFiles: { [FW_CFG_RUN]: scriptFile },
    expect: /BMI-RUN-END rc=\d+/,
    timeoutMs: BOOT_BOUND_MS,
  });
  timings.push(`${node.name} from ${image}: script done ${result.markerMs} ms after qemu start`);
  const os = parseOsLine(result.serial);
  const run = /BMI-RUN-BEGIN\r?\n([\s\S]*?)BMI-RUN-END rc=(\d+)/.exec(result.serial);
  // The serial getty's login prompt shares ttyS0, so the scripts tag their output lines.
  const output = [...(run?.[1] ?? "").matchAll(/BMI-OUT (.*?)\r?$/gm)].map((m) => m[1]).join("\n");
  return { provisioning, disk, os, output, rc: Number(run?.[2]) };
}

describe("Debian boots with its root on BMI's iSCSI clone", () => {
  const content = `written by node-01 ${prefix}`;

  it("node-01 (BIOS) boots Debian from its clone, its root is the BMI target, and it writes a file", async () => {
    const booted = await bootWithScript(
      nodes.one,
      GOLDEN,
      `echo '${content}' > /root/bmi-proof.txt && sync && sed 's/^/BMI-OUT /' /root/bmi-proof.txt\n`,
    );
    expect(booted.os).toMatchObject({
      os: "Debian GNU/Linux 12 (bookworm)",
      target: booted.provisioning.target.name,
    });
    expect(booted.os?.root).toMatch(/^\/dev\/sd[a-z]+\d$/);
    expect(booted.os?.session).toContain(booted.provisioning.target.name);
    expect(booted.rc).toBe(0);
    expect(booted.output).toBe(content);
    await bmi.deprovision({ project: PROJECT, node: nodes.one.name, deleteDisk: false });
    await bmi.snapshotDisk({ project: PROJECT, disk: booted.disk, snapshot: SNAPSHOT });
  }, 1_000_000);

  it("node-02, provisioned from the snapshot of node-01's disk, reads exactly that file", async () => {
    const booted = await bootWithScript(nodes.two, SNAPSHOT, "sed 's/^/BMI-OUT /' /root/bmi-proof.txt\n");
    expect(booted.os).toMatchObject({ target: booted.provisioning.target.name });
    expect(booted.rc).toBe(0);
    expect(booted.output.trim()).toBe(content);
    await bmi.deprovision({ project: PROJECT, node: nodes.two.name, deleteDisk: true });
  }, 1_000_000);
});
