/**
 * `@bmi/core/testing` must load in any test runner (issue 20.5): Jest and node:test users cannot
 * install vitest just to get `createMemoryBmi`. Runs the built kit (what a consumer gets) in a
 * plain Node process where importing vitest throws.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { execa } from "execa";
import { expect, it } from "vitest";

const kit = join(import.meta.dirname, "../dist/testing/index.js");

const BLOCK_VITEST = `
export async function resolve(specifier, context, next) {
  if (specifier === "vitest" || specifier.startsWith("vitest/") || specifier.startsWith("@vitest/"))
    throw new Error("vitest imported by " + context.parentURL);
  return next(specifier, context);
}`;

const USE_KIT = `
const { createMemoryBmi } = await import(${JSON.stringify(pathToFileURL(kit).href)});
const { bmi } = createMemoryBmi({ isolation: { nodes: [] } });
await bmi.createProject({ name: "p1" });
console.log(JSON.stringify(bmi.listProjects().map((p) => p.name)));`;

it("loads createMemoryBmi in plain Node, without vitest", async () => {
  expect(existsSync(kit), `${kit} is missing: build first (pnpm exec tsc -b)`).toBe(true);
  const dir = mkdtempSync(join(tmpdir(), "bmi-kit-"));
  try {
    const hook = join(dir, "block-vitest.mjs");
    writeFileSync(hook, BLOCK_VITEST);
    const register = `data:text/javascript,import{register}from"node:module";register(${JSON.stringify(pathToFileURL(hook).href)});`;
    const result = await execa(
      process.execPath,
      ["--import", register, "--input-type=module", "-e", USE_KIT],
      {
        reject: false,
      },
    );
    expect(result.stderr).toBe("");
    expect(result.stdout.trim()).toBe('["p1"]');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
