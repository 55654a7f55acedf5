// Benchmark (issue 18, not a test): provisionMany of N nodes against a HIL with real HIL's costs
// (database auth ~165 ms per request; a networking daemon that applies actions one at a time, each
// taking a switch's time), three ways at the same concurrency: the SDK on the librbd back end, the
// SDK on the rbd CLI back end, and a floor (bench/batch-floor.py: librbd in-process, the SDK's own
// tgtadm command lines, the same boot files, the same HIL requests). While HIL's queue is busy the
// storage and export work of the next nodes must go on, so the SDK's wall time should approach
// max(HIL's serial time, the storage+export floor), not their sum.
//   pnpm -s exec tsx bench/batch-realistic-hil.ts [--nodes 100] [--concurrency 8] [--action-ms 1000] [--auth-ms 165]
import { mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { parseArgs } from "node:util";
import { type Bmi, type BmiEvent, createBmi, createExecaRunner, type StorageDriver } from "@bmi/core";
import { cephOptionsFromConfig, createCephStorage, createLibrbdStorage } from "@bmi/driver-ceph";
import { createTgtExport, tgtOptionsFromConfig } from "@bmi/driver-tgt";
import { type BmiLab, startBmiLab } from "@bmi/lab";
import { execa } from "execa";
import {
  isEssentialTgtadm,
  log,
  type Recorded,
  recordingRunner,
  round,
  stopOnSignal,
  table,
  writeResult,
} from "./lib.js";

process.env.UV_THREADPOOL_SIZE ??= "16"; // librbd calls hold a libuv thread each (koffi async)
const { values } = parseArgs({
  options: {
    nodes: { type: "string", default: "100" },
    concurrency: { type: "string", default: "8" },
    "action-ms": { type: "string", default: "1000" },
    "auth-ms": { type: "string", default: "165" },
  },
});
const N = Number(values.nodes);
const CONCURRENCY = Number(values.concurrency);
const ACTION_MS = Number(values["action-ms"]);
const AUTH_MS = Number(values["auth-ms"]);

/** Real HIL's costs on, or off (for the untimed clean-ups between runs). */
function realisticHil(lab: BmiLab, on: boolean) {
  Object.assign(
    lab.hil.knobs,
    on
      ? { authCostMs: AUTH_MS, actionMs: ACTION_MS, serialDaemon: true }
      : { authCostMs: 0, actionMs: 0, serialDaemon: false },
  );
}

interface Variant {
  bmi: Bmi;
  storage: StorageDriver;
  /** Step durations summed over nodes, of the timed provisioning only (not the clean-up). */
  stepMs: Record<string, number>;
  counting: boolean;
}

function variant(
  lab: BmiLab,
  storage: StorageDriver,
  exportRunner: ReturnType<typeof recordingRunner>,
): Variant {
  const bmi = createBmi({
    storage,
    export: createTgtExport(tgtOptionsFromConfig(lab.config, { runner: exportRunner })),
    boot: lab.drivers.boot,
    isolation: lab.drivers.isolation,
    store: lab.store,
    settings: lab.settings,
  });
  const v: Variant = { bmi, storage, stepMs: {}, counting: false };
  bmi.on((event: BmiEvent) => {
    if (v.counting && event.type === "step:finished")
      v.stepMs[event.step] = (v.stepMs[event.step] ?? 0) + event.durationMs;
  });
  return v;
}

/** Provisions N nodes (timed), then deprovisions them with a fast HIL (untimed). */
async function viaSdk(lab: BmiLab, v: Variant, image: string): Promise<number> {
  for (const key of Object.keys(v.stepMs)) delete v.stepMs[key];
  const nodes = lab.nodes.slice(0, N);
  v.counting = true;
  const started = performance.now();
  const results = await v.bmi.provisionMany(
    nodes.map((node) => ({ project: lab.project, node: node.name, disk: `disk-${node.name}`, image })),
    { concurrency: CONCURRENCY },
  );
  const wallMs = performance.now() - started;
  v.counting = false;
  const failed = results.find((r) => !r.ok);
  if (failed && !failed.ok) throw failed.error;
  realisticHil(lab, false);
  for (let i = 0; i < nodes.length; i += CONCURRENCY)
    await Promise.all(
      nodes
        .slice(i, i + CONCURRENCY)
        .map((node) => v.bmi.deprovision({ project: lab.project, node: node.name, deleteDisk: true })),
    );
  realisticHil(lab, true);
  return wallMs;
}

/** The floor's plan: the SDK's own tgtadm lines, boot files and HIL GETs on a warm-up node, templated. */
async function recordPlan(
  lab: BmiLab,
  v: Variant,
  recorder: ReturnType<typeof recordingRunner>,
  image: string,
) {
  const warm = lab.nodes[N];
  if (!warm) throw new Error("the lab has no warm-up node");
  const before = new Map(lab.hil.faults.requests);
  recorder.take();
  const made = await v.bmi.provision({ project: lab.project, node: warm.name, disk: "disk-warm", image });
  const up = recorder.take();
  const gets = [...lab.hil.faults.requests.keys()]
    .filter((key) => key.startsWith("GET ") && !key.includes("networking_action"))
    .filter((key) => (lab.hil.faults.requests.get(key) ?? 0) > (before.get(key) ?? 0))
    .map((key) => key.slice(4).replaceAll(warm.name, "{NODE}"));
  const entry = await lab.drivers.boot.read(warm.name);
  if (!entry) throw new Error("the warm-up node has no boot files");
  const rbdName = (await lab.store.images.getById(made.diskId))?.cephName ?? "";
  const newTarget = up.find((c) => c.args.includes("--targetname"));
  const tid = newTarget?.args[newTarget.args.indexOf("--tid") + 1];
  const mac = warm.mac.replaceAll(":", "-");
  const fill = (s: string) =>
    s.replaceAll(rbdName, "{RBD}").replaceAll(warm.name, "{NODE}").replaceAll(mac, "{MAC}");
  const lines = (calls: Recorded[]) =>
    calls
      .filter(isEssentialTgtadm)
      .map((c) =>
        [c.file, ...c.args].map((a, i, all) => (all[i - 1] === "--tid" && a === tid ? "{TID}" : fill(a))),
      );
  const files = await Promise.all(
    entry.files.map(async (rel) => {
      const path = join(lab.tftpRoot, rel);
      return {
        rel: fill(rel),
        text: fill(await readFile(path, "utf8")),
        mode: (await stat(path)).mode & 0o777,
      };
    }),
  );
  realisticHil(lab, false);
  await v.bmi.deprovision({ project: lab.project, node: warm.name, deleteDisk: true });
  const down = recorder.take();
  return { tgtadmUp: lines(up), tgtadmDown: lines(down), files, gets };
}

async function main() {
  const lab = await startBmiLab({ nodes: N + 1, hilActionDelayMs: 0 });
  stopOnSignal(lab);
  try {
    const golden = await lab.createGoldenImage("golden");
    const recorder = recordingRunner(createExecaRunner({ subsystem: "export" }));
    const { runner: _cli, ...librbdOptions } = cephOptionsFromConfig(lab.config);
    const librbd = createLibrbdStorage(librbdOptions);
    const variants = {
      "SDK (librbd)": variant(lab, librbd, recorder),
      "SDK (rbd CLI)": variant(lab, createCephStorage(cephOptionsFromConfig(lab.config)), recorder),
    };
    const recorded = await recordPlan(lab, variants["SDK (librbd)"], recorder, golden.name);
    const floorRoot = join(lab.dir, "floor-tftp");
    for (const f of recorded.files) await mkdir(dirname(join(floorRoot, f.rel)), { recursive: true });
    const plan = (hil: boolean) => ({
      ...recorded,
      concurrency: CONCURRENCY,
      tftpRoot: floorRoot,
      ceph: { ...librbdOptions, parent: golden.cephName, snapshot: lab.settings.snapshotName },
      hil: {
        enabled: hil,
        url: lab.hil.url,
        user: lab.hilUser.name,
        password: lab.hilUser.password,
        network: lab.settings.provisioningNetwork,
        nic: lab.nodes[0]?.nic,
        gets: recorded.gets,
        pollMs: 25,
      },
      nodes: lab.nodes.slice(0, N).map((node, i) => ({
        node: node.name,
        mac: node.mac.replaceAll(":", "-"),
        rbd: `floor-${node.name}`,
        tid: 100_000 + i,
      })),
    });
    const floor = async (hil: boolean) => {
      const file = join(lab.dir, `floor-plan-${hil}.json`);
      await writeFile(file, JSON.stringify(plan(hil)), { mode: 0o600 });
      const script = join(import.meta.dirname, "batch-floor.py");
      const up = await execa("/usr/bin/python3", [script, file, "up"], { timeout: 1_800_000 });
      realisticHil(lab, false);
      await execa("/usr/bin/python3", [script, file, "down"], { timeout: 1_800_000 });
      realisticHil(lab, true);
      return Number(up.stdout.trim());
    };

    realisticHil(lab, true);
    const wall: Record<string, number> = {};
    log(`floor without HIL (storage + export + boot files), N=${N}`);
    wall["floor, no HIL"] = await floor(false);
    for (const [name, v] of Object.entries(variants)) {
      log(
        `${name}: N=${N}, concurrency ${CONCURRENCY}, HIL ${AUTH_MS} ms auth, ${ACTION_MS} ms serial actions`,
      );
      wall[name] = await viaSdk(lab, v, golden.name);
    }
    log(`floor (with HIL), N=${N}`);
    wall.floor = await floor(true);
    await librbd.close();
    await report(wall, variants);
  } finally {
    await lab.stop();
  }
}

async function report(wall: Record<string, number>, variants: Record<string, Variant>) {
  const hilSerialMs = N * ACTION_MS;
  const bound = Math.max(hilSerialMs, wall["floor, no HIL"] ?? 0);
  const sum = hilSerialMs + (wall["floor, no HIL"] ?? 0);
  const rows = Object.entries(wall).map(([name, ms]) => [
    name,
    round(ms / 1000, 1),
    round(ms / N, 1),
    round(ms / bound, 2),
    round(ms / (wall.floor ?? ms), 2),
  ]);
  process.stdout.write(
    `\n### Batch provision of ${N} nodes, concurrency ${CONCURRENCY}, realistic HIL (${AUTH_MS} ms auth per request, ${ACTION_MS} ms per action, one at a time)\n\n${table(
      ["run", "wall s", "ms/node", "/ max(HIL, floor)", "/ floor"],
      rows,
    )}\n\nHIL's serial time alone: ${round(hilSerialMs / 1000, 1)} s; max(HIL, storage floor) = ${round(bound / 1000, 1)} s; their sum = ${round(sum / 1000, 1)} s.\n`,
  );
  for (const [name, v] of Object.entries(variants))
    process.stdout.write(
      `\n${name}, step totals (ms, summed over nodes):\n${table(
        ["step", "ms"],
        Object.entries(v.stepMs)
          .sort((a, b) => b[1] - a[1])
          .map(([step, ms]) => [step, round(ms)]),
      )}\n`,
    );
  const sdk = wall["SDK (librbd)"] ?? 0;
  process.stdout.write(
    `\nbatch N=${N} sdk-librbd/floor=${round(sdk / (wall.floor ?? 1), 2)} sdk-cli/floor=${round((wall["SDK (rbd CLI)"] ?? 0) / (wall.floor ?? 1), 2)} sdk-librbd/max=${round(sdk / bound, 2)}\n`,
  );
  await writeResult("batch-realistic-hil", {
    nodes: N,
    concurrency: CONCURRENCY,
    actionMs: ACTION_MS,
    authMs: AUTH_MS,
    wallMs: wall,
  });
}

await main();
