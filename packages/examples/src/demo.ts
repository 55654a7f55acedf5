#!/usr/bin/env node
// The main job: a whole BMI on one machine. Brings up Ceph, tgtd and a HIL-compatible server,
// makes a golden image, provisions a node and powers it through HIL (→ the node's obmd-compatible
// endpoint → QMP → its qemu), waits until BMI sees it boot from its iSCSI clone, snapshots the
// node's disk, provisions and boots a second node from the snapshot, then tears everything down.
// The demo starts no VM itself: only the nodes' BMCs do.
import { parseArgs } from "node:util";
import { type BmiError, type BmiEvent, type BootWaitResult, type Provisioning, toBmiError } from "@bmi/core";
import { type BmiLab, startBmiLab } from "@bmi/lab";
import { Listr, type ListrTask } from "listr2";
import { z } from "zod";

const USAGE = `Usage: npm run demo -- [--nodes N] [--keep] [--json]

  --nodes N   provision N nodes in one batch (default 1; the first one boots)
  --keep      leave the lab running at the end and print how to use it
  --json      print one JSON summary instead of live progress
  --help      this text`;

const Options = z.object({
  nodes: z.coerce
    .number()
    .int()
    .min(1, { error: "--nodes must be at least 1" })
    .max(64, { error: "--nodes must be at most 64" }),
  keep: z.boolean(),
  json: z.boolean(),
});

interface StepTime {
  step: string;
  ms: number;
  detail: string;
}

/** A node's boot as the summary shows it: BMI's waiter's stages, then the console's marker. */
interface BootSummary {
  node: string;
  /** What the times count from: the power call, or the provision call that powered the node. */
  from: "power" | "provision";
  /** From `from` to each stage BMI's waiter saw. */
  stages: { stage: string; atMs: number }[];
  /** From `from` to the image's line on the node's serial console. */
  markerMs: number;
  marker: string;
}

interface Context {
  lab?: BmiLab;
  first?: Provisioning;
  batch: Provisioning[];
  bootOutput: string[];
  boots: BootSummary[];
}

