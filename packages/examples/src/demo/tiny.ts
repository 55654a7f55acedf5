// `--image tiny`: the fast demo on the lab's boot-sector image, which prints a marker through
// BIOS int13 once iPXE's sanboot has read it from the node's iSCSI clone.
import type { Provisioning } from "@bmi/core";
import {
  type DemoRun,
  type DemoTask,
  PROJECT,
  powerAndWait,
  provisionAndWait,
  provisionTask,
  type SeenBoot,
  seconds,
  snapshotNode,
  timed,
} from "./run.js";

const GOLDEN_MARKER = "BMI-BOOT-OK";
const SNAPSHOT_MARKER = "BMI-SNAPSHOT-OK";
/** TCG on a shared 2-core host: iPXE reaches the SAN disk in ~10 s when idle. */
const BOOT_TIMEOUT_MS = 300_000;

/** Waits for the image's marker on the node's console and records the boot in the summary. */
async function recordBoot(
  run: DemoRun,
  node: string,
  marker: string,
  call: "power" | "provision",
  seen: SeenBoot,
): Promise<string> {
  const { from, started, wait } = seen;
  const shown = await run
    .lab()
    .console(node)
    .waitFor(new RegExp(`${marker}\\r?\\n`), { from, timeoutMs: BOOT_TIMEOUT_MS });
  const markerMs = Math.round(performance.now() - started - (Date.now() - shown.seenAt));
  run.ctx.boots.push({ node, from: call, stages: wait.stages, markerMs, marker });
  const stages = wait.stages.map((s) => `${s.stage} ${seconds(s.atMs)}`).join(", ");
  run.ctx.bootOutput.push(`${node}: ${marker} after ${seconds(markerMs)}`);
  return `${node}, from the ${call} call: ${stages}, "${marker}" on its console ${seconds(markerMs)}`;
}

/** The tiny demo's steps after the lab is up (the teardown check is added by the caller). */
export function tinyTasks(run: DemoRun): DemoTask[] {
  return [
    {
      title: "Make a golden image (a bootable disk built by the repo, imported into Ceph)",
      task: timed(run, "golden image", async () => {
        const image = await run.lab().createGoldenImage("golden", { marker: GOLDEN_MARKER });
        return `${image.name} = rbd ${run.lab().ceph.pool}/${image.cephName}`;
      }),
    },
    provisionTask(run, "golden"),
    {
      title: "Power the first node through HIL (→ obmd → QMP → qemu) and wait until BMI sees it boot",
      task: timed(run, "boot node", async (task) => {
        const node = run.ctx.first?.node ?? "";
        const seen = await powerAndWait(run, task, node, "firmware_login", BOOT_TIMEOUT_MS);
        return recordBoot(run, node, GOLDEN_MARKER, "power", seen);
      }),
    },
    {
      title: "Change the node's disk, power it off through HIL, snapshot the disk into a new image",
      task: timed(run, "snapshot + re-provision", async () => {
        const l = run.lab();
        const first = run.ctx.first as Provisioning;
        const disk = (await l.bmi.listDisks({ project: PROJECT })).find((d) => d.name === first.disk);
        if (!disk) throw new Error(`disk ${first.disk} vanished`);
        // What the running node would do: write to its root disk (here its boot sector).
        await l.writeBootMarker(disk, SNAPSHOT_MARKER);
        // The running node's disk is not snapshotted: power it off through HIL first.
        await l.bmi.power({ project: PROJECT, node: first.node, action: "off" });
        await l.bmi.deprovision({ project: PROJECT, node: first.node });
        const snapshot = await l.bmi.snapshotDisk({
          project: PROJECT,
          disk: first.disk,
          snapshot: "golden-v2",
        });
        run.ctx.first = { ...first, node: "" };
        run.ctx.batch = run.ctx.batch.slice(1);
        return `${first.node} powered off; ${snapshot.name} = rbd ${snapshot.cephName}`;
      }),
    },
    {
      title: "Provision a second node from the snapshot, powered through HIL, waiting for its boot",
      task: timed(run, "boot snapshot", async (task) => {
        const node = snapshotNode(run);
        const target = { node, image: "golden-v2", until: "firmware_login" as const };
        const seen = await provisionAndWait(run, task, target, BOOT_TIMEOUT_MS);
        return recordBoot(run, node, SNAPSHOT_MARKER, "provision", seen);
      }),
    },
  ];
}
