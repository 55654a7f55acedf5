#!/usr/bin/env node
// The main job: a whole BMI on one machine. Brings up Ceph, tgtd and a HIL-compatible server,
// makes a golden image, provisions a node and powers it through HIL (→ the node's obmd-compatible
// endpoint → QMP → its qemu), waits until BMI sees it boot from its iSCSI clone, snapshots the
// node's disk, provisions and boots a second node from the snapshot, then tears everything down.
// By default the image is Debian 12 (demo/debian.ts): the OS itself says where its root is and
// the second node reads the file the first one wrote. `--image tiny` (demo/tiny.ts) boots the
// lab's boot-sector image instead. The demo starts no VM itself: only the nodes' BMCs do.
import { accessSync, constants, statSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { type BmiError, toBmiError } from "@bmi/core";
import { startBmiLab } from "@bmi/lab";
import { Listr } from "listr2";
import { z } from "zod";
import { debianImageTask, debianTasks } from "./demo/debian.js";
import {
  cleanupTask,
  createRun,
  type DemoContext,
  type DemoRun,
  type DemoTask,
  PROJECT,
  timed,
} from "./demo/run.js";
import { tinyTasks } from "./demo/tiny.js";

const USAGE = `Usage: npm run demo -- [--image debian|tiny] [--image-cache DIR] [--nodes N] [--keep] [--json]

  --image debian     (default) Debian 12 built from Debian packages, root on the node's iSCSI
                     clone: node-01 boots with BIOS and writes a file, its disk is snapshotted,
                     node-02 boots from the snapshot with UEFI and reads the file
  --image tiny       the fast boot-sector image (prints a marker once iPXE has read the clone)
  --image-cache DIR  where the Debian image is built and reused (default $BMI_DEBIAN_IMAGE_CACHE,
                     else ~/.cache/bmi/images)
  --nodes N          provision N nodes in one batch (default 1; the first one boots)
  --keep             leave the lab running at the end and print how to use it
  --json             print one JSON summary instead of live progress
  --help             this text`;

/** Why `dir` cannot be a cache directory (it must be one, or be creatable), or undefined. */
function cacheDirProblem(dir: string): string | undefined {
  if (dir.includes("\0")) return "contains a NUL byte";
  for (let path = resolve(dir); ; path = dirname(path)) {
    let found: ReturnType<typeof statSync>;
    try {
      found = statSync(path, { throwIfNoEntry: false });
    } catch {
      return `${path} is below something that is not a directory`; // ENOTDIR
    }
    if (found && !found.isDirectory()) return `${path} is not a directory`;
    if (found) {
      try {
        accessSync(path, constants.W_OK | constants.X_OK);
        return undefined;
      } catch {
        return `${path} is not writable`;
      }
    }
    if (dirname(path) === path) return "no parent directory exists";
  }
}

const Options = z
  .object({
    image: z.enum(["debian", "tiny"], { error: "--image must be debian or tiny" }),
    "image-cache": z.string().optional(),
    nodes: z.coerce
      .number()
      .int()
      .min(1, { error: "--nodes must be at least 1" })
      .max(64, { error: "--nodes must be at most 64" }),
    keep: z.boolean(),
    json: z.boolean(),
  })
  .superRefine((o, ctx) => {
    if (o.image === "tiny" && o["image-cache"] !== undefined)
      ctx.addIssue({
        code: "custom",
        message: "--image-cache is for --image debian (tiny is built in the lab)",
      });
    const [name, dir] = cacheDirSource(o["image-cache"]);
    const problem = o.image === "debian" ? cacheDirProblem(dir) : undefined;
    if (problem) ctx.addIssue({ code: "custom", message: `${name} ${JSON.stringify(dir)}: ${problem}` });
  })
  .transform((o) => ({ ...o, cacheDir: resolve(cacheDirSource(o["image-cache"])[1]) }));
type Options = z.output<typeof Options>;

/** The Debian image's cache directory and where it came from, for messages. */
function cacheDirSource(flag: string | undefined): [string, string] {
  if (flag !== undefined) return ["--image-cache", flag];
  const env = process.env.BMI_DEBIAN_IMAGE_CACHE;
  if (env) return ["BMI_DEBIAN_IMAGE_CACHE", env];
  return ["the default cache directory", join(homedir(), ".cache", "bmi", "images")];
}

/** The options, or the exit code when there is nothing to run (help, bad input). */
function parseOptions(): Options | number {
  const { values } = parseArgs({
    options: {
      image: { type: "string", default: "debian" },
      "image-cache": { type: "string" },
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
  return parsed.data;
}

/** Brings up the lab: the one place the demo starts it. */
function labTask(run: DemoRun): DemoTask {
  const labNodes = Math.max(2, run.nodes + 1);
  return {
    title: "Bring up the lab (Ceph, tgtd, HIL-compatible server, TFTP root, SQLite, bmi_config.cfg)",
    task: timed(run, "lab", async (task) => {
      run.ctx.lab = await startBmiLab({
        project: PROJECT,
        nodes: labNodes,
        network: "auto", // the lab's own namespace, bridges and dnsmasq where it can (root)
        onProgress: (part, ms) => {
          task.output = `${part} up in ${ms} ms`;
        },
      });
      return `up in ${run.ctx.lab.dir}`;
    }),
  };
}

/** Every step in order: the image's own, then the teardown check unless the lab is kept. */
function demoTasks(run: DemoRun, options: Options): DemoTask[] {
  const steps =
    options.image === "tiny"
      ? [labTask(run), ...tinyTasks(run)]
      : [debianImageTask(run, options.cacheDir), labTask(run), ...debianTasks(run)];
  return options.keep ? steps : [...steps, cleanupTask(run)];
}

/** Runs the tasks with live progress (or silently for --json); the failure, if one. */
async function runTasks(tasks: DemoTask[], ctx: DemoContext, json: boolean): Promise<BmiError | undefined> {
  const runner: { run(context: DemoContext): Promise<DemoContext> } = json
    ? new Listr<DemoContext, "silent">(tasks, { renderer: "silent", exitOnError: true })
    : new Listr<DemoContext, "default", "simple">(tasks, {
        renderer: "default",
        fallbackRenderer: "simple",
        rendererOptions: { collapseSubtasks: false, showErrorMessage: true },
        exitOnError: true,
      });
  try {
    await runner.run(ctx);
    return undefined;
  } catch (error) {
    return toBmiError(error);
  }
}

/** The image the run used, for the JSON summary. */
function imageSummary(run: DemoRun) {
  const image = run.ctx.image;
  if (!image) return { kind: "tiny" };
  return { kind: "debian", key: image.key, cacheHit: image.cacheHit, ms: image.ms, path: image.path };
}

/** Prints the JSON summary, or the step table, the boots and (--keep) how to use the lab. */
async function report(run: DemoRun, options: Options, failure: BmiError | undefined): Promise<void> {
  const { ctx, times } = run;
  const keptLab = options.keep && !failure ? ctx.lab : undefined;
  const project = PROJECT;
  const total = times.reduce((sum, t) => sum + t.ms, 0);
  if (options.json) {
    console.log(
      JSON.stringify(
        {
          ok: !failure,
          error: failure?.toJSON(),
          image: imageSummary(run),
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
}

async function main(): Promise<number> {
  const options = parseOptions();
  if (typeof options === "number") return options;
  const run = createRun(options.nodes);

  // Tear down on Ctrl-C as on failure: nothing of the lab may outlive the demo.
  let interrupted = false;
  const onSignal = () => {
    interrupted = true;
    void run.ctx.lab?.stop().finally(() => process.exit(130));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);

  const failure = await runTasks(demoTasks(run, options), run.ctx, options.json);
  const keepLab = options.keep && !failure;
  if (!keepLab && !interrupted && run.ctx.lab) {
    const started = performance.now();
    await run.ctx.lab.stop();
    run.times.push({
      step: "teardown",
      ms: Math.round(performance.now() - started),
      detail: "daemons stopped by PID, lab dir removed",
    });
  }
  await report(run, options, failure);
  return failure ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
