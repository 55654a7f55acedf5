// Benchmark (not a test): N clone+remove pairs through @bmi/driver-ceph vs. the very same rbd
// command lines run by a plain bash loop, same parallelism, same cluster, rounds interleaved.
//   pnpm exec tsx bench/ceph-clone.ts [--count 100] [--parallel 10] [--rounds 3]
// Prints both times and the ratio (goal ≤ 1.10) and writes JSON to bench/results/.
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { createRecordingRunner } from "@bmi/core/testing";
import { type CephStorageOptions, createCephStorage } from "@bmi/driver-ceph";
import { makeTempDir, startCephLab } from "@bmi/lab";
import { execa } from "execa";

const { values } = parseArgs({
  options: {
    count: { type: "string", default: "100" },
    parallel: { type: "string", default: "10" },
    rounds: { type: "string", default: "3" },
  },
});
const count = Number(values.count);
const parallel = Number(values.parallel);
const rounds = Number(values.rounds);

const lab = await startCephLab();
const tmp = await makeTempDir("bench-ceph");
try {
  const options: CephStorageOptions = {
    conf: lab.conf,
    keyring: lab.keyring,
    clientId: lab.clientId,
    pool: lab.pool,
  };
  const storage = createCephStorage(options);
  const golden = { image: "bench-golden", snapshot: "bmi_created_snapshot" };
  await storage.create(golden.image, 1024 ** 3);
  await storage.createSnapshot(golden);
  await storage.protectSnapshot(golden);

  // The shell loop runs exactly the argv the driver builds (captured with a recording runner).
  const recorder = createRecordingRunner();
  const dry = createCephStorage({ ...options, runner: recorder });
  await dry.clone(golden, "NAME");
  await dry.remove("NAME");
  const [cloneArgv, removeArgv] = recorder.calls.map((c) => [c.file, ...c.args]);
  if (!cloneArgv || !removeArgv) throw new Error("could not capture the driver's command lines");
  const quote = (s: string) => `'${s.replaceAll("'", "'\\''")}'`;
  const line = (argv: string[]) =>
    argv.map((a) => (a.endsWith("/NAME") ? `${quote(a.slice(0, -4))}"$1"` : quote(a))).join(" ");
  const script = join(tmp.path, "loop.sh");
  await writeFile(
    script,
    `#!/bin/bash
set -e
one() { ${line(cloneArgv)} && ${line(removeArgv)}; }
prefix=$1; count=$2; parallel=$3; running=0
for i in $(seq 1 "$count"); do
  one "$prefix-$i" &
  running=$((running + 1))
  if [ "$running" -ge "$parallel" ]; then wait -n; running=$((running - 1)); fi
done
wait
`,
  );

  async function viaDriver(prefix: string): Promise<number> {
    const started = performance.now();
    let next = 1;
    const worker = async () => {
      while (next <= count) {
        const name = `${prefix}-${next++}`;
        await storage.clone(golden, name);
        await storage.remove(name);
      }
    };
    await Promise.all(Array.from({ length: parallel }, worker));
    return performance.now() - started;
  }

  async function viaShell(prefix: string): Promise<number> {
    const started = performance.now();
    await execa("bash", [script, prefix, String(count), String(parallel)], { timeout: 600_000 });
    return performance.now() - started;
  }

  // Warm-up (page cache, OSD object creation paths), not measured.
  await viaDriver("warm-d");
  await viaShell("warm-s");

  const driverMs: number[] = [];
  const shellMs: number[] = [];
  for (let r = 0; r < rounds; r++) {
    // Alternate which goes first so drift on a shared machine hits both sides.
    if (r % 2 === 0) {
      driverMs.push(await viaDriver(`d${r}`));
      shellMs.push(await viaShell(`s${r}`));
    } else {
      shellMs.push(await viaShell(`s${r}`));
      driverMs.push(await viaDriver(`d${r}`));
    }
  }
  const left = (await storage.list()).filter((n) => n !== golden.image);
  if (left.length > 0) throw new Error(`images left behind: ${left.slice(0, 5).join(", ")}`);

  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;
  const result = {
    benchmark: "ceph-clone",
    count,
    parallel,
    rounds,
    driverMs: driverMs.map(Math.round),
    shellMs: shellMs.map(Math.round),
    driverMedianMs: Math.round(median(driverMs)),
    shellMedianMs: Math.round(median(shellMs)),
    ratio: Number((median(driverMs) / median(shellMs)).toFixed(3)),
    goal: 1.1,
    labStartMs: lab.startMs,
    date: new Date().toISOString(),
  };
  process.stdout.write(
    `ceph clone+remove x${count}, ${parallel} at a time, ${rounds} rounds (lab up in ${lab.startMs} ms)\n` +
      `  driver: ${result.driverMs.join(", ")} ms (median ${result.driverMedianMs})\n` +
      `  shell:  ${result.shellMs.join(", ")} ms (median ${result.shellMedianMs})\n` +
      `  ratio driver/shell: ${result.ratio} (goal <= ${result.goal})\n`,
  );
  const dir = new URL("./results/", import.meta.url);
  await mkdir(dir, { recursive: true });
  await writeFile(
    new URL(`ceph-clone-${result.date.replaceAll(":", "-")}.json`, dir),
    `${JSON.stringify(result, null, 2)}\n`,
  );
} finally {
  await lab.stop();
  await tmp.remove();
}
