// The default demo: Debian 12, built from Debian packages by @bmi/lab (or taken from its cache),
// boots with its root on the node's iSCSI clone. node-01 boots with BIOS and writes a file; its
// disk is snapshotted; node-02 boots from the snapshot with UEFI and reads that file. Everything
// the demo reports about a node (OS, root device, iSCSI target, firmware, the file) is read inside
// the OS: the host passes a script through qemu's fw_cfg and reads its output on the serial line.
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Provisioning } from "@bmi/core";
import { buildDebianImage, FW_CFG_RUN, type OsLine, parseOsLine } from "@bmi/lab";
import {
  type DemoRun,
  type DemoTask,
  type OsBoot,
  PROJECT,
  powerAndWait,
  provisionAndWait,
  provisionTask,
  type SeenBoot,
  seconds,
  snapshotNode,
  timed,
} from "./run.js";

const GOLDEN = "debian12";
const SNAPSHOT = "debian12-v2";
const FILE = "/root/bmi-demo.txt";
/** TCG on a shared 2-core host: ~100 s to the OS line when idle. */
const BOOT_TIMEOUT_MS = 480_000;
/** Debian with its initramfs does not fit the lab's default 256 MiB. */
const MEMORY_MB = 1024;

type Firmware = OsBoot["firmware"];

/** A script for the node: says which firmware booted it, then `body`; its lines are tagged (the getty shares ttyS0). */
const nodeScript = (body: string[]) =>
  [
    "if [ -d /sys/firmware/efi ]; then echo BMI-OUT firmware=uefi; else echo BMI-OUT firmware=bios; fi",
    ...body,
    "",
  ].join("\n");

/** Sets `node`'s next power-on: the firmware, enough memory, and `body` run inside its OS. */
async function prepareNode(run: DemoRun, node: string, firmware: Firmware, body: string[]): Promise<void> {
  const l = run.lab();
  const file = join(l.dir, `${node}-run.sh`); // in the lab dir: removed with the lab
  await writeFile(file, nodeScript(body));
  l.configureNode(node, { memoryMb: MEMORY_MB, firmware, fwCfgFiles: { [FW_CFG_RUN]: file } });
}

interface OsReport {
  line: OsLine;
  osLineMs: number;
  firmware: string;
  /** The script's other output lines. */
  output: string[];
}

