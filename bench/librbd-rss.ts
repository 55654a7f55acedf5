// Benchmark (not a test): RSS of one process doing N clone+remove pairs through the librbd back
// end (8 in flight), sampled every N/4 pairs: the FFI and the connection must not grow per call.
// Storage only (not whole provisioning): the back end's share of a 1,000-node batch.
//   pnpm exec tsx bench/librbd-rss.ts [--count 1000]
import { parseArgs } from "node:util";
import { createLibrbdStorage } from "@bmi/driver-ceph";
import { startCephLab } from "@bmi/lab";
import { round, stopOnSignal, writeResult } from "./lib.js";

process.env.UV_THREADPOOL_SIZE ??= "16";
const { values } = parseArgs({ options: { count: { type: "string", default: "1000" } } });
const count = Number(values.count);
const lab = await startCephLab();
stopOnSignal(lab);
const storage = createLibrbdStorage({
  conf: lab.conf,
  keyring: lab.keyring,
  clientId: lab.clientId,
  pool: lab.pool,
});
const mib = () => round(process.memoryUsage.rss() / 2 ** 20, 1);
try {
  const golden = { image: "rss-golden", snapshot: "bmi_created_snapshot" };
  await storage.create(golden.image, 1024 ** 3);
  await storage.createSnapshot(golden);
  await storage.protectSnapshot(golden);
  const samples: Array<{ done: number; rssMiB: number }> = [{ done: 0, rssMiB: mib() }];
  let next = 1;
  let done = 0;
  const worker = async () => {
    while (next <= count) {
      const name = `rss-${next++}`;
      await storage.clone(golden, name);
      await storage.remove(name);
      done += 1;
      if (done % Math.max(1, Math.floor(count / 4)) === 0) samples.push({ done, rssMiB: mib() });
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  await writeResult("librbd-rss", { count, samples });
  process.stdout.write(`${samples.map((s) => `${s.done}: ${s.rssMiB} MiB`).join("\n")}\n`);
  process.stdout.write(`rss librbd after ${count} clone+remove pairs=${samples.at(-1)?.rssMiB} MiB\n`);
} finally {
  await storage.close();
  await lab.stop();
}
