// Benchmark 5 (not a test): how long a whole lab takes to come up (Ceph + tgtd + HIL-compatible
// server + TFTP root + config + BMI) and to stop, and the whole demo with its VM boots
// (`node packages/examples/dist/demo.js --json`), alternating, repeated; medians.
//   pnpm -s exec tsx bench/lab-start.ts [--rounds 3] [--demo-rounds 1]
import { join } from "node:path";
import { parseArgs } from "node:util";
import { startBmiLab } from "@bmi/lab";
import { execa } from "execa";
import { log, median, round, stopOnSignal, table, writeResult } from "./lib.js";

const { values } = parseArgs({
  options: { rounds: { type: "string", default: "3" }, "demo-rounds": { type: "string", default: "1" } },
});
const ROUNDS = Number(values.rounds);
const DEMO_ROUNDS = Number(values["demo-rounds"]);
const DEMO = join(import.meta.dirname, "..", "packages", "examples", "dist", "demo.js");

interface DemoSummary {
  ok: boolean;
  totalMs: number;
  steps: { step: string; ms: number }[];
  error?: { message: string };
}

const starts: { totalMs: number; stopMs: number; parts: Record<string, number> }[] = [];
const demos: DemoSummary[] = [];
const demoWallMs: number[] = [];

async function labOnce() {
  const parts: Record<string, number> = {};
  const started = performance.now();
  const lab = await startBmiLab({ nodes: 2, onProgress: (part, ms) => (parts[part] = ms) });
  const release = stopOnSignal(lab);
  const totalMs = performance.now() - started;
  const stopping = performance.now();
  await lab.stop();
  release();
  starts.push({ totalMs, stopMs: performance.now() - stopping, parts });
}

async function demoOnce() {
  const started = performance.now();
  const run = await execa("node", [DEMO, "--json"], { reject: false, timeout: 900_000 });
  demoWallMs.push(performance.now() - started);
  const summary = JSON.parse(run.stdout) as DemoSummary;
  if (!summary.ok) throw new Error(`the demo failed: ${summary.error?.message ?? run.stderr}`);
  demos.push(summary);
}

for (let r = 0; r < Math.max(ROUNDS, DEMO_ROUNDS); r++) {
  log(`lab start round ${r + 1}`);
  if (r < ROUNDS) await labOnce();
  if (r < DEMO_ROUNDS) await demoOnce();
}

const partNames = [...new Set(starts.flatMap((s) => Object.keys(s.parts)))];
const labRows: (string | number)[][] = [
  ...partNames.map((p) => [p, round(median(starts.map((s) => s.parts[p] ?? 0)))]),
  ["whole lab up", round(median(starts.map((s) => s.totalMs)))],
  ["lab stop", round(median(starts.map((s) => s.stopMs)))],
];
const stepNames = [...new Set(demos.flatMap((d) => d.steps.map((s) => s.step)))];
const demoRows: (string | number)[][] = [
  ...stepNames.map((name) => [
    name,
    round(median(demos.map((d) => d.steps.find((s) => s.step === name)?.ms ?? 0))),
  ]),
  ["demo total (its own sum)", round(median(demos.map((d) => d.totalMs)))],
  ["demo wall time (process)", round(median(demoWallMs))],
];
process.stdout.write(
  `\n### 5. Lab start (median of ${ROUNDS}) and the whole demo with its VM boots (median of ${DEMO_ROUNDS})\n\n${table(
    ["lab part", "ms"],
    labRows,
  )}\n\n${table(["demo step", "ms"], demoRows)}\n`,
);
const file = await writeResult("lab-start", {
  rounds: ROUNDS,
  demoRounds: DEMO_ROUNDS,
  starts: starts.map((s) => ({ ...s, totalMs: round(s.totalMs), stopMs: round(s.stopMs) })),
  demos: demos.map((d, i) => ({ totalMs: d.totalMs, wallMs: round(demoWallMs[i] ?? 0), steps: d.steps })),
});
log(`wrote ${file}`);
