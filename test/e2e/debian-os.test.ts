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
import { createHash } from "node:crypto";
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

/** A script line that ends a kept-running boot's first part (its output so far is the boot's). */
const HOLD = "BMI-HOLD";
const RUN_END = /BMI-RUN-END rc=\d+/;

/** 1 MiB the node writes before the crash: a line repeated, so the host knows its checksum. */
const TGTD_RESTART_LINE = "bmi tgtd-restart proof";
const tgtdRestartFile = () => Buffer.from(`${TGTD_RESTART_LINE}\n`.repeat(50_000)).subarray(0, 1 << 20);

/**
 * Inside node-01 (after HOLD): the file with a known checksum, a loop appending a timestamp every
 * 0.2 s (synced: it stalls while the target is gone), then wait for the iSCSI session to drop
 * and come back; drop the page cache so the checksum is read from the target again, write anew,
 * and print the largest gap between ticks: the outage the node saw.
 */
const TGTD_RESTART_SCRIPT = `
s=$(ls -d /sys/class/iscsi_session/session* | head -n 1)
echo "BMI-OUT recovery_tmo=$(cat $s/recovery_tmo)"
echo "BMI-OUT iscsid=$(pidof iscsid || echo none)"
echo "BMI-OUT units=$(systemctl is-active iscsid.service iscsid.socket open-iscsi.service | tr '\\n' ,)"
yes '${TGTD_RESTART_LINE}' | head -c 1048576 > /root/bmi-before.bin && sync
echo "BMI-OUT before=$(sha256sum /root/bmi-before.bin | cut -d ' ' -f 1)"
echo ${HOLD}
( while :; do date +%s.%N >> /root/bmi-ticks.txt; sync; sleep 0.2; done ) &
loop=$!
sleep 2
echo BMI-OUT ticking
i=0; while [ "$(cat $s/state)" = LOGGED_IN ] && [ $i -lt 1500 ]; do sleep 0.1; i=$((i+1)); done
echo "BMI-OUT dropped=$(cat $s/state)"
i=0; while [ "$(cat $s/state)" != LOGGED_IN ] && [ $i -lt 3000 ]; do sleep 0.1; i=$((i+1)); done
echo "BMI-OUT back=$(cat $s/state)"
sleep 2
kill $loop
echo 3 > /proc/sys/vm/drop_caches
echo "BMI-OUT after=$(sha256sum /root/bmi-before.bin | cut -d ' ' -f 1)"
echo after-restart > /root/bmi-after.txt && sync && echo "BMI-OUT wrote=$(cat /root/bmi-after.txt)"
echo "BMI-OUT gap=$(awk 'NR > 1 && $1 - p > m { m = $1 - p } { p = $1 } END { printf "%.2f", m }' /root/bmi-ticks.txt)"
echo "BMI-OUT recovery_tmo_after=$(cat $s/recovery_tmo)"
`;

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
  /**
   * Leave the node running: the script's output counts up to its {@link HOLD} line (the script
   * goes on; a later test reads the rest with {@link scriptOutput}), and no power off.
   */
  keepRunning?: boolean;
}

/** The BMI-OUT lines of a script's output, from BMI-RUN-BEGIN to `end`. */
function scriptOutput(serial: string, end: RegExp): string {
  const start = Math.max(serial.indexOf("BMI-RUN-BEGIN"), 0);
  const stop = end.exec(serial.slice(start));
  const part = serial.slice(start, stop ? start + stop.index : serial.length);
  // systemd prints its status lines on ttyS0 too, so the scripts tag their output lines.
  return [...part.matchAll(/BMI-OUT (.*?)\r?$/gm)].map((m) => m[1]).join("\n");
}
let boots = 0;

/**
 * Provisions `node` from `image`, powers it through HIL and waits until its OS has logged in to
 * its target, then reads the OS line and the output of `script` (run inside the OS) from its console.
 */
