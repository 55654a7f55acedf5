// Benchmark 1 (not a test): provision + deprovision (deleteDisk) N nodes with the SDK
// (`bmi.provisionMany`) on a real lab (Ceph memstore, tgtd, HIL-compatible server with no action
// delay), beside a bash script that runs the same rbd / tgtadm command lines and writes the same
// boot files at the same concurrency (xargs -P). Runs alternate SDK and script, repeated; medians.
//   pnpm -s exec tsx bench/batch-provision.ts [--sizes 10,50,100] [--concurrency 1,4,8] [--rounds 2]
// The script's command lines are the SDK's own, recorded on a warm-up node and templated, so the
// two sides differ only in what the SDK runs besides them (listed in the output).
import { chmod, mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { type BmiEvent, createBmi, createExecaRunner } from "@bmi/core";
import { cephOptionsFromConfig, createCephStorage } from "@bmi/driver-ceph";
import { createTgtExport, tgtOptionsFromConfig } from "@bmi/driver-tgt";
import { type BmiLab, startBmiLab } from "@bmi/lab";
import { execa } from "execa";
import {
  isEssentialTgtadm,
  log,
  median,
  type Recorded,
  recordingRunner,
  round,
  table,
  timingRunner,
  writeResult,
} from "./lib.js";

const { values } = parseArgs({
  options: {
    sizes: { type: "string", default: "10,50,100" },
    concurrency: { type: "string", default: "1,4,8" },
    // Two rounds keep `pnpm bench` near 15 minutes on 2 shared cores (one round is about 5).
    rounds: { type: "string", default: "2" },
  },
});
const SIZES = values.sizes.split(",").map(Number);
const CONCURRENCY = values.concurrency.split(",").map(Number);
const ROUNDS = Number(values.rounds);
const MAX_NODES = Math.max(...SIZES);

const quote = (s: string) => `'${s.replaceAll("'", "'\\''")}'`;

/** A shell word for `arg`, with the warm-up disk's names replaced by "$RBD" (and its tid by "$TID"). */
function templated(arg: string, rbd: string, tid: string | undefined, previous: string | undefined): string {
  if (previous === "--tid" && tid !== undefined && arg === tid) return '"$TID"';
  return arg
    .split(rbd)
    .map((part) => (part === "" ? "" : quote(part)))
    .join('"$RBD"');
}

const isEssential = (c: Recorded) =>
  c.file.endsWith("rbd") ? c.args.includes("clone") || c.args.includes("rm") : isEssentialTgtadm(c);

const describe = (c: Recorded) =>
  c.file.endsWith("tgtadm")
    ? `tgtadm ${c.args[c.args.indexOf("--mode") + 1]} ${c.args[c.args.indexOf("--op") + 1]}`
    : `rbd ${c.args.find((a) => ["info", "ls", "clone", "rm", "snap", "flatten", "children"].includes(a))}`;

interface Cell {
  n: number;
  concurrency: number;
  sdkMs: number[];
  scriptMs: number[];
  sdkProvisionMs: number[];
  scriptProvisionMs: number[];
  controlPlaneMsPerNode: number[];
  commandsPerNode: number[];
}

async function main() {
  const labParts: Record<string, number> = {};
  const labStarted = performance.now();
  const lab: BmiLab = await startBmiLab({
    nodes: MAX_NODES + 1,
    hilActionDelayMs: 0,
    onProgress: (part, ms) => {
      labParts[part] = ms;
    },
  });
  const labStartMs = round(performance.now() - labStarted);
  try {
    const { config, settings, project } = lab;
    const golden = await lab.createGoldenImage("golden");
    const storageRunner = timingRunner(createExecaRunner({ subsystem: "storage" }));
    const exportRunner = timingRunner(createExecaRunner({ subsystem: "export" }));
    const recorder = recordingRunner((file, args, options) =>
      (file.endsWith("tgtadm") ? exportRunner : storageRunner)(file, args, options),
    );
    const bmi = createBmi({
      storage: createCephStorage({ ...cephOptionsFromConfig(config), runner: recorder }),
      export: createTgtExport(tgtOptionsFromConfig(config, { runner: recorder })),
      boot: lab.drivers.boot,
      isolation: lab.drivers.isolation,
      store: lab.store,
      settings,
    });
    let opMs = 0;
    const stepMs: Record<string, number> = {};
    bmi.on((event: BmiEvent) => {
      if (event.type === "operation:finished") opMs += event.durationMs;
      if (event.type === "step:finished") stepMs[event.step] = (stepMs[event.step] ?? 0) + event.durationMs;
    });

    // Warm-up node: records the SDK's command lines and boot files, which the script then replays.
    const warmNode = lab.nodes[MAX_NODES] ?? lab.nodes[0];
    if (!warmNode) throw new Error("the lab has no nodes");
    recorder.take();
    const warm = await bmi.provision({
      project,
      node: warmNode.name,
      disk: `disk-${warmNode.name}`,
      image: "golden",
    });
    const upCalls = recorder.take();
    const entry = await lab.drivers.boot.read(warmNode.name);
    if (!entry) throw new Error("the warm-up node has no boot files");
    const bootFiles = await Promise.all(
      entry.files.map(async (rel) => {
        const path = join(lab.tftpRoot, rel);
        return { rel, text: await readFile(path, "utf8"), mode: (await stat(path)).mode & 0o777 };
      }),
    );
    await bmi.deprovision({ project, node: warmNode.name, deleteDisk: true });
    const downCalls = recorder.take();
    const rbdName =
      (await lab.store.images.getById(warm.diskId))?.cephName ?? `${settings.uid}img${warm.diskId}`;
    const tidOf = (calls: Recorded[]) => {
      const made = calls.find((c) => c.args.includes("new") && c.args.includes("--targetname"));
      return made?.args[made.args.indexOf("--tid") + 1];
    };
    const tid = tidOf(upCalls) ?? tidOf(downCalls);
    const line = (c: Recorded) =>
      [c.file, ...c.args].map((a, i, all) => templated(a, rbdName, tid, all[i - 1])).join(" ");
    const hyphenMac = warmNode.mac.replaceAll(":", "-");
    const fileTemplate = (s: string) =>
      s
        .split(warmNode.name)
        .map((p) =>
          p
            .split(hyphenMac)
            .map((q) => q.split(rbdName).map(quote).join('"$RBD"'))
            .join('"$MAC"'),
        )
        .join('"$NODE"');
    const scriptRoot = join(lab.dir, "script-tftp");
    const writes = bootFiles.map(
      (f) =>
        `f="$ROOT"/${fileTemplate(f.rel)}; printf '%s' ${fileTemplate(f.text)} > "$f.tmp.$$" && chmod ${f.mode.toString(8)} "$f.tmp.$$" && mv "$f.tmp.$$" "$f"`,
    );
    const removes = bootFiles.map((f) => `rm -f "$ROOT"/${fileTemplate(f.rel)}`);
    const script = join(lab.dir, "floor.sh");
    await writeFile(
      script,
      [
        "#!/bin/bash",
        "# The floor: the SDK's own rbd / tgtadm command lines and boot files, nothing else.",
        "set -euo pipefail",
        "what=$1 ROOT=$2 RBD=$3 TID=$4 NODE=$5 MAC=$6",
        'if [ "$what" = up ]; then',
        ...upCalls.filter(isEssential).map((c) => `  ${line(c)} >/dev/null`),
        ...writes.map((w) => `  ${w}`),
        "else",
        ...removes.map((r) => `  ${r}`),
        ...downCalls.filter(isEssential).map((c) => `  ${line(c)} >/dev/null`),
        "fi",
        "",
      ].join("\n"),
    );
    await chmod(script, 0o755);
    for (const dir of new Set(bootFiles.map((f) => join(scriptRoot, f.rel, ".."))))
      await mkdir(dir, { recursive: true });
    const extra = [...upCalls, ...downCalls].filter((c) => !isEssential(c)).map(describe);
    log(
      `script: ${upCalls.filter(isEssential).length} + ${downCalls.filter(isEssential).length} commands per node; the SDK also runs: ${extra.join(", ") || "nothing"}`,
    );

    let scriptTid = 100_000;
    const runScript = async (what: "up" | "down", jobs: string[], concurrency: number) => {
      await execa("xargs", ["-P", String(concurrency), "-L", "1", "bash", script, what], {
        input: `${jobs.join("\n")}\n`,
        timeout: 900_000,
      });
    };
    const viaScript = async (n: number, concurrency: number, label: string) => {
      const jobs = lab.nodes.slice(0, n).map((node) => {
        scriptTid++;
        return `${scriptRoot} bench-${label}-${node.name} ${scriptTid} ${node.name} ${node.mac.replaceAll(":", "-")}`;
      });
      const started = performance.now();
      await runScript("up", jobs, concurrency);
      const provisionMs = performance.now() - started;
      await runScript("down", jobs, concurrency);
      return { totalMs: performance.now() - started, provisionMs };
    };

    const viaSdk = async (n: number, concurrency: number) => {
      const nodes = lab.nodes.slice(0, n);
      storageRunner.reset();
      exportRunner.reset();
      opMs = 0;
      const started = performance.now();
      const results = await bmi.provisionMany(
        nodes.map((node) => ({ project, node: node.name, disk: `disk-${node.name}`, image: golden.name })),
        { concurrency },
      );
      const provisionMs = performance.now() - started;
      const failed = results.find((r) => !r.ok);
      if (failed && !failed.ok) throw failed.error;
      // Deprovision at the same concurrency (the SDK has no batch deprovision; this is its loop).
      let next = 0;
      const worker = async () => {
        for (let i = next++; i < nodes.length; i = next++) {
          const node = nodes[i];
          if (node) await bmi.deprovision({ project, node: node.name, deleteDisk: true });
        }
      };
      await Promise.all(Array.from({ length: concurrency }, worker));
      const totalMs = performance.now() - started;
      const commandMs = storageRunner.totalMs() + exportRunner.totalMs();
      const calls = storageRunner.calls() + exportRunner.calls();
      return {
        totalMs,
        provisionMs,
        controlPlaneMsPerNode: (opMs - commandMs) / n,
        commandsPerNode: calls / n,
      };
    };

    const cells: Cell[] = [];
    for (const n of SIZES)
      for (const concurrency of CONCURRENCY)
        cells.push({
          n,
          concurrency,
          sdkMs: [],
          scriptMs: [],
          sdkProvisionMs: [],
          scriptProvisionMs: [],
          controlPlaneMsPerNode: [],
          commandsPerNode: [],
        });
    for (let r = 0; r < ROUNDS; r++) {
      for (const [i, cell] of cells.entries()) {
        log(`batch round ${r + 1}/${ROUNDS}: N=${cell.n}, concurrency ${cell.concurrency}`);
        const sdk = async () => {
          const s = await viaSdk(cell.n, cell.concurrency);
          cell.sdkMs.push(s.totalMs);
          cell.sdkProvisionMs.push(s.provisionMs);
          cell.controlPlaneMsPerNode.push(s.controlPlaneMsPerNode);
          cell.commandsPerNode.push(s.commandsPerNode);
        };
        const floor = async () => {
          const s = await viaScript(cell.n, cell.concurrency, `${r}-${i}`);
          cell.scriptMs.push(s.totalMs);
          cell.scriptProvisionMs.push(s.provisionMs);
        };
        // Alternate who goes first, so drift on the shared machine hits both sides alike.
        if ((r + i) % 2 === 0) {
          await sdk();
          await floor();
        } else {
          await floor();
          await sdk();
        }
      }
    }
    const all = await lab.leftovers();
    const left = { ...all, images: all.images.filter((name) => name !== golden.cephName) };
    const scriptLeft = (await lab.drivers.storage.list()).filter((name) => name.startsWith("bench-"));
    if (left.images.length + left.targets.length + left.bootFiles.length + scriptLeft.length > 0)
      throw new Error(`left behind: ${JSON.stringify({ ...left, scriptLeft })}`);

    const rows = cells.map((c) => {
      const sdk = median(c.sdkMs);
      const floor = median(c.scriptMs);
      return {
        n: c.n,
        concurrency: c.concurrency,
        sdkMs: round(sdk),
        scriptMs: round(floor),
        sdkMsPerNode: round(sdk / c.n, 1),
        scriptMsPerNode: round(floor / c.n, 1),
        ratio: round(sdk / floor, 3),
        provisionRatio: round(median(c.sdkProvisionMs) / median(c.scriptProvisionMs), 3),
        controlPlaneMsPerNode: round(median(c.controlPlaneMsPerNode), 1),
        commandsPerNode: round(median(c.commandsPerNode), 1),
        samples: { sdkMs: c.sdkMs.map((x) => round(x)), scriptMs: c.scriptMs.map((x) => round(x)) },
      };
    });
    const floorCommands = upCalls.filter(isEssential).length + downCalls.filter(isEssential).length;
    process.stdout.write(
      `\n### 1. Batch provision + deprovision (deleteDisk), real lab, median of ${ROUNDS} (goals: SDK/script <= 1.10; control plane <= 50 ms/node at N=100)\n\n${table(
        [
          "N",
          "conc.",
          "SDK ms",
          "script ms",
          "SDK ms/node",
          "script ms/node",
          "SDK/script",
          "(provision only)",
          "control plane ms/node",
          "commands/node SDK (script)",
        ],
        rows.map((r) => [
          r.n,
          r.concurrency,
          r.sdkMs,
          r.scriptMs,
          r.sdkMsPerNode,
          r.scriptMsPerNode,
          `${r.ratio}${r.ratio <= 1.1 ? "" : " (missed)"}`,
          r.provisionRatio,
          `${r.controlPlaneMsPerNode}${r.n === 100 && r.controlPlaneMsPerNode > 50 ? " (missed)" : ""}`,
          `${r.commandsPerNode} (${floorCommands})`,
        ]),
      )}\n\nThe SDK runs besides the script's commands, per node: ${extra.join(", ") || "nothing"}.\n` +
        `Time in SDK steps over the whole run (ms): ${Object.entries(stepMs)
          .sort((a, b) => b[1] - a[1])
          .map(([k, v]) => `${k} ${round(v)}`)
          .join(", ")}\n`,
    );
    const file = await writeResult("batch-provision", {
      sizes: SIZES,
      concurrency: CONCURRENCY,
      rounds: ROUNDS,
      goal: { ratio: 1.1, controlPlaneMsPerNodeAtN100: 50 },
      lab: { startMs: labStartMs, parts: labParts },
      script: await readFile(script, "utf8"),
      sdkExtraCommandsPerNode: extra,
      stepMs: Object.fromEntries(Object.entries(stepMs).map(([k, v]) => [k, round(v)])),
      results: rows,
    });
    log(`wrote ${file}`);
  } finally {
    await lab.stop();
  }
}

await main();
