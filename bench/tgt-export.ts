// Per-target export cost at 10 and at 1,000 existing targets: our tgt driver (tgtadm per target)
// beside the original BMI's way (a conf.d file per target plus `tgt-admin --execute`), measured in
// one run, interleaved, against two private tgtds (one per size). Not a test: prints a table, writes JSON.
//
//   pnpm -s exec tsc -b && pnpm exec tsx bench/tgt-export.ts [--samples 25] [--large 1000]
//
// Both ways export the same kind of target (file backing, LUN 1, initiator-address ALL). Filler
// targets use tgt's `null` backing store, which starts no I/O threads (an rdwr LUN starts 16), so
// 1,000 of them fit on a small machine; the control path the two ways exercise is the same.
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { createTgtExport } from "@bmi/driver-tgt";
import { makeTempDir, startTgtd, type TgtdHandle } from "@bmi/lab";
import { execa } from "execa";

const { values } = parseArgs({
  options: { samples: { type: "string", default: "25" }, large: { type: "string", default: "1000" } },
});
const SAMPLES = Number(values.samples);
const SIZES = [10, Number(values.large)];
const IQN = "iqn.2026-11.org.bmi.bench";

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
};
const p90 = (xs: number[]) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * 0.9))] ?? 0;

async function tgtadmOk(tgtd: TgtdHandle, args: string[]) {
  const r = await tgtd.tgtadm(["--lld", "iscsi", ...args]);
  if (r.exitCode !== 0) throw new Error(`tgtadm ${args.join(" ")}: ${r.stderr}`);
}

/** BMI's conf.d file (spec §4.5), with a file backing instead of rbd so both ways serve the same thing. */
const bmiConf = (name: string, backing: string) =>
  `<target ${name}>\n    driver iscsi\n    backing-store ${backing}\n    initiator-address ALL\n</target>\n`;

interface Rig {
  n: number;
  tgtd: TgtdHandle;
  confDir: string;
  mainConf: string;
  driver: ReturnType<typeof createTgtExport>;
}

/** A private tgtd holding `n` filler targets, with BMI's conf.d describing the same targets. */
async function rig(n: number, dir: string, disk: string): Promise<Rig> {
  await mkdir(dir);
  const tgtd = await startTgtd({ dir });
  const confDir = join(dir, "conf.d");
  const mainConf = join(dir, "targets.conf");
  await mkdir(confDir);
  await writeFile(mainConf, `default-driver iscsi\ninclude ${confDir}/*.conf\n`);
  for (let i = 0; i < n; i++) {
    const name = `${IQN}:filler-${i}`;
    const tid = String(100_000 + i); // far from the tids either way allocates
    await tgtadmOk(tgtd, ["--mode", "target", "--op", "new", "--tid", tid, "--targetname", name]);
    await tgtadmOk(tgtd, [
      "--mode",
      "logicalunit",
      "--op",
      "new",
      "--tid",
      tid,
      "--lun",
      "1",
      "--bstype",
      "null",
      "--backing-store",
      "None",
    ]);
    await tgtadmOk(tgtd, ["--mode", "target", "--op", "bind", "--tid", tid, "--initiator-address", "ALL"]);
    await writeFile(join(confDir, `filler-${i}.conf`), bmiConf(name, disk));
  }
  const driver = createTgtExport({ portal: tgtd.portal, port: tgtd.port, controlPort: tgtd.controlPort });
  return { n, tgtd, confDir, mainConf, driver };
}

async function oursOnce(r: Rig, label: string, disk: string): Promise<number> {
  const target = `${IQN}:ours-${label}`;
  const started = performance.now();
  await r.driver.export({ target, backing: { kind: "file", path: disk }, access: { initiators: "ALL" } });
  const ms = performance.now() - started;
  await r.driver.unexport(target, { force: true });
  return ms;
}