const GOLDEN_MARKER = "BMI-BOOT-OK";
/** TCG on a shared 2-core host: iPXE reaches the SAN disk in ~10 s when idle. */
const BOOT_TIMEOUT_MS = 300_000;

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
const SNAPSHOT_MARKER = "BMI-SNAPSHOT-OK";

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      nodes: { type: "string", default: "1" },
      keep: { type: "boolean", default: false },
      json: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const parsed = Options.safeParse(values);
  if (!parsed.success) {
    console.error(`${parsed.error.issues[0]?.message ?? "bad options"}\n\n${USAGE}`);
    return 2;
  }
  const options = parsed.data;
  const times: StepTime[] = [];
  const ctx: Context = { batch: [], bootOutput: [], boots: [] };
  const project = "demo";
  const labNodes = Math.max(2, options.nodes + 1);

  // Tear down on Ctrl-C as on failure: nothing of the lab may outlive the demo.
  let interrupted = false;
  const onSignal = () => {
    interrupted = true;
    void ctx.lab?.stop().finally(() => process.exit(130));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);

  const timed =
    (step: string, fn: (task: { output: string; title: string }) => Promise<string>) =>
    async (_: unknown, task: { output: string; title: string }) => {
      const started = performance.now();
      const detail = await fn(task);
      times.push({ step, ms: Math.round(performance.now() - started), detail });
      task.title = `${step}: ${detail}`;
    };
  const lab = () => {
    if (!ctx.lab) throw new Error("the lab is not running");
    return ctx.lab;
  };
  /** Waits for the image's marker on the node's console and records the boot in the summary. */
  const recordBoot = async (
    node: string,
    marker: string,
    since: { from: number; started: number; call: BootSummary["from"] },
    wait: BootWaitResult,
  ): Promise<string> => {
    const { from, started } = since;
    const shown = await lab()
      .console(node)
      .waitFor(new RegExp(`${marker}\\r?\\n`), { from, timeoutMs: BOOT_TIMEOUT_MS });
    const markerMs = Math.round(performance.now() - started - (Date.now() - shown.seenAt));
    ctx.boots.push({ node, from: since.call, stages: wait.stages, markerMs, marker });
    const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
    const stages = wait.stages.map((s) => `${s.stage} ${seconds(s.atMs)}`).join(", ");
    ctx.bootOutput.push(`${node}: ${marker} after ${seconds(markerMs)}`);
    return `${node}, from the ${since.call} call: ${stages}, "${marker}" on its console ${seconds(markerMs)}`;
  };

  const tasks: ListrTask<Context>[] = [
    {
      title: "Bring up the lab (Ceph, tgtd, HIL-compatible server, TFTP root, SQLite, bmi_config.cfg)",
      task: timed("lab", async (task) => {
        ctx.lab = await startBmiLab({
          project,
          nodes: labNodes,
          network: "auto", // the lab's own namespace, bridges and dnsmasq where it can (root)
          onProgress: (part, ms) => {
            task.output = `${part} up in ${ms} ms`;
          },
        });
        return `up in ${ctx.lab.dir}`;
      }),
    },
    {
      title: "Make a golden image (a bootable disk built by the repo, imported into Ceph)",
      task: timed("golden image", async () => {
        const image = await lab().createGoldenImage("golden", { marker: GOLDEN_MARKER });
        return `${image.name} = rbd ${lab().ceph.pool}/${image.cephName}`;
      }),
    },
    {
      title: `Provision ${options.nodes} node(s) (clone, export, boot files, HIL network)`,
      task: timed("provision", async (task) => {
        const l = lab();
        const off = l.bmi.on((event: BmiEvent) => {
          if (event.type === "step:finished") task.output = `${event.operation}: ${event.step}`;
        });
        try {
          const nodes = l.nodes.slice(0, options.nodes);
          const results = await l.bmi.provisionMany(
            nodes.map((n) => ({ project, node: n.name, disk: `${n.name}-disk`, image: "golden" })),
            { concurrency: 4 },
          );
          const failed = results.filter((r) => !r.ok);
          if (failed.length > 0) {
            const first = failed[0] as { node: string; error: BmiError };
            throw new Error(`${failed.length} node(s) failed, first ${first.node}: ${first.error.message}`);
          }
          ctx.batch = results.flatMap((r) => (r.ok ? [r.value] : []));
          ctx.first = ctx.batch[0];
        } finally {
          off();
        }
        return ctx.batch.map((p) => `${p.node} → ${p.target.name}`).join(", ");
      }),
    },
    {
      title: "Power the first node through HIL (→ obmd → QMP → qemu) and wait until BMI sees it boot",
      task: timed("boot node", async (task) => {
        const l = lab();
        const node = ctx.first?.node ?? "";
        const from = await l.console(node).mark();
        const started = performance.now();
        task.output = `power cycle ${node} (boot device pxe) through HIL`;
        await l.bmi.power({ project, node, action: "cycle", force: true, bootDevice: "pxe" });
        const offset = Math.round(performance.now() - started);
        // Right after the power call, as documented: sessions from before it are an earlier boot's.
        const off = onStage(l, node, (stage) => {
          task.output = `${node}: ${stage}`;
        });
        const wait = await l.bmi
          .waitForBoot({ project, node, until: "firmware_login" }, { timeoutMs: BOOT_TIMEOUT_MS })
          .finally(off);
        if (wait.state !== "SUCCESS") throw new Error(`${node} did not boot: ${wait.state}, ${wait.reason}`);
        return recordBoot(node, GOLDEN_MARKER, { from, started, call: "power" }, shift(wait, offset));
      }),
    },
    {
      title: "Change the node's disk, power it off through HIL, snapshot the disk into a new image",
      task: timed("snapshot + re-provision", async () => {
        const l = lab();
        const first = ctx.first as Provisioning;
        const disk = l.bmi.listDisks({ project }).find((d) => d.name === first.disk);
        if (!disk) throw new Error(`disk ${first.disk} vanished`);
        // What the running node would do: write to its root disk (here its boot sector).
        await l.writeBootMarker(disk, SNAPSHOT_MARKER);
        // The running node's disk is not snapshotted: power it off through HIL first.
        await l.bmi.power({ project, node: first.node, action: "off" });
        await l.bmi.deprovision({ project, node: first.node });
        const snapshot = await l.bmi.snapshotDisk({ project, disk: first.disk, snapshot: "golden-v2" });
        ctx.first = { ...first, node: "" };
        ctx.batch = ctx.batch.slice(1);
        return `${first.node} powered off; ${snapshot.name} = rbd ${snapshot.cephName}`;
      }),
    },
    {
      title: "Provision a second node from the snapshot, powered through HIL, waiting for its boot",
      task: timed("boot snapshot", async (task) => {
        const l = lab();
        const second = l.nodes[options.nodes] ?? l.nodes[1];
        if (!second) throw new Error("the lab has no second node");
        const from = await l.console(second.name).mark();
        const off = onStage(l, second.name, (stage) => {
          task.output = `${second.name}: ${stage}`;
        });
        const started = performance.now();
        const provisioned = await l.bmi
          .provision({
            project,
            node: second.name,
            disk: `${second.name}-disk`,
            image: "golden-v2",
            power: "cycle",
            wait: true,
            until: "firmware_login",
            timeoutMs: BOOT_TIMEOUT_MS,
          })
          .finally(off);
        ctx.batch.push(provisioned);
        const wait = provisioned.boot as BootWaitResult;
        // The waiter's times count from after the provisioning (clone, export, files) and the power call.
        const offset = Math.round(performance.now() - started) - wait.durationMs;
        return recordBoot(
          second.name,
          SNAPSHOT_MARKER,
          { from, started, call: "provision" },
          shift(wait, offset),
        );
      }),
    },
  ];
  if (!options.keep) {
    tasks.push({
      title: "Deprovision everything and check nothing is left in Ceph, tgt or the TFTP root",
      task: timed("deprovision + check", async () => {
        const l = lab();
        for (const p of l.bmi.listProvisionings({ project })) {
          await l.bmi.deprovision({ project, node: p.node, deleteDisk: true, powerOff: true });
        }
        // Forced: a node powered off leaves its iSCSI session behind (no FIN from a dead machine on
        // the lab's real network; qemu's user-mode network closed it for the node).
        for (const d of l.bmi.listDisks({ project }))
          await l.bmi.deleteDisk({ project, disk: d.name, force: true });
        for (const image of l.bmi.listSnapshots({ project }))
          await l.bmi.removeImage({ project, image: image.image.name });
        for (const image of l.bmi.listImages({ project }))
          await l.bmi.removeImage({ project, image: image.name });
        const left = await l.leftovers();
        const count = left.images.length + left.targets.length + left.bootFiles.length;
        if (count > 0) throw new Error(`left behind: ${JSON.stringify(left)}`);
        const drift = await l.bmi.reconcile();
        if (drift.drift.length > 0) throw new Error(`reconcile found drift: ${JSON.stringify(drift.drift)}`);
        return "0 RBD images, 0 targets, 0 boot files left; reconcile: no drift";
      }),
    });
  }

  const runner: { run(context: Context): Promise<Context> } = options.json
    ? new Listr<Context, "silent">(tasks, { renderer: "silent", exitOnError: true })
    : new Listr<Context, "default", "simple">(tasks, {
        renderer: "default",
        fallbackRenderer: "simple",
        rendererOptions: { collapseSubtasks: false, showErrorMessage: true },
        exitOnError: true,
      });
  let failure: BmiError | undefined;
  try {
    await runner.run(ctx);
  } catch (error) {
    failure = toBmiError(error);
  }

  const keptLab = options.keep && !failure ? ctx.lab : undefined;
  if (!keptLab && !interrupted) {
    const started = performance.now();
    await ctx.lab?.stop();
    times.push({
      step: "teardown",
      ms: Math.round(performance.now() - started),
      detail: "daemons stopped by PID, lab dir removed",
    });
  }
  const total = times.reduce((sum, t) => sum + t.ms, 0);

  if (options.json) {
    console.log(
      JSON.stringify(
        {
          ok: !failure,
          error: failure?.toJSON(),
          steps: times,
          totalMs: total,
          boots: ctx.boots,
          network: ctx.lab?.network ?? null,
          lab: keptLab ? { dir: keptLab.dir, config: keptLab.configPath } : null,
        },
        null,
        2,
      ),
    );
  } else {
    console.log("");
    console.table(times.map((t) => ({ step: t.step, seconds: (t.ms / 1000).toFixed(2), detail: t.detail })));
    console.log(`total ${(total / 1000).toFixed(1)} s${failure ? `; FAILED: ${failure.message}` : ""}`);
    for (const line of ctx.bootOutput) console.log(`serial console of ${line}`);
    if (ctx.lab) console.log(`network: ${ctx.lab.network}, ${ctx.lab.networkReason ?? ctx.lab.describe()}`);
    if (keptLab) {
      console.log(`
The lab is still running (--keep). Use it:
  export BMI_CONFIG=${keptLab.configPath}
  CEPH_CONF=${keptLab.ceph.conf} rbd --id ${keptLab.ceph.clientId} ls ${keptLab.ceph.pool}
  tgtadm -C ${keptLab.tgtd.controlPort} --lld iscsi --mode target --op show
  curl -u ${keptLab.hilUser.name}:<password in bmi_config.cfg> ${keptLab.hil.url}/v0/project/${project}/nodes
  curl -u ${keptLab.hilUser.name}:<password> ${keptLab.hil.url}/v0/node/<node>/power_status -L   # its BMC, through HIL
  tail -f ${keptLab.console(keptLab.nodes[0]?.name ?? "node-01").path}   # a node's serial console
Stop it with Ctrl-C.`);
      await new Promise(() => {}); // held open until Ctrl-C, which tears the lab down
    }
  }
  return failure ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
