/**
 * A BMI process of its own, wired from a bmi_config.cfg exactly as a deployment would be, for the
 * crash and two-process tests. Run with tsx on the workspace's sources:
 *
 *   TSX_TSCONFIG_PATH=test/reliability/tsconfig.child.json node --import tsx test/reliability/child.ts <cmd> <config> ...
 *
 *   provision <config> <project> <node> <disk> <image> <startAtEpochMs>
 *       waits until startAt (so two processes start together), provisions, prints one JSON line
 *   hold <config> <project> <node> <disk> <image> [step]
 *       provisions but stops forever before `step` (default "write boot files"), holding the node
 *       lock, after printing "holding"
 *   batch <config> <project> <count> <image>
 *       provisions nodes node-01..node-<count> with disks bd-<node>, 4 at a time; prints "step" per finished step
 */
import { type Bmi, loadConfig, type StepHook } from "@bmi/core";
import { createBmiFromConfig } from "@bmi/wiring";

/** Wired by the composition root, exactly as the CLI wires a deployment. */
function open(configPath: string, beforeStep?: StepHook): Bmi {
  const { config } = loadConfig({ path: configPath });
  return createBmiFromConfig(config, { env: {}, beforeStep }).bmi;
}

const print = (value: unknown) => process.stdout.write(`${JSON.stringify(value)}\n`);
const outcome = (error: unknown) => {
  const e = error as { code?: string; message?: string };
  return { ok: false, code: e.code ?? "unknown", message: e.message ?? String(error) };
};

async function main(argv: string[]): Promise<void> {
  const [command, configPath, ...rest] = argv;
  if (!configPath) throw new Error("usage: child.ts <command> <config> ...");
  if (command === "provision") {
    const [project, node, disk, image, startAt] = rest as [string, string, string, string, string];
    const bmi = open(configPath);
    const wait = Number(startAt) - Date.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    try {
      await bmi.provision({ project, node, disk, image });
      print({ ok: true });
    } catch (error) {
      print(outcome(error));
    }
    return;
  }
  if (command === "hold") {
    const [project, node, disk, image, before = "write boot files"] = rest as [
      string,
      string,
      string,
      string,
      string?,
    ];
    const bmi = open(configPath, async ({ step }) => {
      if (step !== before) return;
      print({ holding: true });
      await new Promise(() => {}); // until SIGKILL
    });
    await bmi.provision({ project, node, disk, image });
    return;
  }
  if (command === "batch") {
    const [project, count, image] = rest as [string, string, string];
    const bmi = open(configPath);
    bmi.on((event) => {
      if (event.type === "step:finished") print({ step: event.step });
    });
    const nodes = Array.from({ length: Number(count) }, (_, i) => `node-${String(i + 1).padStart(2, "0")}`);
    const results = await bmi.provisionMany(
      nodes.map((node) => ({ project, node, disk: `bd-${node}`, image })),
      { concurrency: 4 },
    );
    print({
      done: results.filter((r) => r.ok).length,
      failed: results.flatMap((r) => (r.ok ? [] : [{ node: r.node, ...outcome(r.error) }])),
    });
    return;
  }
  throw new Error(`unknown command ${command}`);
}

main(process.argv.slice(2)).then(
  () => process.exit(0),
  (error: unknown) => {
    print(outcome(error));
    process.exit(1);
  },
);
