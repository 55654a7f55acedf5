// Benchmark 1 (not a test): provision + deprovision (deleteDisk) N nodes with the SDK
// (`bmi.provisionMany`) on a real lab (Ceph memstore, tgtd, HIL-compatible server with no action
// delay), beside a bash script that runs the same rbd / tgtadm command lines and writes the same
// boot files at the same concurrency (xargs -P). Runs alternate SDK and script, repeated; medians.
//   pnpm -s exec tsx bench/batch-provision.ts [--sizes 10,50,100] [--concurrency 1,4,8] [--rounds 2]
// The script's command lines are the SDK's own, recorded on a warm-up node and templated, so the
// two sides differ only in what the SDK runs besides them (listed in the output).
import { chmod, mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { type BmiEvent, createBmi, createExecaRunner } from "@bmi/core";
import { cephOptionsFromConfig, createCephStorage } from "@bmi/driver-ceph";
import { createTgtExport, tgtOptionsFromConfig } from "@bmi/driver-tgt";
import { type BmiLab, startBmiLab } from "@bmi/lab";
import { execa } from "execa";
import {
  isEssentialTgtadm,
  log,
  median,
  type Recorded,
  recordingRunner,
  round,
  stopOnSignal,
  table,
  timingRunner,
  writeResult,
} from "./lib.js";

const { values } = parseArgs({
  options: {
    sizes: { type: "string", default: "10,50,100" },
    concurrency: { type: "string", default: "1,4,8" },
    // Two rounds keep `pnpm bench` near 15 minutes on 2 shared cores (one round is about 5).
    rounds: { type: "string", default: "2" },
  },
});
const SIZES = values.sizes.split(",").map(Number);
const CONCURRENCY = values.concurrency.split(",").map(Number);
const ROUNDS = Number(values.rounds);
const MAX_NODES = Math.max(...SIZES);

const quote = (s: string) => `'${s.replaceAll("'", "'\\''")}'`;

/** A shell word for `arg`, with the warm-up disk's names replaced by "$RBD" (and its tid by "$TID"). */
function templated(arg: string, rbd: string, tid: string | undefined, previous: string | undefined): string {
  if (previous === "--tid" && tid !== undefined && arg === tid) return '"$TID"';
  return arg
    .split(rbd)
    .map((part) => (part === "" ? "" : quote(part)))
    .join('"$RBD"');
}

const isEssential = (c: Recorded) =>
  c.file.endsWith("rbd") ? c.args.includes("clone") || c.args.includes("rm") : isEssentialTgtadm(c);

const describe = (c: Recorded) =>
  c.file.endsWith("tgtadm")
    ? `tgtadm ${c.args[c.args.indexOf("--mode") + 1]} ${c.args[c.args.indexOf("--op") + 1]}`
    : `rbd ${c.args.find((a) => ["info", "ls", "clone", "rm", "snap", "flatten", "children"].includes(a))}`;

interface Cell {
  n: number;
  concurrency: number;
  sdkMs: number[];
  scriptMs: number[];
  sdkProvisionMs: number[];
  scriptProvisionMs: number[];
  controlPlaneMsPerNode: number[];
  commandsPerNode: number[];
}

type Timed = ReturnType<typeof timingRunner>;

/** The SDK under test: the lab's boot, isolation and store, Ceph and tgt over timed, recorded runners. */
function benchBmi(lab: BmiLab) {
  const storageRunner = timingRunner(createExecaRunner({ subsystem: "storage" }));
  const exportRunner = timingRunner(createExecaRunner({ subsystem: "export" }));
  const recorder = recordingRunner((file, args, options) =>
    (file.endsWith("tgtadm") ? exportRunner : storageRunner)(file, args, options),
  );
  const bmi = createBmi({
    storage: createCephStorage({ ...cephOptionsFromConfig(lab.config), runner: recorder }),
    export: createTgtExport(tgtOptionsFromConfig(lab.config, { runner: recorder })),
    boot: lab.drivers.boot,
    isolation: lab.drivers.isolation,
    store: lab.store,
    settings: lab.settings,
  });
  // Operation time (all of it) and time per step, summed over the run from the SDK's events.
  const meter = { opMs: 0, stepMs: {} as Record<string, number> };
  bmi.on((event: BmiEvent) => {
    if (event.type === "operation:finished") meter.opMs += event.durationMs;
    if (event.type === "step:finished")
      meter.stepMs[event.step] = (meter.stepMs[event.step] ?? 0) + event.durationMs;
  });
  return { bmi, recorder, runners: [storageRunner, exportRunner] as Timed[], meter };
}

type BenchBmi = ReturnType<typeof benchBmi>;

/** What one SDK provision + deprovision of a warm-up node ran: command lines and boot files. */
interface WarmUp {
  node: { name: string; mac: string };
  upCalls: Recorded[];
  downCalls: Recorded[];
  bootFiles: { rel: string; text: string; mode: number }[];
  /** The warm-up disk's RBD name and tgt tid, templated out of the script's lines. */
  rbdName: string;
  tid: string | undefined;
}

/** Warm-up node: records the SDK's command lines and boot files, which the script then replays. */
async function warmUp(lab: BmiLab, { bmi, recorder }: BenchBmi): Promise<WarmUp> {
  const { project, settings } = lab;
  const node = lab.nodes[MAX_NODES] ?? lab.nodes[0];
  if (!node) throw new Error("the lab has no nodes");
  recorder.take();
  const warm = await bmi.provision({ project, node: node.name, disk: `disk-${node.name}`, image: "golden" });
  const upCalls = recorder.take();
  const entry = await lab.drivers.boot.read(node.name);
  if (!entry) throw new Error("the warm-up node has no boot files");
  const bootFiles = await Promise.all(
    entry.files.map(async (rel) => {
      const path = join(lab.tftpRoot, rel);
      return { rel, text: await readFile(path, "utf8"), mode: (await stat(path)).mode & 0o777 };
    }),
  );
  await bmi.deprovision({ project, node: node.name, deleteDisk: true });
  const downCalls = recorder.take();
  const rbdName =
    (await lab.store.images.getById(warm.diskId))?.cephName ?? `${settings.uid}img${warm.diskId}`;
  const tidOf = (calls: Recorded[]) => {
    const made = calls.find((c) => c.args.includes("new") && c.args.includes("--targetname"));
    return made?.args[made.args.indexOf("--tid") + 1];
  };
  return { node, upCalls, downCalls, bootFiles, rbdName, tid: tidOf(upCalls) ?? tidOf(downCalls) };
}

/** The floor script's lines: the warm-up's essential commands and boot file writes, templated. */
function floorScript(warm: WarmUp): string {
  const { node, rbdName, tid } = warm;
  const line = (c: Recorded) =>
    [c.file, ...c.args].map((a, i, all) => templated(a, rbdName, tid, all[i - 1])).join(" ");
  const hyphenMac = node.mac.replaceAll(":", "-");
  const fileTemplate = (s: string) =>
    s
      .split(node.name)
      .map((p) =>
        p
          .split(hyphenMac)
          .map((q) => q.split(rbdName).map(quote).join('"$RBD"'))
          .join('"$MAC"'),
      )
      .join('"$NODE"');
  const writes = warm.bootFiles.map(
    (f) =>
      `f="$ROOT"/${fileTemplate(f.rel)}; printf '%s' ${fileTemplate(f.text)} > "$f.tmp.$$" && chmod ${f.mode.toString(8)} "$f.tmp.$$" && mv "$f.tmp.$$" "$f"`,
  );
  const removes = warm.bootFiles.map((f) => `rm -f "$ROOT"/${fileTemplate(f.rel)}`);
  return [
    "#!/bin/bash",
    "# The floor: the SDK's own rbd / tgtadm command lines and boot files, nothing else.",
    "set -euo pipefail",
    "what=$1 ROOT=$2 RBD=$3 TID=$4 NODE=$5 MAC=$6",
    'if [ "$what" = up ]; then',
    ...warm.upCalls.filter(isEssential).map((c) => `  ${line(c)} >/dev/null`),
    ...writes.map((w) => `  ${w}`),
    "else",
    ...removes.map((r) => `  ${r}`),
    ...warm.downCalls.filter(isEssential).map((c) => `  ${line(c)} >/dev/null`),
    "fi",
    "",
  ].join("\n");
}

/** Writes the floor script and its TFTP root; returns how to run it for the first `n` nodes. */
async function prepareFloor(lab: BmiLab, warm: WarmUp) {
  const scriptRoot = join(lab.dir, "script-tftp");
  const script = join(lab.dir, "floor.sh");
  await writeFile(script, floorScript(warm));
  await chmod(script, 0o755);
  for (const dir of new Set(warm.bootFiles.map((f) => join(scriptRoot, f.rel, ".."))))
    await mkdir(dir, { recursive: true });
  const extra = [...warm.upCalls, ...warm.downCalls].filter((c) => !isEssential(c)).map(describe);
  const floorCommands = warm.upCalls.filter(isEssential).length + warm.downCalls.filter(isEssential).length;
  log(
    `script: ${warm.upCalls.filter(isEssential).length} + ${warm.downCalls.filter(isEssential).length} commands per node; the SDK also runs: ${extra.join(", ") || "nothing"}`,
  );

  let scriptTid = 100_000;
  const runScript = async (what: "up" | "down", jobs: string[], concurrency: number) => {
    await execa("xargs", ["-P", String(concurrency), "-L", "1", "bash", script, what], {
      input: `${jobs.join("\n")}\n`,
      timeout: 900_000,
    });
  };
  const viaScript = async (n: number, concurrency: number, label: string) => {
    const jobs = lab.nodes.slice(0, n).map((node) => {
      scriptTid++;
      return `${scriptRoot} bench-${label}-${node.name} ${scriptTid} ${node.name} ${node.mac.replaceAll(":", "-")}`;
    });
    const started = performance.now();
    await runScript("up", jobs, concurrency);
    const provisionMs = performance.now() - started;
    await runScript("down", jobs, concurrency);
    return { totalMs: performance.now() - started, provisionMs };
  };
  return { script, extra, floorCommands, viaScript };
}

/** The SDK side of a cell: provisionMany, then deprovision at the same concurrency. */
function sdkSide(lab: BmiLab, { bmi, runners, meter }: BenchBmi, golden: string) {
  const { project } = lab;
  return async (n: number, concurrency: number) => {
    const nodes = lab.nodes.slice(0, n);
    for (const runner of runners) runner.reset();
    meter.opMs = 0;
    const started = performance.now();
    const results = await bmi.provisionMany(
      nodes.map((node) => ({ project, node: node.name, disk: `disk-${node.name}`, image: golden })),
      { concurrency },
    );
    const provisionMs = performance.now() - started;
    const failed = results.find((r) => !r.ok);
    if (failed && !failed.ok) throw failed.error;
    // Deprovision at the same concurrency (the SDK has no batch deprovision; this is its loop).
    let next = 0;
    const worker = async () => {
      for (let i = next++; i < nodes.length; i = next++) {
        const node = nodes[i];
        if (node) await bmi.deprovision({ project, node: node.name, deleteDisk: true });
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    const totalMs = performance.now() - started;
    const commandMs = runners.reduce((sum, runner) => sum + runner.totalMs(), 0);
    const calls = runners.reduce((sum, runner) => sum + runner.calls(), 0);
    return {
      totalMs,
      provisionMs,
      controlPlaneMsPerNode: (meter.opMs - commandMs) / n,
      commandsPerNode: calls / n,
    };
  };
}

type SdkSide = ReturnType<typeof sdkSide>;
type ScriptSide = Awaited<ReturnType<typeof prepareFloor>>["viaScript"];

/** Every (N, concurrency) cell, each measured once per round, SDK and script alternating. */
async function measure(viaSdk: SdkSide, viaScript: ScriptSide): Promise<Cell[]> {
  const cells: Cell[] = SIZES.flatMap((n) =>
    CONCURRENCY.map((concurrency) => ({
      n,
      concurrency,
      sdkMs: [],
      scriptMs: [],
      sdkProvisionMs: [],
      scriptProvisionMs: [],
      controlPlaneMsPerNode: [],
      commandsPerNode: [],
    })),
  );
  for (let r = 0; r < ROUNDS; r++) {
    for (const [i, cell] of cells.entries()) {
      log(`batch round ${r + 1}/${ROUNDS}: N=${cell.n}, concurrency ${cell.concurrency}`);
      const sdk = async () => {
        const s = await viaSdk(cell.n, cell.concurrency);
        cell.sdkMs.push(s.totalMs);
        cell.sdkProvisionMs.push(s.provisionMs);
        cell.controlPlaneMsPerNode.push(s.controlPlaneMsPerNode);
        cell.commandsPerNode.push(s.commandsPerNode);
      };
      const floor = async () => {
        const s = await viaScript(cell.n, cell.concurrency, `${r}-${i}`);
        cell.scriptMs.push(s.totalMs);
        cell.scriptProvisionMs.push(s.provisionMs);
      };
      // Alternate who goes first, so drift on the shared machine hits both sides alike.
      const order = (r + i) % 2 === 0 ? [sdk, floor] : [floor, sdk];
      for (const side of order) await side();
    }
  }
  return cells;
}

/** Neither side may leave images, targets or boot files behind (the golden image aside). */
async function checkLeftovers(lab: BmiLab, goldenCephName: string): Promise<void> {
  const all = await lab.leftovers();
  const left = { ...all, images: all.images.filter((name) => name !== goldenCephName) };
  const scriptLeft = (await lab.drivers.storage.list()).filter((name) => name.startsWith("bench-"));
  if (left.images.length + left.targets.length + left.bootFiles.length + scriptLeft.length > 0)
    throw new Error(`left behind: ${JSON.stringify({ ...left, scriptLeft })}`);
}

/** Medians per cell, and the ratios the goals are stated in. */
function summarise(cells: readonly Cell[]) {
  return cells.map((c) => {
    const sdk = median(c.sdkMs);
    const floor = median(c.scriptMs);
    return {
      n: c.n,
      concurrency: c.concurrency,
      sdkMs: round(sdk),
      scriptMs: round(floor),
      sdkMsPerNode: round(sdk / c.n, 1),
      scriptMsPerNode: round(floor / c.n, 1),
      ratio: round(sdk / floor, 3),
      provisionRatio: round(median(c.sdkProvisionMs) / median(c.scriptProvisionMs), 3),
      controlPlaneMsPerNode: round(median(c.controlPlaneMsPerNode), 1),
      commandsPerNode: round(median(c.commandsPerNode), 1),
      samples: { sdkMs: c.sdkMs.map((x) => round(x)), scriptMs: c.scriptMs.map((x) => round(x)) },
    };
  });
}

type Row = ReturnType<typeof summarise>[number];

function printReport(
  rows: readonly Row[],
  floor: { extra: string[]; floorCommands: number },
  stepMs: Record<string, number>,
) {
  process.stdout.write(
    `\n### 1. Batch provision + deprovision (deleteDisk), real lab, median of ${ROUNDS} (goals: SDK/script <= 1.10; control plane <= 50 ms/node at N=100)\n\n${table(
      [
        "N",
        "conc.",
        "SDK ms",
        "script ms",
        "SDK ms/node",
        "script ms/node",
        "SDK/script",
        "(provision only)",
        "control plane ms/node",
        "commands/node SDK (script)",
      ],
      rows.map((r) => [
        r.n,
        r.concurrency,
        r.sdkMs,
        r.scriptMs,
        r.sdkMsPerNode,
        r.scriptMsPerNode,
        `${r.ratio}${r.ratio <= 1.1 ? "" : " (missed)"}`,
        r.provisionRatio,
        `${r.controlPlaneMsPerNode}${r.n === 100 && r.controlPlaneMsPerNode > 50 ? " (missed)" : ""}`,
        `${r.commandsPerNode} (${floor.floorCommands})`,
      ]),
    )}\n\nThe SDK runs besides the script's commands, per node: ${floor.extra.join(", ") || "nothing"}.\n` +
      `Time in SDK steps over the whole run (ms): ${Object.entries(stepMs)
        .sort((a, b) => b[1] - a[1])
        .map(([k, v]) => `${k} ${round(v)}`)
        .join(", ")}\n`,
  );
}

/** A lab with a node per measured one plus the warm-up node; how long it and its parts took. */
async function startBenchLab() {
  const parts: Record<string, number> = {};
  const started = performance.now();
  const lab: BmiLab = await startBmiLab({
    nodes: MAX_NODES + 1,
    hilActionDelayMs: 0,
    onProgress: (part, ms) => {
      parts[part] = ms;
    },
  });
  stopOnSignal(lab);
  return { lab, timing: { startMs: round(performance.now() - started), parts } };
}

async function main() {
  const { lab, timing } = await startBenchLab();
  try {
    const golden = await lab.createGoldenImage("golden");
    const sdk = benchBmi(lab);
    const warm = await warmUp(lab, sdk);
    const floor = await prepareFloor(lab, warm);
    const cells = await measure(sdkSide(lab, sdk, golden.name), floor.viaScript);
    await checkLeftovers(lab, golden.cephName);
    const rows = summarise(cells);
    const { stepMs } = sdk.meter;
    printReport(rows, floor, stepMs);
    const file = await writeResult("batch-provision", {
      sizes: SIZES,
      concurrency: CONCURRENCY,
      rounds: ROUNDS,
      goal: { ratio: 1.1, controlPlaneMsPerNodeAtN100: 50 },
      lab: timing,
      script: await readFile(floor.script, "utf8"),
      sdkExtraCommandsPerNode: floor.extra,
      stepMs: Object.fromEntries(Object.entries(stepMs).map(([k, v]) => [k, round(v)])),
      results: rows,
    });
    log(`wrote ${file}`);
  } finally {
    await lab.stop();
  }
}

await main();
