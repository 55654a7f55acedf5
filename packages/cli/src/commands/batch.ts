import { readFile } from "node:fs/promises";
import { type BatchResult, BmiError, type BmiEvent, type ProvisionResult } from "@bmi/core";
import type { Command } from "commander";
import { EXIT, exitCodeFor } from "../exit-codes.js";
import { type Column, list } from "../output.js";
import type { CliContext } from "./context.js";
import { bootInput, provisionedLine, withBootOptions } from "./node.js";
import { integer, withColumns } from "./options.js";
import { describeEvent, runTasks, type TaskView } from "./progress.js";

interface BatchEntry {
  node: string;
  disk: string;
  nic?: string;
}

type Row = BatchResult<ProvisionResult>;

/** A batch's row as scripts read it: `{node, ok, provisioning}` or `{node, ok, error}` (the error's JSON). */
type BatchRow =
  | { node: string; ok: true; provisioning: ProvisionResult }
  | { node: string; ok: false; error: ReturnType<BmiError["toJSON"]> };

const COLUMNS: Column<BatchRow>[] = [
  { name: "node", get: (r) => r.node },
  { name: "ok", get: (r) => r.ok },
  { name: "disk", get: (r) => (r.ok ? r.provisioning.disk : null) },
  { name: "target", get: (r) => (r.ok ? r.provisioning.target.name : null) },
  { name: "error", get: (r) => (r.ok ? null : `${r.error.message} (${r.error.code})`) },
];

function batchRow(r: Row): BatchRow {
  return r.ok
    ? { node: r.node, ok: true, provisioning: r.value }
    : { node: r.node, ok: false, error: r.error.toJSON() };
}

/** `bmi provision-many`: the SDK's provisionMany over a batch file, with a live view per node. */
export function registerBatch(program: Command, ctx: CliContext): void {
  withBootOptions(
    withColumns(program.command("provision-many"))
      .description("provision many nodes at once, with progress; each line of <file>: node disk [nic]")
      .argument("<project>")
      .argument(
        "<file>",
        "one node per line: `node disk [nic]` (# comments), or a JSON array of {node, disk, nic?}",
      )
      .option("--image <image>", "create each missing disk from this image")
      .option("--concurrency <n>", "nodes at once", integer(1, 256), 4),
  ).action(
    ctx.action(
      async (
        g,
        project: string,
        file: string,
        o: { concurrency: number } & Parameters<typeof bootInput>[0],
      ) => {
        const entries = parseBatch(await readBatchFile(file));
        const { bmi } = ctx.connect(g);
        const inputs = entries.map((e) => ({ project, ...e, ...bootInput(o) }));
        let results: Row[] = [];
        const batch = bmi.provisionMany(inputs, { concurrency: o.concurrency, ...ctx.call });
        const views = new Map<string, TaskView>();
        const off = bmi.on(nodeEvents(views));
        try {
          await runTasks(
            ctx,
            g,
            entries.map((e) => ({ title: `${e.node} ← ${e.disk}`, run: (view) => nodeTask(e.node, view) })),
            { concurrent: true },
          ).catch(() => {});
        } finally {
          off();
        }
        async function nodeTask(node: string, view: TaskView): Promise<void> {
          views.set(node, view);
          results = await batch;
          const result = results.find((r) => r.node === node);
          if (result?.ok) view.title = provisionedLine(result.value);
          else if (result) throw result.error;
        }
        results = await batch;
        const failed = results.find((r) => !r.ok);
        return list(
          results.map(batchRow),
          COLUMNS,
          failed && !failed.ok ? exitCodeFor(failed.error) : EXIT.ok,
        );
      },
    ),
  );
}

/** Feeds each node's task view from the facade's events (an operation's node is in its subject). */
function nodeEvents(views: Map<string, TaskView>): (event: BmiEvent) => void {
  const nodeOf = new Map<string, string>();
  return (event) => {
    if (event.type === "operation:started" && typeof event.subject.node === "string") {
      nodeOf.set(event.operationId, event.subject.node);
    }
    const node =
      event.type === "boot:stage"
        ? event.node
        : "operationId" in event
          ? nodeOf.get(event.operationId)
          : undefined;
    const line = describeEvent(event);
    const view = node ? views.get(node) : undefined;
    if (view && line) view.output = line;
  };
}

async function readBatchFile(file: string): Promise<string> {
  try {
    return await readFile(file, "utf8");
  } catch (cause) {
    const reason = (cause as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : "cannot be read";
    throw new BmiError("invalid_input", `the batch file ${file}: ${reason}`, {
      cause,
      details: { field: "file" },
    });
  }
}

/** A batch file: JSON array of {node, disk, nic?}, or lines `node disk [nic]`. */
export function parseBatch(text: string): BatchEntry[] {
  const trimmed = text.trim();
  const entries = trimmed.startsWith("[") ? parseJsonBatch(trimmed) : parseLineBatch(text);
  if (entries.length === 0) throw new BmiError("invalid_input", "the batch file names no nodes");
  const seen = new Set<string>();
  for (const e of entries) {
    if (seen.has(e.node))
      throw new BmiError("invalid_input", `node ${e.node} appears twice in the batch file`);
    seen.add(e.node);
  }
  return entries;
}

function parseJsonBatch(text: string): BatchEntry[] {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (cause) {
    throw new BmiError("invalid_input", "the batch file is not valid JSON", { cause });
  }
  if (!Array.isArray(value)) throw new BmiError("invalid_input", "the batch file must be a JSON array");
  return value.map((entry, i) => {
    const e = entry as Record<string, unknown>;
    if (
      typeof e?.node !== "string" ||
      typeof e.disk !== "string" ||
      (e.nic !== undefined && typeof e.nic !== "string")
    ) {
      throw new BmiError(
        "invalid_input",
        `batch entry ${i + 1} needs string node and disk (and optional nic)`,
      );
    }
    return { node: e.node, disk: e.disk, ...(typeof e.nic === "string" ? { nic: e.nic } : {}) };
  });
}

function parseLineBatch(text: string): BatchEntry[] {
  const entries: BatchEntry[] = [];
  for (const [i, raw] of text.split("\n").entries()) {
    const line = raw.replace(/#.*/, "").trim();
    if (!line) continue;
    const [node, disk, nic, extra] = line.split(/\s+/);
    if (!node || !disk || extra !== undefined) {
      throw new BmiError("invalid_input", `batch line ${i + 1}: expected \`node disk [nic]\``);
    }
    entries.push({ node, disk, ...(nic ? { nic } : {}) });
  }
  return entries;
}