async function bmiOnce(r: Rig, label: string, disk: string): Promise<number> {
  const target = `${IQN}:bmi-${label}`;
  const conf = join(r.confDir, `bmi-${label}.conf`);
  const port = String(r.tgtd.controlPort);
  const started = performance.now();
  await writeFile(conf, bmiConf(target, disk));
  const run = await execa("tgt-admin", ["--execute", "--conf", r.mainConf, "--control-port", port], {
    reject: false,
  });
  const ms = performance.now() - started;
  if (run.exitCode !== 0) throw new Error(`tgt-admin --execute failed: ${run.stderr || run.stdout}`);
  await rm(conf);
  await execa("tgt-admin", ["--delete", target, "--force", "--control-port", port]);
  return ms;
}

async function main() {
  const work = await makeTempDir("bench-tgt");
  const disk = join(work.path, "disk.img");
  await execa("truncate", ["-s", "4M", disk]);
  const rigs: Rig[] = [];
  const results: Record<string, { n: number; ours: number[]; bmi: number[] }> = {};
  try {
    for (const n of SIZES) {
      rigs.push(await rig(n, join(work.path, `n${n}`), disk));
      results[String(n)] = { n, ours: [], bmi: [] };
    }
    process.stderr.write(`daemons ready with ${SIZES.join(" and ")} targets\n`);
    // Both sizes and both ways interleaved, order rotated, so load from other work on the
    // machine hits all four alike; two warm-up rounds are discarded.
    for (let i = -2; i < SAMPLES; i++) {
      const steps = rigs.flatMap((r) => [
        async () => {
          const ms = await oursOnce(r, `${i + 2}`, disk);
          if (i >= 0) results[String(r.n)]?.ours.push(ms);
        },
        async () => {
          const ms = await bmiOnce(r, `${i + 2}`, disk);
          if (i >= 0) results[String(r.n)]?.bmi.push(ms);
        },
      ]);
      const shift = ((i % steps.length) + steps.length) % steps.length;
      for (const step of [...steps.slice(shift), ...steps.slice(0, shift)]) await step();
    }
  } finally {
    for (const r of rigs) await r.tgtd.stop();
    await work.remove();
  }

  const [small, large] = SIZES.map((n) => results[String(n)]) as [
    { n: number; ours: number[]; bmi: number[] },
    { n: number; ours: number[]; bmi: number[] },
  ];
  const row = (label: string, r: { n: number; ours: number[]; bmi: number[] }) =>
    `${label.padEnd(22)} ${median(r.ours).toFixed(1).padStart(9)} ${p90(r.ours).toFixed(1).padStart(9)} ${median(r.bmi).toFixed(1).padStart(11)} ${p90(r.bmi).toFixed(1).padStart(9)} ${(median(r.bmi) / median(r.ours)).toFixed(1).padStart(9)}x`;
  const oursRatio = median(large.ours) / median(small.ours);
  const bmiRatio = median(large.bmi) / median(small.bmi);
  const lines = [
    `tgt export cost per target (ms, ${SAMPLES} samples each, file backing, interleaved in one run)`,
    `${"existing targets".padEnd(22)} ${"ours p50".padStart(9)} ${"ours p90".padStart(9)} ${"tgt-admin p50".padStart(11)} ${"p90".padStart(9)} ${"BMI/ours".padStart(10)}`,
    row(String(small.n), small),
    row(String(large.n), large),
    `ratio ${large.n}/${small.n}: ours ${oursRatio.toFixed(2)} (goal <= 1.2), tgt-admin --execute ${bmiRatio.toFixed(2)}`,
  ];
  process.stdout.write(`${lines.join("\n")}\n`);
  const out = join(
    import.meta.dirname,
    "results",
    `tgt-export-${new Date().toISOString().replaceAll(":", "-")}.json`,
  );
  await mkdir(join(import.meta.dirname, "results"), { recursive: true });
  await writeFile(
    out,
    `${JSON.stringify({ bench: "tgt-export", samples: SAMPLES, sizes: SIZES, results, ratio: { ours: oursRatio, bmi: bmiRatio }, goal: 1.2, passed: oursRatio <= 1.2 }, null, 2)}\n`,
  );
  process.stdout.write(`wrote ${out}\n`);
}

await main();
