/**
 * End to end with a real OS: Debian 12, built in this run from Debian packages
 * (`buildDebianImage`), boots with its root on BMI's iSCSI clone: PXE → iPXE → sanboot → GRUB
 * (BIOS through int13 on node-01, UEFI x86_64-efi from the ESP on node-02) → kernel + initramfs → open-iscsi logs in again from the iBFT → root mounted →
 * systemd → the image's service prints the OS line, read inside the OS. The host runs a script
 * inside the node through qemu's fw_cfg (`opt/bmi/run`); its output comes back on the serial line.
 *
 * Real: the run's shared Ceph, tgtd, the HIL-compatible server, qemu (TCG), all wired by @bmi/lab
 * from a generated bmi_config.cfg. The nodes are powered through the SDK (HIL → the node's
 * obmd-compatible endpoint → QMP → qemu) and BMI's waiter sees each stage: powered on, iPXE's
 * login, the OS's own login from the iBFT; the console gives the OS line.
 */
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { type BmiLab, buildDebianImage, FW_CFG_RUN, makeTempDir, parseOsLine, startBmiLab } from "@bmi/lab";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { formatTimings, STAGE_LINES, watchStages } from "./stage-timings.js";

const ceph = inject("ceph");
const GOLDEN = "debian12";
const SNAPSHOT = "debian12-node01";
/** TCG on a shared 2-core host: measured ~100 s to the OS line when idle. */
const BOOT_BOUND_MS = 480_000;
/** Match the OS line on its field, not a bare word (systemd echoes unit descriptions). */
const OS_LINE = /BMI-OS os="/;

let scratch: { path: string; remove: () => Promise<void> };
let lab: BmiLab;
const timings: string[] = [];

beforeAll(async () => {
  scratch = await makeTempDir("e2e-os");
  // Built in this run (the cache lives in the run's scratch dir); BMI_DEBIAN_IMAGE_CACHE reuses
  // a cache directory for quick local reruns, like BMI_CEPH_LAB_DIR.
  const image = await buildDebianImage({
    cacheDir: process.env.BMI_DEBIAN_IMAGE_CACHE ?? join(scratch.path, "image-cache"),
    onStep: (step, ms) => timings.push(`image ${step}: ${ms} ms`),
  });
  timings.push(
    `image ${image.cacheHit ? "cache hit" : "built"} in ${image.ms} ms (${image.key}, ${image.allocatedBytes} B allocated)`,
  );
  lab = await startBmiLab({ ceph, nodes: 2, project: "e2eos", dir: join(scratch.path, "lab") });
  await lab.createGoldenImage(GOLDEN, { file: image.path });
  for (const node of lab.nodes) lab.configureNode(node.name, { memoryMb: 1024 });
}, 3_000_000);

afterAll(async () => {
  try {
    if (!lab) return;
    const project = lab.project;
    // Whatever a failed case left: deprovision (powered off), then the images and disks.
    for (const node of lab.nodes) {
      await lab.bmi
        .deprovision({ project, node: node.name, deleteDisk: true, powerOff: true })
        .catch(() => undefined);
    }
    await lab.bmi.removeImage({ project, image: SNAPSHOT }).catch(() => undefined);
    for (const disk of await lab.bmi.listDisks({ project })) {
      await lab.bmi.deleteDisk({ project, disk: disk.name, force: true }).catch(() => undefined);
    }
    await lab.bmi.removeImage({ project, image: GOLDEN }).catch(() => undefined);
    expect(await lab.leftovers()).toEqual({ images: [], targets: [], bootFiles: [] });
  } finally {
    await lab?.stop();
    await scratch?.remove();
    if (timings.length > 0) process.stderr.write(`e2e Debian boot times:\n  ${timings.join("\n  ")}\n`);
  }
}, 180_000);

interface BootOptions {
  firmware?: "bios" | "uefi";
  /** Boot the node's disk from an earlier provision of `image` again, as it is (no new clone). */
  existingDisk?: boolean;
}
let boots = 0;

/**
 * Provisions `node` from `image`, powers it through HIL and waits until its OS has logged in to
 * its target, then reads the OS line and the output of `script` (run inside the OS) from its console.
 */
