// What the demo's steps share: the run's state, timing, the provision step, the power-and-wait
// and provision-and-wait calls both images boot with, and the final cleanup with its checks.
import type { BmiError, BmiEvent, BootWaitResult, Provisioning } from "@bmi/core";
import type { BmiLab, DebianImage } from "@bmi/lab";
import type { ListrTask } from "listr2";

export const PROJECT = "demo";

export interface StepTime {
  step: string;
  ms: number;
  detail: string;
}

/** A boot-sector node's boot as the summary shows it: BMI's waiter's stages, then the console's marker. */
export interface MarkerBoot {
  node: string;
  /** What the times count from: the power call, or the provision call that powered the node. */
  from: "power" | "provision";
  /** From `from` to each stage BMI's waiter saw. */
  stages: { stage: string; atMs: number }[];
  /** From `from` to the image's line on the node's serial console. */
  markerMs: number;
  marker: string;
}

/** A real OS's boot: the waiter's stages, then what the OS itself said about where it runs from. */
export interface OsBoot {
  node: string;
  from: "power" | "provision";
  /** Read inside the OS (`/sys/firmware/efi` present or not). */
  firmware: "bios" | "uefi";
  stages: { stage: string; atMs: number }[];
  /** From `from` to the OS line on the node's serial console. */
  osLineMs: number;
  /** PRETTY_NAME from the OS's /etc/os-release. */
  os: string;
  /** The root filesystem's device (`findmnt /` inside the OS). */
  root: string;
  /** The iSCSI target of the OS's own session (`iscsiadm -m session` inside the OS). */
  rootTarget: string;
  /** The target BMI exported the node's disk as (what `rootTarget` must be). */
  target: string;
  /** For the node booted from the snapshot: it read the file the first node wrote. */
  sawSnapshotFile?: boolean;
}

export interface DemoContext {
  lab?: BmiLab;
  first?: Provisioning;
  batch: Provisioning[];
  bootOutput: string[];
  boots: (MarkerBoot | OsBoot)[];
  /** The Debian image this run used (absent with `--image tiny`). */
  image?: DebianImage;
}

export interface DemoRun {
  ctx: DemoContext;
  times: StepTime[];
  /** How many nodes the batch provisions (`--nodes`). */
  nodes: number;
  lab(): BmiLab;
}

export type DemoTask = ListrTask<DemoContext>;
/** The stage a boot is waited for: iPXE's login (any image), or the OS's own login (a real OS). */
export type BootGoal = "firmware_login" | "os_login";
type TaskHandle = { output: string; title: string };

export function createRun(nodes: number): DemoRun {
  const ctx: DemoContext = { batch: [], bootOutput: [], boots: [] };
  return {
    ctx,
    times: [],
    nodes,
    lab() {
      if (!ctx.lab) throw new Error("the lab is not running");
      return ctx.lab;
    },
  };
}

/** A task body that records its step's time and shows its detail as the task's title. */
export const timed =
  (run: DemoRun, step: string, fn: (task: TaskHandle) => Promise<string>) =>
  async (_: unknown, task: TaskHandle) => {
    const started = performance.now();
    const detail = await fn(task);
    run.times.push({ step, ms: Math.round(performance.now() - started), detail });
    task.title = `${step}: ${detail}`;
  };

export const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

/** The wait's stage times counted from the power call instead of from the wait's start. */
const shift = (wait: BootWaitResult, offsetMs: number): BootWaitResult => ({
  ...wait,
  stages: wait.stages.map((s) => ({ ...s, atMs: s.atMs + offsetMs })),
});

/** Calls `show` with each boot stage BMI's waiter reports for `node`; returns the unsubscribe. */
function onStage(lab: BmiLab, node: string, show: (stage: string) => void): () => void {
  return lab.bmi.on((event: BmiEvent) => {
    if (event.type === "boot:stage" && event.node === node) show(`${event.stage} after ${event.atMs} ms`);
  });
}

/** A boot BMI saw: where the node's console stood before it and when the call that started it began. */
export interface SeenBoot {
  from: number;
  started: number;
  /** The waiter's stages, counted from the call. */
  wait: BootWaitResult;
}

/** Powers `node` through HIL (→ obmd → QMP → qemu) and waits until BMI sees it reach `until`. */
export async function powerAndWait(
  run: DemoRun,
  task: TaskHandle,
  node: string,
  until: BootGoal,
  timeoutMs: number,
): Promise<SeenBoot> {
  const l = run.lab();
  const from = await l.console(node).mark();
  const started = performance.now();
  task.output = `power cycle ${node} (boot device pxe) through HIL`;
  await l.bmi.power({ project: PROJECT, node, action: "cycle", force: true, bootDevice: "pxe" });
  const offset = Math.round(performance.now() - started);
  // Right after the power call, as documented: sessions from before it are an earlier boot's.
  const off = onStage(l, node, (stage) => {
    task.output = `${node}: ${stage}`;
  });
  const wait = await l.bmi.waitForBoot({ project: PROJECT, node, until }, { timeoutMs }).finally(off);
  if (wait.state !== "SUCCESS") throw new Error(`${node} did not boot: ${wait.state}, ${wait.reason}`);
  return { from, started, wait: shift(wait, offset) };
}

