import { BmiError } from "@bmi/core";
import Table from "cli-table3";
import { stringify as csv } from "csv-stringify/sync";
import { stringify as yaml } from "yaml";

/** The output formats of every command (OpenStack's cliff names them the same). */
export const FORMATS = ["table", "json", "yaml", "csv", "value"] as const;
export type Format = (typeof FORMATS)[number];

/** One column of a list or show: its name (header, `-c` name, CSV and JSON key) and its value. */
export interface Column<T> {
  name: string;
  get: (row: T) => unknown;
}

/**
 * What a command produced. `list` and `show` are rendered by their columns in every format;
 * `done` is an action's result: its lines for people (table), its value for machines.
 * `exitCode` is set when the command itself decides (doctor, reconcile with drift, batches).
 */
export type Result = (
  | { kind: "list"; rows: unknown[]; columns: Column<never>[] }
  | { kind: "show"; row: unknown; columns: Column<never>[] }
  | { kind: "done"; value: unknown; lines: string[] }
) & { exitCode?: number };

export function list<T>(rows: T[], columns: Column<T>[], exitCode?: number): Result {
  return {
    kind: "list",
    rows,
    columns: columns as Column<never>[],
    ...(exitCode === undefined ? {} : { exitCode }),
  };
}

export function show<T>(row: T, columns: Column<T>[]): Result {
  return { kind: "show", row, columns: columns as Column<never>[] };
}

export function done(value: unknown, lines: string[], exitCode?: number): Result {
  return { kind: "done", value, lines, ...(exitCode === undefined ? {} : { exitCode }) };
}

/** Columns named after an object's own keys: how an action's value is shown as a record. */
function keyColumns(value: unknown): Column<never>[] {
  const record = typeof value === "object" && value !== null ? value : { value };
  return Object.keys(record).map((name) => ({ name, get: (row) => (row as Record<string, unknown>)[name] }));
}

/** The columns `-c` asked for, in its order; an unknown name is bad input naming the known ones. */
function pick(columns: Column<never>[], wanted: readonly string[]): Column<never>[] {
  const names = wanted.flatMap((w) => w.split(",")).filter((w) => w !== "");
  if (names.length === 0) return columns;
  return names.map((name) => {
    const found = columns.find((c) => c.name === name);
    if (!found) {
      throw new BmiError(
        "invalid_input",
        `unknown column ${name}: the columns are ${columns.map((c) => c.name).join(", ")}`,
        { details: { field: "column" } },
      );
    }
    return found;
  });
}

/** A cell for the text formats: nothing for null, JSON for objects. */
function cell(value: unknown): string {
  if (value === null || value === undefined) return "";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

function record(row: unknown, columns: Column<never>[]): Record<string, unknown> {
  return Object.fromEntries(columns.map((c) => [c.name, c.get(row as never)]));
}

function table(head: string[], rows: string[][]): string {
  // No colours: the output is read by people and by `grep` alike.
  const t = new Table({ head, style: { head: [], border: [] } });
  t.push(...rows);
  return `${t.toString()}\n`;
}

/** The structured value of a result: whole records unless `-c` narrowed them. */
function structured(result: Result, wanted: readonly string[]): unknown {
  if (result.kind === "done") return result.value;
  const narrowed = wanted.length > 0;
  const columns = pick(result.columns, wanted);
  if (result.kind === "show") return narrowed ? record(result.row, columns) : result.row;
  return narrowed ? result.rows.map((row) => record(row, columns)) : result.rows;
}

/**
 * Renders a result as text for stdout. JSON and YAML carry whole records (the SDK's objects), so
 * scripts see every field; `-c` narrows them, and the text formats, to the named columns.
 */
export function render(result: Result, format: Format, wanted: readonly string[] = []): string {
  if (format === "json") return `${JSON.stringify(structured(result, wanted), null, 2)}\n`;
  if (format === "yaml") return yaml(structured(result, wanted));
  if (result.kind === "done" && format === "table") return result.lines.map((l) => `${l}\n`).join("");
  const rows = result.kind === "list" ? result.rows : [result.kind === "show" ? result.row : result.value];
  const all = result.kind === "done" ? keyColumns(result.value) : result.columns;
  const columns = pick(all, wanted);
  const cells = rows.map((row) => columns.map((c) => cell(c.get(row as never))));
  const head = columns.map((c) => c.name);
  if (format === "csv") return csv([head, ...cells]);
  if (format === "value") {
    // A list: one row per line, tab-separated (cut -f); one record: one value per line.
    if (result.kind === "list") return cells.map((r) => `${r.join("\t")}\n`).join("");
    return (cells[0] ?? []).map((v) => `${v}\n`).join("");
  }
  if (result.kind === "list") return cells.length === 0 ? "no results\n" : table(head, cells);
  return table(
    ["field", "value"],
    head.map((name, i) => [name, cells[0]?.[i] ?? ""]),
  );
}

/** The format asked for on a command line, read before parsing (usage errors honour it too). */
export function formatOf(argv: readonly string[]): Format {
  let format: Format = "table";
  for (const [i, arg] of argv.entries()) {
    if (arg === "--json") return "json";
    const value =
      arg === "-f" || arg === "--format"
        ? argv[i + 1]
        : arg.startsWith("--format=")
          ? arg.slice("--format=".length)
          : arg.startsWith("-f") && arg.length > 2
            ? arg.slice(2)
            : undefined;
    if (value && (FORMATS as readonly string[]).includes(value)) format = value as Format;
  }
  return format;
}
