// Benchmark 4 (not a test): the core's own cost with in-memory drivers, so every millisecond is
// ours (validation, locks, sagas, journal, SQLite, events). Provisions per second in one process
// (goal >= 2,000/s), and heap / RSS with 1,000 nodes provisioned.
//   node --expose-gc --import tsx bench/core-overhead.ts [--nodes 1000] [--rounds 5]
import { parseArgs } from "node:util";
import { type Bmi, createBmi, openSqliteStore } from "@bmi/core";
import {
  createMemoryBoot,
  createMemoryExport,
  createMemoryIsolation,
  createMemoryStorage,
} from "@bmi/core/testing";
import { makeTempDir } from "@bmi/lab";
import { log, median, round, table, writeResult } from "./lib.js";

const { values } = parseArgs({
  options: { nodes: { type: "string", default: "1000" }, rounds: { type: "string", default: "5" } },
});
const NODES = Number(values.nodes);
const ROUNDS = Number(values.rounds);
const PROJECT = "bench";

const gc = (globalThis as { gc?: () => void }).gc ?? (() => {});
const mib = (bytes: number) => round(bytes / 1024 ** 2, 1);

const nodeNames = Array.from({ length: NODES }, (_, i) => `node-${String(i + 1).padStart(4, "0")}`);
const mac = (i: number) =>
  `52:54:${[(i >> 24) & 255, (i >> 16) & 255, (i >> 8) & 255, i & 255].map((b) => b.toString(16).padStart(2, "0")).join(":")}`;

/** A BMI on in-memory drivers over an SQLite store at `path` (":memory:" or a file, as deployed). */
async function build(path: string): Promise<{ bmi: Bmi; close(): void }> {
  const storage = createMemoryStorage();
  const isolation = createMemoryIsolation({
    nodes: nodeNames.map((name, i) => ({
      name,
      project: PROJECT,
      nics: [{ label: "eth0", mac: mac(i + 1) }],
    })),
    networks: ["prov"],
  });
  const store = openSqliteStore({ create: true, path, uid: "1", snapshotName: "bmi_created_snapshot" });
  const bmi = createBmi({
    storage,
    export: createMemoryExport(),
    boot: createMemoryBoot(),
    isolation,
    store,
    settings: { ...(await import("@bmi/core")).defaultSettings({ provisioningNetwork: "prov" }) },
  });
  await bmi.createProject({ name: PROJECT });
  await storage.create("golden-src", 4 * 1024 ** 2);
  await bmi.importImage({ project: PROJECT, source: "golden-src", name: "golden" });
  return { bmi, close: () => store.close() };
}

interface Round {
  provisionMs: number;
  deprovisionMs: number;
  heapUsedMiB: number;
  rssMiB: number;
}

/** Provisions every node (disk cloned from the golden image) then deprovisions with deleteDisk. */
async function once(path: string, concurrency: number): Promise<Round> {
  const { bmi, close } = await build(path);
  try {
    const inputs = nodeNames.map((node) => ({ project: PROJECT, node, disk: `d-${node}`, image: "golden" }));
    const started = performance.now();
    const results = concurrency === 1 ? [] : await bmi.provisionMany(inputs, { concurrency });
    if (concurrency === 1) for (const input of inputs) await bmi.provision(input);
    const provisionMs = performance.now() - started;
    const failed = results.filter((r) => !r.ok);
    if (failed.length > 0)
      throw new Error(`${failed.length} provisions failed: ${JSON.stringify(failed[0])}`);
    if ((await bmi.listProvisionings()).length !== NODES) throw new Error("not every node was provisioned");
    gc();
    const memory = process.memoryUsage();
    const down = performance.now();
    for (const node of nodeNames) await bmi.deprovision({ project: PROJECT, node, deleteDisk: true });
    const deprovisionMs = performance.now() - down;
    if ((await bmi.listDisks({ project: PROJECT })).length !== 0) throw new Error("disks left behind");
    return { provisionMs, deprovisionMs, heapUsedMiB: mib(memory.heapUsed), rssMiB: mib(memory.rss) };
  } finally {
    close();
  }
}

const tmp = await makeTempDir("bench-core");
try {
  gc();
  const baseline = process.memoryUsage();
  const variants = [
    { store: "sqlite :memory:", path: () => ":memory:", concurrency: 1 },
    { store: "sqlite :memory:", path: () => ":memory:", concurrency: 8 },
    { store: "sqlite file (WAL)", path: (r: number) => `${tmp.path}/bmi-${r}-1.db`, concurrency: 1 },
    { store: "sqlite file (WAL)", path: (r: number) => `${tmp.path}/bmi-${r}-8.db`, concurrency: 8 },
  ];
  const rounds: Round[][] = variants.map(() => []);
  await once(":memory:", 1); // warm-up: JIT, module loading
  for (let r = 0; r < ROUNDS; r++) {
    for (const [i, v] of variants.entries()) {
      log(`core overhead round ${r + 1}/${ROUNDS}: ${v.store}, concurrency ${v.concurrency}`);
      rounds[i]?.push(await once(v.path(r), v.concurrency));
    }
  }
  const rows = variants.map((v, i) => {
    const rs = rounds[i] ?? [];
    const provisionMs = median(rs.map((x) => x.provisionMs));
    const deprovisionMs = median(rs.map((x) => x.deprovisionMs));
    return {
      ...v,
      path: undefined,
      provisionsPerSecond: round((NODES / provisionMs) * 1000),
      deprovisionsPerSecond: round((NODES / deprovisionMs) * 1000),
      msPerProvision: round(provisionMs / NODES, 3),
      heapUsedMiB: median(rs.map((x) => x.heapUsedMiB)),
      rssMiB: median(rs.map((x) => x.rssMiB)),
      rounds: rs.map((x) => ({
        ...x,
        provisionMs: round(x.provisionMs),
        deprovisionMs: round(x.deprovisionMs),
      })),
    };
  });
  process.stdout.write(
    `\n### 4. Core overhead, in-memory drivers (${NODES} nodes, median of ${ROUNDS} rounds; goal >= 2,000 provisions/s)\n\n${table(
      [
        "store",
        "concurrency",
        "provisions/s",
        "ms/provision",
        "deprovisions/s",
        `heap at ${NODES} (MiB)`,
        `RSS at ${NODES} (MiB)`,
        "goal",
      ],
      rows.map((r) => [
        r.store,
        r.concurrency,
        r.provisionsPerSecond,
        r.msPerProvision,
        r.deprovisionsPerSecond,
        r.heapUsedMiB,
        r.rssMiB,
        r.provisionsPerSecond >= 2000 ? "met" : "missed",
      ]),
    )}\n\nprocess baseline before any BMI: heap ${mib(baseline.heapUsed)} MiB, RSS ${mib(baseline.rss)} MiB\n`,
  );
  const file = await writeResult("core-overhead", {
    nodes: NODES,
    rounds: ROUNDS,
    goal: { provisionsPerSecond: 2000 },
    baseline: { heapUsedMiB: mib(baseline.heapUsed), rssMiB: mib(baseline.rss) },
    results: rows,
  });
  log(`wrote ${file}`);
} finally {
  await tmp.remove();
}
