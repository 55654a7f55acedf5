// Benchmark 3 (not a test): snapshot a node's disk after writing 1 GiB into its clone, and time
// until the new image can be cloned (goal <= 1 s; the original BMI took 11.65 s because it
// flattened first). Measures snapshotDisk with flatten "later" (the default) beside "now" (the
// original's way) in the same run, alternating, plus what the deferred flatten costs afterwards.
//   pnpm -s exec tsx bench/snapshot.ts [--gib 1] [--rounds 3]
import { parseArgs } from "node:util";
import { startBmiLab } from "@bmi/lab";
import { execa } from "execa";
import { log, median, round, stopOnSignal, table, writeResult } from "./lib.js";

const { values } = parseArgs({
  options: { gib: { type: "string", default: "1" }, rounds: { type: "string", default: "3" } },
});
const GIB = Number(values.gib);
const ROUNDS = Number(values.rounds);

const lab = await startBmiLab({ nodes: 1, hilActionDelayMs: 0 });
stopOnSignal(lab);
try {
  const { bmi, project, ceph } = lab;
  await lab.createGoldenImage("golden");
  const disk = await bmi.createDisk({ project, image: "golden", disk: "node-disk" });
  const rbd = (args: string[]) =>
    execa("rbd", ["--conf", ceph.conf, "--id", ceph.clientId, "--keyring", ceph.keyring, ...args], {
      timeout: 600_000,
    });
  const spec = `${ceph.pool}/${disk.cephName}`;
  // The node writes GIB GiB into its root disk (the clone); memstore keeps it in RAM, deleted at the end.
  await rbd(["resize", "--no-progress", "--size", `${GIB * 1024 + 64}M`, spec]);
  const writeStarted = performance.now();
  await rbd([
    "bench",
    "--io-type",
    "write",
    "--io-size",
    "4M",
    "--io-threads",
    "4",
    "--io-total",
    `${GIB}G`,
    "--io-pattern",
    "seq",
    spec,
  ]);
  const writeMs = performance.now() - writeStarted;
  log(`wrote ${GIB} GiB into ${disk.cephName} in ${round(writeMs)} ms`);

  const samples = {
    later: [] as number[],
    now: [] as number[],
    cloneLater: [] as number[],
    cloneNow: [] as number[],
    flattenPending: [] as number[],
  };
  const once = async (mode: "now" | "later", r: number) => {
    const name = `snap-${mode}-${r}`;
    const started = performance.now();
    const image = await bmi.snapshotDisk({ project, disk: "node-disk", snapshot: name, flatten: mode });
    const snapshotMs = performance.now() - started;
    const cloneStarted = performance.now();
    const clone = await bmi.createDisk({ project, image: name, disk: `from-${name}` });
    const cloneMs = performance.now() - cloneStarted;
    samples[mode].push(snapshotMs);
    samples[mode === "now" ? "cloneNow" : "cloneLater"].push(cloneMs);
    if (mode === "later") {
      const flattenStarted = performance.now();
      const flattened = await bmi.flattenPending();
      samples.flattenPending.push(performance.now() - flattenStarted);
      if (flattened !== 1) throw new Error(`flattenPending flattened ${flattened} images, expected 1`);
    }
    await bmi.deleteDisk({ project, disk: clone.name });
    await bmi.removeImage({ project, image: image.name });
  };
  for (let r = 0; r < ROUNDS; r++) {
    log(`snapshot round ${r + 1}/${ROUNDS}`);
    for (const mode of r % 2 === 0 ? (["later", "now"] as const) : (["now", "later"] as const))
      await once(mode, r);
  }
  await bmi.deleteDisk({ project, disk: "node-disk" });
  const images = await bmi.listAllImages();
  const left = (await lab.leftovers()).images.filter((n) => !images.some((i) => i.cephName === n));
  if (left.length > 0) throw new Error(`left behind: ${left.join(", ")}`);

  const later = median(samples.later) + median(samples.cloneLater);
  const now = median(samples.now) + median(samples.cloneNow);
  const rows = [
    [
      "flatten later (default)",
      round(median(samples.later)),
      round(median(samples.cloneLater)),
      round(later),
      later <= 1000 ? "met" : "missed",
      round(median(samples.flattenPending)),
    ],
    [
      "flatten now (the original's way)",
      round(median(samples.now)),
      round(median(samples.cloneNow)),
      round(now),
      now <= 1000 ? "met" : "missed",
      "-",
    ],
  ];
  process.stdout.write(
    `\n### 3. Snapshot of a node's disk after writing ${GIB} GiB into it (median of ${ROUNDS}; goal <= 1,000 ms until the new image is cloned; original BMI 11,650 ms)\n\n${table(
      ["snapshotDisk", "snapshot ms", "clone ms", "until cloned ms", "goal", "deferred flattenPending ms"],
      rows,
    )}\n\nnow / later: ${round(now / later, 1)}x; writing the ${GIB} GiB took ${round(writeMs)} ms (rbd bench, 4 MiB writes)\n`,
  );
  const file = await writeResult("snapshot", {
    gib: GIB,
    rounds: ROUNDS,
    goal: { untilClonedMs: 1000, originalMs: 11650 },
    writeMs: round(writeMs),
    samples: Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, v.map((x) => round(x))])),
    untilClonedMs: { later: round(later), now: round(now) },
  });
  log(`wrote ${file}`);
} finally {
  await lab.stop();
}
