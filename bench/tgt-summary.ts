// Renders the newest bench/results/tgt-export-*.json (written by the tgt developer's
// bench/tgt-export.ts) as the Markdown table `pnpm bench` prints for benchmark 2.
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { median, round, table } from "./lib.js";

interface TgtResult {
  samples: number;
  sizes: number[];
  results: Record<string, { n: number; ours: number[]; bmi: number[] }>;
  ratio: { ours: number; bmi: number };
  goal: number;
}

const dir = join(import.meta.dirname, "results");
const newest = (await readdir(dir))
  .filter((f) => f.startsWith("tgt-export-") && f.endsWith(".json"))
  .sort()
  .at(-1);
if (!newest) throw new Error("no tgt-export result; run bench/tgt-export.ts first");
// Under `pnpm bench`, a result older than this run would be a stale figure: refuse it.
const since = Number(process.env.BENCH_STARTED_MS ?? 0);
if ((await stat(join(dir, newest))).mtimeMs < since) throw new Error(`${newest} predates this run`);
const r = JSON.parse(await readFile(join(dir, newest), "utf8")) as TgtResult;
const rows = r.sizes.map((n) => {
  const cell = r.results[String(n)] ?? { n, ours: [], bmi: [] };
  const ours = median(cell.ours);
  const bmi = median(cell.bmi);
  return [n, round(ours, 1), round(bmi, 1), round(bmi / ours, 1)];
});
const [small, large] = r.sizes;
process.stdout.write(
  `\n### 2. Export cost per target as targets grow (median of ${r.samples}, interleaved; goal: ours at ${large} / ours at ${small} <= ${r.goal})\n\n${table(
    ["existing targets", "ours (tgtadm) ms", "BMI (conf.d + tgt-admin --execute) ms", "BMI / ours"],
    rows,
  )}\n\ngrowth ${large}/${small}: ours ${round(r.ratio.ours, 2)} (${r.ratio.ours <= r.goal ? "met" : "missed"}), tgt-admin --execute ${round(r.ratio.bmi, 2)} (from ${newest})\n`,
);
