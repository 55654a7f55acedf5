// Benchmark (issue 18, not a test): RSS of one process that provisions N nodes (default 1,000)
// with the librbd back end on a whole lab (Ceph memstore, tgtd, HIL-compatible server, boot files),
// sampled every N/10 nodes while they stay provisioned, then after deprovisioning them all. The FFI
// and the one cluster connection must not grow per call; what does grow is the work itself (the
// SQLite rows and tgtd's targets live outside the JS heap or are small).
//   pnpm -s exec tsx bench/provision-rss.ts [--nodes 1000] [--concurrency 8]
import { parseArgs } from "node:util";
import { startBmiLab } from "@bmi/lab";
import { round, stopOnSignal, table, writeResult } from "./lib.js";

process.env.UV_THREADPOOL_SIZE ??= "16";
const { values } = parseArgs({
  options: { nodes: { type: "string", default: "1000" }, concurrency: { type: "string", default: "8" } },
});
const N = Number(values.nodes);
const CONCURRENCY = Number(values.concurrency);
const mib = () => round(process.memoryUsage.rss() / 2 ** 20, 1);
const heap = () => round(process.memoryUsage().heapUsed / 2 ** 20, 1);

const lab = await startBmiLab({
  nodes: N,
  hilActionDelayMs: 0,
  configOverrides: { fs: { client: "librbd" } },
});
stopOnSignal(lab);
try {
  const golden = await lab.createGoldenImage("golden");
  const samples: Array<{ phase: string; nodes: number; rssMiB: number; heapMiB: number }> = [];
  const sample = (phase: string, nodes: number) => {
    global.gc?.();
    samples.push({ phase, nodes, rssMiB: mib(), heapMiB: heap() });
  };
  sample("start", 0);
  const step = Math.max(1, Math.floor(N / 10));
  for (let done = 0; done < N; done += step) {
    const batch = lab.nodes.slice(done, done + step);
    const results = await lab.bmi.provisionMany(
      batch.map((node) => ({
        project: lab.project,
        node: node.name,
        disk: `d-${node.name}`,
        image: golden.name,
      })),
      { concurrency: CONCURRENCY },
    );
    const failed = results.find((r) => !r.ok);
    if (failed && !failed.ok) throw failed.error;
    sample("provisioned", done + batch.length);
  }
  for (let done = 0; done < N; done += step)
    await Promise.all(
      lab.nodes
        .slice(done, done + step)
        .map((node) => lab.bmi.deprovision({ project: lab.project, node: node.name, deleteDisk: true })),
    );
  sample("all deprovisioned", 0);
  const left = await lab.leftovers();
  const extra = left.images.filter((name) => name !== golden.cephName);
  if (extra.length + left.targets.length + left.bootFiles.length > 0)
    throw new Error(`left behind: ${JSON.stringify(left)}`);
  await writeResult("provision-rss", { nodes: N, concurrency: CONCURRENCY, samples });
  process.stdout.write(
    `\n### RSS while provisioning ${N} nodes (librbd back end, concurrency ${CONCURRENCY})\n\n${table(
      ["phase", "nodes provisioned", "RSS MiB", "JS heap MiB"],
      samples.map((s) => [s.phase, s.nodes, s.rssMiB, s.heapMiB]),
    )}\n`,
  );
  const peak = Math.max(...samples.map((s) => s.rssMiB));
  process.stdout.write(
    `rss provision N=${N} start=${samples[0]?.rssMiB} MiB peak=${peak} MiB end=${samples.at(-1)?.rssMiB} MiB\n`,
  );
} finally {
  await lab.stop();
}
