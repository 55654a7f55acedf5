// Shared by the benchmarks: statistics, Markdown tables, machine facts and the JSON results file.
import { mkdir, writeFile } from "node:fs/promises";
import { cpus, totalmem } from "node:os";
import { join } from "node:path";
import type { CommandRunner } from "@bmi/core";
import { execa } from "execa";

export const median = (xs: readonly number[]): number => {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
};

export const round = (x: number, digits = 0): number => Number(x.toFixed(digits));

/** A Markdown table; numbers are printed as given, so round them first. */
export function table(headers: readonly string[], rows: readonly (readonly (string | number)[])[]): string {
  const cells = [headers, ...rows].map((r) => r.map(String));
  const widths = headers.map((_, i) => Math.max(3, ...cells.map((r) => (r[i] ?? "").length)));
  const line = (r: readonly string[]) => `| ${r.map((c, i) => c.padEnd(widths[i] ?? 3)).join(" | ")} |`;
  return [
    line(cells[0] ?? []),
    `| ${widths.map((w) => "-".repeat(w)).join(" | ")} |`,
    ...cells.slice(1).map(line),
  ].join("\n");
}

async function versionOf(pkg: string): Promise<string | null> {
  const r = await execa("dpkg-query", ["-W", `-f=${"$"}{Version}`, pkg], { reject: false });
  return r.exitCode === 0 && r.stdout ? r.stdout : null;
}

/** What the figures depend on: cores, memory, load, and the versions of everything measured. */
export async function machine() {
  const [ceph, tgt, qemu] = await Promise.all([
    versionOf("ceph-common"),
    versionOf("tgt"),
    versionOf("qemu-system-x86"),
  ]);
  const { loadavg } = await import("node:os");
  return {
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? "unknown",
    memoryGiB: round(totalmem() / 1024 ** 3, 1),
    loadAverage: loadavg().map((l) => round(l, 2)),
    node: process.version,
    ceph,
    tgt,
    qemu,
  };
}

/** Writes `bench/results/<name>-<timestamp>.json` with the machine facts; returns the path. */
export async function writeResult(name: string, data: Record<string, unknown>): Promise<string> {
  const dir = join(import.meta.dirname, "results");
  await mkdir(dir, { recursive: true });
  const file = join(dir, `${name}-${new Date().toISOString().replaceAll(":", "-")}.json`);
  const body = { benchmark: name, date: new Date().toISOString(), machine: await machine(), ...data };
  await writeFile(file, `${JSON.stringify(body, null, 2)}\n`);
  return file;
}

const RBD_VERBS = new Set([
  "info",
  "ls",
  "create",
  "rm",
  "clone",
  "flatten",
  "cp",
  "snap",
  "children",
  "import",
  "export",
]);

/** Wraps a runner and adds up the wall time spent inside external commands (the floor's share). */
export function timingRunner(inner: CommandRunner): CommandRunner & {
  totalMs(): number;
  calls(): number;
  reset(): void;
  byCommand(): Record<string, number>;
} {
  let total = 0;
  let count = 0;
  let counts: Record<string, number> = {};
  const run: CommandRunner = async (file, args, options) => {
    const started = performance.now();
    try {
      return await inner(file, args, options);
    } finally {
      total += performance.now() - started;
      count++;
      // "rbd clone", "tgtadm target/show"...: enough to spot redundant calls.
      const key = file.endsWith("tgtadm")
        ? `tgtadm ${args[args.indexOf("--mode") + 1]}/${args[args.indexOf("--op") + 1]}`
        : `${file.split("/").pop()} ${args.find((a) => RBD_VERBS.has(a)) ?? ""}`;
      counts[key] = (counts[key] ?? 0) + 1;
    }
  };
  return Object.assign(run, {
    totalMs: () => total,
    calls: () => count,
    byCommand: () => ({ ...counts }),
    reset: () => {
      total = 0;
      count = 0;
      counts = {};
    },
  });
}

export const log = (message: string) => process.stderr.write(`[bench] ${message}\n`);

/** One external command the SDK ran (for floors that replay the SDK's own command lines). */
export interface Recorded {
  file: string;
  args: string[];
}

/** Records every command line (for the script's templates) on top of the timing runner. */
export function recordingRunner(inner: CommandRunner): CommandRunner & { take(): Recorded[] } {
  let calls: Recorded[] = [];
  const run: CommandRunner = (file, args, options) => {
    calls.push({ file, args: [...args] });
    return inner(file, args, options);
  };
  return Object.assign(run, {
    take: () => {
      const taken = calls;
      calls = [];
      return taken;
    },
  });
}

/** The tgtadm calls a target needs (new target, its LUN, its ACL; delete), not the SDK's checks. */
export function isEssentialTgtadm(c: Recorded): boolean {
  const a = c.args;
  const op = (mode: string, o: string) => a.includes(mode) && a[a.indexOf("--op") + 1] === o;
  return op("target", "new") || op("logicalunit", "new") || op("target", "bind") || op("target", "delete");
}

/**
 * Stops `lab` (its daemons by PID, its namespace and temp dir) on Ctrl-C or SIGTERM before the
 * process exits (130), so an interrupted benchmark leaves nothing running, as a failed one does.
 * Returns the function that removes the handlers (for a lab stopped normally).
 */
export function stopOnSignal(lab: { stop(): Promise<unknown> }): () => void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    // Kept for a second signal too (e.g. tsx relays one): the process stays until the lab is down.
    if (stopping) return;
    stopping = true;
    log(`${signal}: stopping the lab`);
    // The work still running fails as its store and daemons go away; those failures must not end
    // the process before the stop has finished (that would leave the daemons running).
    process.on("unhandledRejection", () => {});
    process.on("uncaughtException", () => {});
    void lab.stop().finally(() => process.exit(130));
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  return () => {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  };
}
