// Benchmark (not a test): N clone+remove pairs three ways, same cluster, same concurrency, rounds
// interleaved: the librbd back end, the CLI back end, and a floor that calls librbd directly
// (python3-rbd, bench/librbd-floor.py, one connection, threads).
//   pnpm exec tsx bench/ceph-clone.ts [--count 100] [--rounds 3]
// Runs at concurrency 1 and 8. Last line: `ratio librbd/floor=<x> cli/librbd=<y>` (concurrency 8;
// goals x <= 1.3, y >= 3). Writes JSON to bench/results/.
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import type { StorageDriver } from "@bmi/core";
import { type CephStorageOptions, createCephStorage, createLibrbdStorage } from "@bmi/driver-ceph";
import { startCephLab } from "@bmi/lab";
import { execa } from "execa";
import { median, round, stopOnSignal, table, writeResult } from "./lib.js";

// koffi's async calls run on libuv's pool (4 threads by default): room for 8 calls in flight.
process.env.UV_THREADPOOL_SIZE ??= "16";

const { values } = parseArgs({
  options: {
    count: { type: "string", default: "100" },
    rounds: { type: "string", default: "3" },
  },
});
const count = Number(values.count);
const rounds = Number(values.rounds);
const floorScript = fileURLToPath(new URL("./librbd-floor.py", import.meta.url));

const lab = await startCephLab();
stopOnSignal(lab);
const options: CephStorageOptions = {
  conf: lab.conf,
  keyring: lab.keyring,
  clientId: lab.clientId,
  pool: lab.pool,
};
const cli = createCephStorage(options);
const librbd = createLibrbdStorage(options);
try {
  const golden = { image: "bench-golden", snapshot: "bmi_created_snapshot" };
  await cli.create(golden.image, 1024 ** 3);
  await cli.createSnapshot(golden);
  await cli.protectSnapshot(golden);

  async function viaDriver(storage: StorageDriver, prefix: string, parallel: number): Promise<number> {
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

  async function viaFloor(prefix: string, parallel: number): Promise<number> {
    const args = [floorScript, lab.conf, lab.clientId, lab.keyring, lab.pool, golden.image, golden.snapshot];
    const run = await execa("/usr/bin/python3", [...args, prefix, String(count), String(parallel)], {
      timeout: 600_000,
    });
    return Number(run.stdout.trim());
  }

  const ways = {
    librbd: (p: string, n: number) => viaDriver(librbd, p, n),
    cli: (p: string, n: number) => viaDriver(cli, p, n),
    floor: viaFloor,
  } as const;
  type Way = keyof typeof ways;
  const order: Way[] = ["librbd", "cli", "floor"];
  const results: Record<string, Record<Way, number[]>> = {};
  for (const parallel of [1, 8]) {
    const times: Record<Way, number[]> = { librbd: [], cli: [], floor: [] };
    for (const way of order) await ways[way](`warm${parallel}${way}`, parallel); // warm-up, not measured
    for (let r = 0; r < rounds; r++) {
      // Rotate which goes first so drift on a shared machine hits every side.
      for (let k = 0; k < order.length; k++) {
        const way = order[(r + k) % order.length] as Way;
        times[way].push(await ways[way](`r${parallel}${way}${r}`, parallel));
      }
    }
    results[String(parallel)] = times;
  }
  const left = (await librbd.list()).filter((n) => n !== golden.image);
  if (left.length > 0) throw new Error(`images left behind: ${left.slice(0, 5).join(", ")}`);

  const med = (parallel: number, way: Way) => median(results[String(parallel)]?.[way] ?? []);
  const rows = [1, 8].map((p) => [
    p,
    round(med(p, "librbd")),
    round(med(p, "cli")),
    round(med(p, "floor")),
    round(med(p, "librbd") / med(p, "floor"), 2),
    round(med(p, "cli") / med(p, "librbd"), 2),
  ]);
  const x = round(med(8, "librbd") / med(8, "floor"), 2);
  const y = round(med(8, "cli") / med(8, "librbd"), 2);
  await writeResult("ceph-clone", { count, rounds, results, ratioLibrbdFloor: x, ratioCliLibrbd: y });
  process.stdout.write(
    `ceph clone+remove x${count}, median of ${rounds} rounds, ms (lab up in ${lab.startMs} ms)\n` +
      `${table(["concurrency", "librbd", "cli", "floor", "librbd/floor", "cli/librbd"], rows)}\n` +
      `ratio librbd/floor=${x} cli/librbd=${y}\n`,
  );
} finally {
  await librbd.close();
  await lab.stop();
}