async function bootWithScript(node: string, image: string, script: string, options: BootOptions = {}) {
  const { firmware = "bios", existingDisk = false } = options;
  const disk = `disk-${node}-${image}`;
  boots += 1;
  const scriptFile = join(scratch.path, `${node}-${image}-run-${boots}.sh`);
  await writeFile(scriptFile, script);
  lab.configureNode(node, { memoryMb: 1024, firmware, fwCfgFiles: { [FW_CFG_RUN]: scriptFile } });
  const console = lab.console(node);
  const from = await console.mark();
  const watch = await watchStages(lab, node, { ...STAGE_LINES, ready_line: OS_LINE });
  const started = Date.now();
  const provisioning = await lab.bmi.provision({
    project: lab.project,
    node,
    disk,
    ...(existingDisk ? {} : { image }),
    nic: "eth0",
    firmware,
    power: "cycle",
    wait: true,
    timeoutMs: BOOT_BOUND_MS,
  });
  expect(provisioning.boot?.stages.map((s) => s.stage)).toEqual(["powered_on", "firmware_login", "os_login"]);
  const done = await console.waitFor(/BMI-RUN-END rc=\d+/, { from, timeoutMs: BOOT_BOUND_MS });
  const stages = await watch.report();
  expect(stages.map((t) => t.stage)).toEqual(["powered_on", "firmware_login", "os_login", "ready_line"]);
  timings.push(
    formatTimings(`${node} (${firmware}) from ${image} (script done ${done.seenAt - started} ms)`, stages),
  );
  // The script has synced its writes; a hard power off through HIL ends the VM.
  expect(await lab.bmi.power({ project: lab.project, node, action: "off" })).toBe("off");
  const serial = done.text;
  const os = parseOsLine(serial);
  const run = /BMI-RUN-BEGIN\r?\n([\s\S]*?)BMI-RUN-END rc=(\d+)/.exec(serial);
  // The serial getty's login prompt shares ttyS0, so the scripts tag their output lines.
  const output = [...(run?.[1] ?? "").matchAll(/BMI-OUT (.*?)\r?$/gm)].map((m) => m[1]).join("\n");
  return { provisioning, disk, os, output, rc: Number(run?.[2]) };
}

describe("Debian boots with its root on BMI's iSCSI clone", () => {
  const content = `written by node-01 ${process.pid}-${Date.now()}`;
  const second = `written by node-02 ${process.pid}-${Date.now()}`;

  it("node-01 (BIOS) boots Debian from its clone, its root is the BMI target, and it writes a file", async () => {
    const booted = await bootWithScript(
      "node-01",
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
    // Powered off, the provisioned disk can be snapshotted as it is (issue 16.5).
    await lab.bmi.snapshotDisk({ project: lab.project, disk: booted.disk, snapshot: SNAPSHOT });
    // The disk stays (deleting it would flatten the snapshot: a full copy in memstore's RAM).
    await lab.bmi.deprovision({ project: lab.project, node: "node-01", deleteDisk: false });
  }, 1_000_000);

  it("node-02 (UEFI), provisioned from the snapshot of node-01's disk, reads exactly that file and writes its own", async () => {
    // The same image boots UEFI: OVMF → EFI iPXE → sanboot → GRUB x86_64-efi from the ESP.
    const booted = await bootWithScript(
      "node-02",
      SNAPSHOT,
      [
        "[ -d /sys/firmware/efi ] && echo BMI-OUT efi",
        "sed 's/^/BMI-OUT /' /root/bmi-proof.txt",
        `echo '${second}' > /root/bmi-node02.txt && sync && sed 's/^/BMI-OUT /' /root/bmi-node02.txt`,
        "",
      ].join("\n"),
      { firmware: "uefi" },
    );
    expect(booted.os).toMatchObject({
      os: "Debian GNU/Linux 12 (bookworm)",
      target: booted.provisioning.target.name,
    });
    expect(booted.rc).toBe(0);
    expect(booted.output).toBe(`efi\n${content}\n${second}`);
    // The disk stays until node-01 has looked for its file (afterAll removes what is left).
    await lab.bmi.deprovision({ project: lab.project, node: "node-02", deleteDisk: false });
  }, 1_000_000);

  it("node-01 (BIOS) booted again from its own disk has its file and not node-02's (copy-on-write)", async () => {
    const booted = await bootWithScript(
      "node-01",
      GOLDEN,
      [
        "[ -d /sys/firmware/efi ] || echo BMI-OUT bios",
        "sed 's/^/BMI-OUT /' /root/bmi-proof.txt",
        "if [ -e /root/bmi-node02.txt ]; then echo BMI-OUT sees-node02; else echo BMI-OUT no-node02; fi",
        "",
      ].join("\n"),
      { existingDisk: true },
    );
    expect(booted.os).toMatchObject({ target: booted.provisioning.target.name });
    expect(booted.rc).toBe(0);
    expect(booted.output).toBe(`bios\n${content}\nno-node02`);
    await lab.bmi.deprovision({ project: lab.project, node: "node-01", deleteDisk: false });
    await lab.bmi.deleteDisk({ project: lab.project, disk: `disk-node-02-${SNAPSHOT}` });
  }, 1_000_000);
});
