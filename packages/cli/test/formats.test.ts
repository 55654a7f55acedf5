import type { MemoryBmi } from "@bmi/core/testing";
import { parse as parseCsv } from "csv-parse/sync";
import { beforeAll, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { EXIT } from "../src/index.js";
import { cliOn, memoryDeployment } from "./harness.js";

// Issue 21 point 1: every list and show in every format, parsed back; headers; empty lists.

let memory: MemoryBmi;
let bmi: ReturnType<typeof cliOn>;
beforeAll(async () => {
  memory = await memoryDeployment();
  bmi = cliOn(memory);
});

/** Each list, the columns its table shows, and what its first row's first column must be. */
const LISTS: { argv: string[]; columns: string[]; first: string; rows: number }[] = [
  { argv: ["project", "ls"], columns: ["id", "name"], first: "1", rows: 2 },
  {
    argv: ["ls", "p1"],
    columns: ["name", "id", "kind", "cephName", "parent", "isPublic"],
    first: "golden",
    rows: 2,
  },
  {
    argv: ["image", "ls", "p1"],
    columns: ["name", "id", "kind", "cephName", "parent", "isPublic"],
    first: "golden",
    rows: 2,
  },
  {
    argv: ["disk", "ls", "p1"],
    columns: ["name", "parent", "target", "node", "id", "cephName"],
    first: "d1",
    rows: 1,
  },
  {
    argv: ["showdisks", "p1"],
    columns: ["name", "parent", "target", "node", "id", "cephName"],
    first: "d1",
    rows: 1,
  },
  {
    argv: ["nodes"],
    columns: ["node", "project", "disk", "nic", "mac", "target", "firmware", "network", "createdAt"],
    first: "n1",
    rows: 1,
  },
  {
    argv: ["node", "ls", "p1"],
    columns: ["node", "project", "disk", "nic", "mac", "target", "firmware", "network", "createdAt"],
    first: "n1",
    rows: 1,
  },
  {
    argv: ["snap", "ls", "p1"],
    columns: ["name", "id", "cephName", "parent", "isPublic"],
    first: "s1",
    rows: 1,
  },
  { argv: ["iscsi", "ls", "p1"], columns: ["image", "target", "portal", "lun"], first: "other", rows: 2 },
  {
    argv: ["db", "ls"],
    columns: ["id", "name", "project", "cephName", "isPublic", "isSnapshot", "parent"],
    first: "1",
    rows: 4,
  },
];

const SHOWS: { argv: string[]; fields: Record<string, unknown> }[] = [
  { argv: ["project", "show", "p2"], fields: { id: 2, name: "p2" } },
  { argv: ["image", "show", "p1", "golden"], fields: { name: "golden", kind: "golden", parent: null } },
  { argv: ["image", "show", "p1", "s1"], fields: { name: "s1", kind: "snapshot", parent: "golden" } },
  { argv: ["disk", "show", "p1", "d1"], fields: { name: "d1", parent: "golden", node: "n1" } },
  {
    argv: ["node", "show", "p1", "n1"],
    fields: { node: "n1", disk: "d1", nic: "eth0", mac: "52:54:00:00:00:01" },
  },
  { argv: ["power", "status", "p1", "n1"], fields: { node: "n1", project: "p1", power: "off" } },
];

describe("lists in every format", () => {
  it.each(LISTS)("$argv", async ({ argv, columns, first, rows }) => {
    const json = await bmi(...argv, "-f", "json");
    expect(json.code, json.stderr).toBe(EXIT.ok);
    const records = JSON.parse(json.stdout) as Record<string, unknown>[];
    expect(records).toHaveLength(rows);
    // --json is the same as -f json
    expect(JSON.parse((await bmi(...argv, "--json")).stdout)).toEqual(records);
    expect(parseYaml((await bmi(...argv, "-f", "yaml")).stdout)).toEqual(records);

    const csv = parseCsv((await bmi(...argv, "-f", "csv")).stdout) as string[][];
    expect(csv[0]).toEqual(columns);
    expect(csv).toHaveLength(rows + 1);
    expect(csv[1]?.[0]).toBe(first);

    const value = (await bmi(...argv, "-f", "value")).stdout.trimEnd().split("\n");
    expect(value).toHaveLength(rows);
    expect(value[0]?.split("\t")).toEqual(csv[1]);

    const table = (await bmi(...argv)).stdout.split("\n");
    for (const column of columns) expect(table[1]).toContain(column);
    expect(table.join("\n")).toContain(first);
  });

  it("-c picks columns in its order (repeated or comma-separated), in every format", async () => {
    const json = JSON.parse((await bmi("disk", "ls", "p1", "-f", "json", "-c", "node", "-c", "name")).stdout);
    expect(json).toEqual([{ node: "n1", name: "d1" }]);
    expect((await bmi("disk", "ls", "p1", "-f", "csv", "-c", "node,name")).stdout).toBe("node,name\nn1,d1\n");
    expect((await bmi("disk", "ls", "p1", "-f", "value", "-c", "name")).stdout).toBe("d1\n");
    expect(parseYaml((await bmi("node", "show", "p1", "n1", "-f", "yaml", "-c", "disk")).stdout)).toEqual({
      disk: "d1",
    });
    // db ls keeps the original's -c (clones): columns are --column there.
    expect((await bmi("db", "ls", "-c", "-f", "value", "--column", "name")).stdout).toBe("d1\n");
  });

  it("an unknown column is invalid input naming the known ones", async () => {
    const r = await bmi("nodes", "-c", "nope", "--json");
    expect(r.code).toBe(EXIT.usage);
    expect(JSON.parse(r.stdout).error).toMatchObject({
      code: "invalid_input",
      message: expect.stringMatching(/^unknown column nope: the columns are node, project, disk/),
    });
  });
});

describe("empty lists", () => {
  it("say so in a table, and are empty (with headers in CSV) for machines", async () => {
    expect(await bmi("ls", "p2")).toMatchObject({ code: EXIT.ok, stdout: "no results\n" });
    expect(JSON.parse((await bmi("ls", "p2", "-f", "json")).stdout)).toEqual([]);
    expect(parseYaml((await bmi("ls", "p2", "-f", "yaml")).stdout)).toEqual([]);
    expect((await bmi("ls", "p2", "-f", "csv")).stdout).toBe("name,id,kind,cephName,parent,isPublic\n");
    expect((await bmi("ls", "p2", "-f", "value")).stdout).toBe("");
    expect((await bmi("nodes", "p2")).stdout).toBe("no results\n");
  });
});

describe("shows in every format", () => {
  it.each(SHOWS)("$argv", async ({ argv, fields }) => {
    const json = await bmi(...argv, "-f", "json");
    expect(json.code, json.stderr).toBe(EXIT.ok);
    const record = JSON.parse(json.stdout);
    expect(record).toMatchObject(fields);
    expect(parseYaml((await bmi(...argv, "-f", "yaml")).stdout)).toEqual(record);
    const [head, row, ...rest] = parseCsv((await bmi(...argv, "-f", "csv")).stdout) as string[][];
    expect(rest).toEqual([]);
    const names = Object.keys(fields);
    for (const name of names) {
      const i = head?.indexOf(name) ?? -1;
      expect(i, name).toBeGreaterThanOrEqual(0);
      expect(row?.[i]).toBe(fields[name] === null ? "" : String(fields[name]));
    }
    const value = (await bmi(...argv, "-f", "value")).stdout.split("\n");
    expect(value.slice(0, -1)).toEqual(row);
    const table = (await bmi(...argv)).stdout;
    expect(table).toMatch(/│ field +│ value/);
    for (const name of names) expect(table).toMatch(new RegExp(`│ ${name} +│`));
  });

  it("a missing one is not found", async () => {
    const r = await bmi("disk", "show", "p1", "nope", "--json");
    expect(r.code).toBe(EXIT.notFound);
    expect(JSON.parse(r.stdout).error).toMatchObject({
      code: "not_found",
      message: "disk nope in project p1 not found",
    });
    expect((await bmi("project", "show", "ghost")).stderr).toMatch(
      /^bmi: error: project ghost not found \(not_found\)$/m,
    );
    expect((await bmi("node", "show", "p1", "n2")).code).toBe(EXIT.notFound);
  });
});