async function bootWithScript(node: string, image: string, script: string, options: BootOptions = {}) {
  const { firmware = "bios", existingDisk = false, keepRunning = false } = options;
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
  const end = keepRunning ? new RegExp(`^${HOLD}\\r?$`, "m") : RUN_END;
  const done = await console.waitFor(end, { from, timeoutMs: BOOT_BOUND_MS });
  const stages = await watch.report();
  expect(stages.map((t) => t.stage)).toEqual(["powered_on", "firmware_login", "os_login", "ready_line"]);
  timings.push(
    formatTimings(`${node} (${firmware}) from ${image} (script done ${done.seenAt - started} ms)`, stages),
  );
  // The script has synced its writes; a hard power off through HIL ends the VM.
  if (!keepRunning) expect(await lab.bmi.power({ project: lab.project, node, action: "off" })).toBe("off");
  const serial = done.text;
  const rc = /BMI-RUN-END rc=(\d+)/.exec(serial)?.[1];
  return {
    provisioning,
    disk,
    os: parseOsLine(serial),
    output: scriptOutput(serial, end),
    rc: Number(rc),
    from,
  };
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

  // node-01's last boot stays up for the tgtd restart below (CI pays no extra boot).
  let running: { from: number; target: string } | undefined;

  it("node-01 (BIOS) booted again from its own disk has its file and not node-02's (copy-on-write)", async () => {
    const booted = await bootWithScript(
      "node-01",
      GOLDEN,
      [
        "[ -d /sys/firmware/efi ] || echo BMI-OUT bios",
        "sed 's/^/BMI-OUT /' /root/bmi-proof.txt",
        "if [ -e /root/bmi-node02.txt ]; then echo BMI-OUT sees-node02; else echo BMI-OUT no-node02; fi",
        TGTD_RESTART_SCRIPT,
      ].join("\n"),
      { existingDisk: true, keepRunning: true },
    );
    running = { from: booted.from, target: booted.provisioning.target.name };
    expect(booted.os).toMatchObject({ target: booted.provisioning.target.name });
    expect(booted.output.split("\n").slice(0, 3).join("\n")).toBe(`bios\n${content}\nno-node02`);
    await lab.bmi.deleteDisk({ project: lab.project, disk: `disk-node-02-${SNAPSHOT}` });
  }, 1_000_000);

  it("tgtd killed and restarted under node-01's running OS: restoreTargets() brings its target back, the OS rides it out", async () => {
    expect(running, "node-01's last boot is still up").toBeDefined();
    const console = lab.console("node-01");
    const from = running?.from ?? 0;
    // The script inside logs each tick of its write loop; wait until it has written some.
    await console.waitFor(/^BMI-OUT ticking\r?$/m, { from, timeoutMs: 120_000 });
    const oldPid = lab.tgtd.pid;
    const t0 = performance.now();
    await lab.tgtd.kill();
    const killedMs = performance.now() - t0;
    await lab.tgtd.restart();
    const restartedMs = performance.now() - t0;
    expect(lab.tgtd.pid).not.toBe(oldPid);
    const restored = await lab.bmi.restoreTargets();
    const restoredMs = performance.now() - t0;
    expect(restored).toContain(running?.target);
    const done = await console.waitFor(RUN_END, { from, timeoutMs: 600_000 });
    // Its fields come before HOLD (the file's checksum) and after it (what the node saw).
    const output = scriptOutput(done.text, RUN_END);
    const fields = Object.fromEntries(
      output.split("\n").flatMap((line) => {
        const m = /^(\w+)=(.*)$/.exec(line);
        return m ? [[m[1], m[2]]] : [];
      }),
    );
    timings.push(
      `tgtd restart under node-01's OS: kill ${Math.round(killedMs)} ms, tgtd up again ${Math.round(restartedMs)} ms, ` +
        `targets restored ${Math.round(restoredMs)} ms (${restored.length}); outage the node saw ${fields.gap} s ` +
        `(recovery_tmo ${fields.recovery_tmo} s, iscsid ${fields.iscsid})`,
    );
    expect(/BMI-RUN-END rc=(\d+)/.exec(done.text)?.[1]).toBe("0");
    expect(fields.iscsid).not.toBe("none"); // iscsid logs in again: the kernel alone does not
    expect(fields.dropped).not.toBe("LOGGED_IN"); // the node did see its session go
    expect(fields.back).toBe("LOGGED_IN");
    expect(fields.before).toBe(createHash("sha256").update(tgtdRestartFile()).digest("hex"));
    expect(fields.after).toBe(fields.before);
    expect(fields.wrote).toBe("after-restart");
    expect(Number(fields.gap)).toBeGreaterThan(0);
    expect(Number(fields.recovery_tmo)).toBeGreaterThan(Number(fields.gap));
    expect(await lab.bmi.power({ project: lab.project, node: "node-01", action: "off" })).toBe("off");
    await lab.bmi.deprovision({ project: lab.project, node: "node-01", deleteDisk: false });
  }, 1_000_000);
});