/** Waits for the OS line and the script's end on `node`'s console; what the OS said. */
async function readOs(run: DemoRun, node: string, seen: SeenBoot): Promise<OsReport> {
  const console = run.lab().console(node);
  const shown = await console.waitFor(/BMI-OS os="/, { from: seen.from, timeoutMs: BOOT_TIMEOUT_MS });
  const osLineMs = Math.round(performance.now() - seen.started - (Date.now() - shown.seenAt));
  const done = await console.waitFor(/BMI-RUN-END rc=\d+/, { from: seen.from, timeoutMs: BOOT_TIMEOUT_MS });
  const line = parseOsLine(done.text);
  if (!line) throw new Error(`${node}: no OS line on its console`);
  const script = /BMI-RUN-BEGIN\r?\n([\s\S]*?)BMI-RUN-END rc=(\d+)/.exec(done.text);
  if (script?.[2] !== "0") throw new Error(`${node}: the script inside the OS failed (rc=${script?.[2]})`);
  const tagged = [...(script[1] ?? "").matchAll(/BMI-OUT (.*?)\r?$/gm)].map((m) => m[1] ?? "");
  const firmware = tagged.find((t) => t.startsWith("firmware="))?.slice("firmware=".length) ?? "";
  return { line, osLineMs, firmware, output: tagged.filter((t) => !t.startsWith("firmware=")) };
}

/**
 * Records a node's boot in the summary after checking what its OS said: the firmware asked for,
 * and its root on the target BMI provisioned for it.
 */
function recordOsBoot(
  run: DemoRun,
  boot: { node: string; call: OsBoot["from"]; firmware: Firmware; target: string },
  seen: SeenBoot,
  report: OsReport,
  sawSnapshotFile?: boolean,
): string {
  const { node, firmware, target } = boot;
  if (report.firmware !== firmware)
    throw new Error(`${node} booted with "${report.firmware}", not ${firmware}`);
  // The session's fields are "<portal>,<tpgt> <target>": the target the root device is on.
  const rootTarget = report.line.session.split(/\s+/).pop() ?? "";
  if (rootTarget !== target)
    throw new Error(`${node}'s root is on "${rootTarget}", not its target ${target}`);
  const summary: OsBoot = {
    node,
    from: boot.call,
    firmware,
    stages: seen.wait.stages,
    osLineMs: report.osLineMs,
    os: report.line.os,
    root: report.line.root,
    rootTarget,
    target,
    ...(sawSnapshotFile === undefined ? {} : { sawSnapshotFile }),
  };
  run.ctx.boots.push(summary);
  const stages = summary.stages.map((s) => `${s.stage} ${seconds(s.atMs)}`).join(", ");
  run.ctx.bootOutput.push(
    `${node} (${firmware}): "${summary.os}" after ${seconds(summary.osLineMs)}, root ${summary.root} on ${rootTarget}`,
  );
  return `${node} (${firmware}), from the ${boot.call} call: ${stages}, OS line ${seconds(summary.osLineMs)}: ${summary.os}, root ${summary.root} on ${rootTarget}`;
}

/** The image step: runs before the lab starts (a build needs no daemon). */
export function debianImageTask(run: DemoRun, cacheDir: string): DemoTask {
  return {
    title: `Build the Debian 12 golden image from Debian packages, or take it from the cache in ${cacheDir}`,
    task: timed(run, "image", async (task) => {
      const image = await buildDebianImage({
        cacheDir,
        onStep: (step, ms) => {
          task.output = `${step} done in ${seconds(ms)}`;
        },
      });
      run.ctx.image = image;
      const size = `${Math.round(image.allocatedBytes / 2 ** 20)} MiB allocated`;
      return image.cacheHit
        ? `cache hit debian-${image.key} (${size})`
        : `built debian-${image.key} in ${seconds(image.ms)} (${size})`;
    }),
  };
}

/** The Debian demo's steps after the lab is up (the teardown check is added by the caller). */
export function debianTasks(run: DemoRun): DemoTask[] {
  const content = `written by node-01 at ${new Date().toISOString()}`;
  return [
    {
      title: "Import the Debian image into Ceph as a golden image",
      task: timed(run, "golden image", async () => {
        const file = run.ctx.image?.path;
        if (!file) throw new Error("no Debian image");
        const image = await run.lab().createGoldenImage(GOLDEN, { file });
        return `${image.name} = rbd ${run.lab().ceph.pool}/${image.cephName}`;
      }),
    },
    provisionTask(run, GOLDEN),
    {
      title: "Power the first node through HIL (BIOS), wait for its OS on the clone; the OS writes a file",
      task: timed(run, "boot node (BIOS)", async (task) => {
        const first = run.ctx.first as Provisioning;
        await prepareNode(run, first.node, "bios", [`echo '${content}' > ${FILE}`, "sync"]);
        const seen = await powerAndWait(run, task, first.node, "os_login", BOOT_TIMEOUT_MS);
        const report = await readOs(run, first.node, seen);
        const boot = { node: first.node, call: "power" as const, firmware: "bios" as const };
        return `${recordOsBoot(run, { ...boot, target: first.target.name }, seen, report)}; wrote ${FILE}`;
      }),
    },
    {
      title: "Power the node off through HIL and snapshot its disk into a new golden image",
      task: timed(run, "snapshot", async () => {
        const l = run.lab();
        const first = run.ctx.first as Provisioning;
        // The OS synced its write; a hard power off ends the VM, then the disk is snapshotted as it is.
        await l.bmi.power({ project: PROJECT, node: first.node, action: "off" });
        await l.bmi.deprovision({ project: PROJECT, node: first.node });
        const snapshot = await l.bmi.snapshotDisk({ project: PROJECT, disk: first.disk, snapshot: SNAPSHOT });
        run.ctx.batch = run.ctx.batch.slice(1);
        return `${first.node} powered off; ${snapshot.name} = rbd ${snapshot.cephName}`;
      }),
    },
    {
      title: "Provision a second node from the snapshot (UEFI), wait for its OS; the OS reads the file",
      task: timed(run, "boot snapshot (UEFI)", async (task) => {
        const node = snapshotNode(run);
        await prepareNode(run, node, "uefi", [`sed 's/^/BMI-OUT /' ${FILE}`]);
        const target = { node, image: SNAPSHOT, until: "os_login" as const, firmware: "uefi" as const };
        const seen = await provisionAndWait(run, task, target, BOOT_TIMEOUT_MS);
        const report = await readOs(run, node, seen);
        const saw = report.output.join("\n") === content;
        const boot = { node, call: "provision" as const, firmware: "uefi" as const };
        const detail = recordOsBoot(
          run,
          { ...boot, target: seen.provisioned.target.name },
          seen,
          report,
          saw,
        );
        if (!saw)
          throw new Error(`${node} read ${JSON.stringify(report.output)} from ${FILE}, not "${content}"`);
        run.ctx.bootOutput.push(`${node} read ${FILE} from the snapshot: "${content}"`);
        return `${detail}; read ${FILE}: "${content}"`;
      }),
    },
  ];
}
