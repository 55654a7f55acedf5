/**
 * Cheap, honest imports (issue 20.5), checked on the built package (what a consumer gets) in a
 * plain Node process whose resolver throws on the modules that must not load:
 * - `@bmi/core/testing` loads in any test runner (Jest and node:test users have no vitest);
 * - `@bmi/core` loads no native addon and installs no global polyfill until asked.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { execa } from "execa";
import { afterAll, expect, it } from "vitest";

const dist = join(import.meta.dirname, "../dist");
const dir = mkdtempSync(join(tmpdir(), "bmi-imports-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Runs `script` (an ES module) with every import of a `blocked` package failing loudly. */
async function runBlocking(blocked: string[], script: string) {
  const hook = join(dir, `block-${blocked.join("-").replaceAll("/", "_")}.mjs`);
  writeFileSync(
    hook,
    `const blocked = ${JSON.stringify(blocked)};
export async function resolve(specifier, context, next) {
  if (blocked.some((b) => specifier === b || specifier.startsWith(b + "/")))
    throw new Error(specifier + " imported by " + context.parentURL);
  return next(specifier, context);
}`,
  );
  const register = `data:text/javascript,import{register}from"node:module";register(${JSON.stringify(pathToFileURL(hook).href)});`;
  return execa(process.execPath, ["--import", register, "--input-type=module", "-e", script], {
    reject: false,
  });
}

const url = (path: string) => JSON.stringify(pathToFileURL(join(dist, path)).href);

it("loads createMemoryBmi in plain Node, without vitest", async () => {
  expect(
    existsSync(join(dist, "testing/index.js")),
    `${dist} is missing: build first (pnpm exec tsc -b)`,
  ).toBe(true);
  const result = await runBlocking(
    ["vitest", "@vitest"],
    `const { createMemoryBmi } = await import(${url("testing/index.js")});
const { bmi } = createMemoryBmi({ isolation: { nodes: [] } });
await bmi.createProject({ name: "p1" });
console.log(JSON.stringify((await bmi.listProjects()).map((p) => p.name)));`,
  );
  expect(result.stderr).toBe("");
  expect(result.stdout.trim()).toBe('["p1"]');
});

it("imports @bmi/core without the SQLite addon or the reflect-metadata polyfill", async () => {
  const result = await runBlocking(
    ["better-sqlite3", "reflect-metadata", "tsyringe"],
    `const core = await import(${url("index.js")});
const error = new core.BmiError("not_found", "x");
console.log(JSON.stringify({ code: error.code, reflect: typeof Reflect.getMetadata }));`,
  );
  expect(result.stderr).toBe("");
  expect(JSON.parse(result.stdout)).toEqual({ code: "not_found", reflect: "undefined" });
});