/** Provisions `node` from `image`, powered through HIL, and waits until BMI sees it reach `until`. */
export async function provisionAndWait(
  run: DemoRun,
  task: TaskHandle,
  target: { node: string; image: string; until: BootGoal; firmware?: "bios" | "uefi" },
  timeoutMs: number,
): Promise<SeenBoot & { provisioned: Provisioning }> {
  const l = run.lab();
  const { node, image, until, firmware } = target;
  const from = await l.console(node).mark();
  const off = onStage(l, node, (stage) => {
    task.output = `${node}: ${stage}`;
  });
  const started = performance.now();
  const provisioned = await l.bmi
    .provision({
      project: PROJECT,
      node,
      disk: `${node}-disk`,
      image,
      ...(firmware ? { firmware } : {}),
      power: "cycle",
      wait: true,
      until,
      timeoutMs,
    })
    .finally(off);
  run.ctx.batch.push(provisioned);
  const wait = provisioned.boot as BootWaitResult;
  // The waiter's times count from after the provisioning (clone, export, files) and the power call.
  const offset = Math.round(performance.now() - started) - wait.durationMs;
  return { from, started, wait: shift(wait, offset), provisioned };
}

/** Provisions the first `run.nodes` lab nodes from `image` in one batch. */
export function provisionTask(run: DemoRun, image: string): DemoTask {
  return {
    title: `Provision ${run.nodes} node(s) (clone, export, boot files, HIL network)`,
    task: timed(run, "provision", async (task) => {
      const l = run.lab();
      const off = l.bmi.on((event: BmiEvent) => {
        if (event.type === "step:finished") task.output = `${event.operation}: ${event.step}`;
      });
      try {
        const nodes = l.nodes.slice(0, run.nodes);
        const results = await l.bmi.provisionMany(
          nodes.map((n) => ({ project: PROJECT, node: n.name, disk: `${n.name}-disk`, image })),
          { concurrency: 4 },
        );
        const failed = results.filter((r) => !r.ok);
        if (failed.length > 0) {
          const first = failed[0] as { node: string; error: BmiError };
          throw new Error(`${failed.length} node(s) failed, first ${first.node}: ${first.error.message}`);
        }
        run.ctx.batch = results.flatMap((r) => (r.ok ? [r.value] : []));
        run.ctx.first = run.ctx.batch[0];
      } finally {
        off();
      }
      return run.ctx.batch.map((p) => `${p.node} → ${p.target.name}`).join(", ");
    }),
  };
}

/** The second node: the one after the batch, booted from the snapshot. */
export function snapshotNode(run: DemoRun): string {
  const l = run.lab();
  const second = l.nodes[run.nodes] ?? l.nodes[1];
  if (!second) throw new Error("the lab has no second node");
  return second.name;
}

/**
 * Removes what the demo made and checks nothing is left. Snapshots go before the disks they were
 * taken from: deleting a disk first would flatten its snapshot (a full copy of a real OS's disk).
 */
export function cleanupTask(run: DemoRun): DemoTask {
  return {
    title: "Deprovision everything and check nothing is left in Ceph, tgt or the TFTP root",
    task: timed(run, "deprovision + check", async () => {
      const l = run.lab();
      const project = PROJECT;
      for (const p of await l.bmi.listProvisionings({ project })) {
        await l.bmi.deprovision({ project, node: p.node, deleteDisk: true, powerOff: true });
      }
      for (const image of await l.bmi.listSnapshots({ project }))
        await l.bmi.removeImage({ project, image: image.image.name });
      // Forced: a node powered off leaves its iSCSI session behind (no FIN from a dead machine on
      // the lab's real network; qemu's user-mode network closed it for the node).
      for (const d of await l.bmi.listDisks({ project }))
        await l.bmi.deleteDisk({ project, disk: d.name, force: true });
      for (const image of await l.bmi.listImages({ project }))
        await l.bmi.removeImage({ project, image: image.name });
      const left = await l.leftovers();
      const count = left.images.length + left.targets.length + left.bootFiles.length;
      if (count > 0) throw new Error(`left behind: ${JSON.stringify(left)}`);
      const drift = await l.bmi.reconcile();
      if (drift.drift.length > 0) throw new Error(`reconcile found drift: ${JSON.stringify(drift.drift)}`);
      return "0 RBD images, 0 targets, 0 boot files left; reconcile: no drift";
    }),
  };
}
