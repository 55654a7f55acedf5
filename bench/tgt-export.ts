// Per-target export cost at 10 and at 1,000 existing targets: our tgt driver (tgtadm per target)
// beside the original BMI's way (a conf.d file per target plus `tgt-admin --execute`), measured in
// the same run against the same private tgtd. Not a test: it prints a table and writes JSON.
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

async function main() {
  const work = await makeTempDir("bench-tgt");
  const tgtd = await startTgtd({ dir: work.path });
  const confDir = join(work.path, "conf.d");
  const mainConf = join(work.path, "targets.conf");
  await mkdir(confDir);
  await writeFile(mainConf, `default-driver iscsi\ninclude ${confDir}/*.conf\n`);
  const disk = join(work.path, "disk.img");
  await execa("truncate", ["-s", "4M", disk]);

  let fillers = 0;
  let tid = 100_000; // filler tids far from the ones either way allocates
  const results: Record<string, { n: number; ours: number[]; bmi: number[] }> = {};
  try {
    for (const n of SIZES) {
      // Grow the daemon (and BMI's conf.d, which tgt-admin reads in full every time) to n targets.
      while (fillers < n) {
        const name = `${IQN}:filler-${fillers}`;
        await tgtadmOk(tgtd, [
          "--mode",
          "target",
          "--op",
          "new",
          "--tid",
          String(tid++),
          "--targetname",
          name,
        ]);
        await tgtadmOk(tgtd, [
          "--mode",
          "logicalunit",
          "--op",
          "new",
          "--tid",
          String(tid - 1),
          "--lun",
          "1",
          "--bstype",
          "null",
          "--backing-store",
          "None",
        ]);
        await tgtadmOk(tgtd, [
          "--mode",
          "target",
          "--op",
          "bind",
          "--tid",
          String(tid - 1),
          "--initiator-address",
          "ALL",
        ]);
        await writeFile(join(confDir, `filler-${fillers}.conf`), bmiConf(name, disk));
        fillers++;
      }
      const driver = createTgtExport({ portal: tgtd.portal, port: tgtd.port, controlPort: tgtd.controlPort });
      const ours: number[] = [];
      const bmi: number[] = [];
      // Interleave the two ways so load from other work on the machine hits both alike; two warm-ups each.
      for (let i = -2; i < SAMPLES; i++) {
        const target = `${IQN}:ours-${n}-${i + 2}`;
        let started = performance.now();
        await driver.export({ target, backing: { kind: "file", path: disk }, access: { initiators: "ALL" } });
        const oursMs = performance.now() - started;
        await driver.unexport(target, { force: true });

        const bare = `${IQN}:bmi-${n}-${i + 2}`;
        const conf = join(confDir, `bmi-${n}-${i + 2}.conf`);
        started = performance.now();
        await writeFile(conf, bmiConf(bare, disk));
        const run = await execa(
          "tgt-admin",
          ["--execute", "--conf", mainConf, "--control-port", String(tgtd.controlPort)],
          { reject: false },
        );
        const bmiMs = performance.now() - started;
        if (run.exitCode !== 0) throw new Error(`tgt-admin --execute failed: ${run.stderr || run.stdout}`);
        await rm(conf);
        await execa("tgt-admin", ["--delete", bare, "--force", "--control-port", String(tgtd.controlPort)]);
        if (i >= 0) {
          ours.push(oursMs);
          bmi.push(bmiMs);
        }
      }
      results[String(n)] = { n, ours, bmi };
      process.stderr.write(`measured at ${n} targets\n`);
    }
  } finally {
    await tgtd.stop();
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
    `tgt export cost per target (ms, ${SAMPLES} samples each, file backing, same tgtd, same run)`,
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
