/**
 * Issue 20 "done when": a project outside the workspace installs the packed tarballs of every
 * published package, type-checks against their .d.ts files with strict TypeScript and
 * `skipLibCheck: false`, and runs a node:test file using `createMemoryBmi` without vitest installed.
 *
 * Installed with pnpm from its store (`--prefer-offline`), whose strict layout fails an import of
 * anything a package forgot to declare. Dependencies resolve fresh from the published ranges, as
 * a user's would, except better-sqlite3's own dependency tree: pinned to the workspace lockfile's
 * versions, so pnpm's side-effects cache (keyed by that tree) reuses the addon the workspace
 * compiled instead of a second native build (60 s on an idle 2-core host, minutes on a busy one).
 */
import { existsSync } from "node:fs";
import { cp, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const ROOT = resolve(fileURLToPath(new URL("../..", import.meta.url)));
const FIXTURE = fileURLToPath(new URL("./fixture", import.meta.url));
const NODE_DIR = resolve(dirname(process.execPath), "..");
let project: string;
let tarballs: Map<string, string>;

/** The workspace's published packages (not private), by name, with their directories. */
async function publishedPackages(): Promise<{ name: string; dir: string }[]> {
  const dirs = await readdir(join(ROOT, "packages"));
  const all = await Promise.all(
    dirs.map(async (d) => {
      const dir = join(ROOT, "packages", d);
      const manifest = JSON.parse(await readFile(join(dir, "package.json"), "utf8"));
      return manifest.private ? null : { name: manifest.name as string, dir };
    }),
  );
  return all.filter((p) => p !== null);
}

/** The version the workspace pins for a dev tool, so the consumer installs the same one. */
async function rootDevVersion(name: string): Promise<string> {
  return JSON.parse(await readFile(join(ROOT, "package.json"), "utf8")).devDependencies[name];
}

/**
 * `name -> version` for `root` and everything it depends on, from the workspace lockfile's
 * `snapshots:` section (lines `  name@version:` and, under them, `      dep: version`).
 */
async function lockedClosure(root: string): Promise<Record<string, string>> {
  const text = await readFile(join(ROOT, "pnpm-lock.yaml"), "utf8");
  const snapshots = text.slice(text.indexOf("\nsnapshots:\n"));
  const deps = new Map<string, Record<string, string>>();
  let current: Record<string, string> | undefined;
  for (const line of snapshots.split("\n")) {
    const entry = /^ {2}('?)(@?[^@\s']+)@([^(:'\s]+)[^:]*\1:$/.exec(line);
    if (entry) {
      current = {};
      deps.set(`${entry[2]}@${entry[3]}`, current);
    }
    const dep = /^ {6}'?(@?[^'\s:]+)'?: '?([^('\s]+)/.exec(line);
    if (dep && current) current[dep[1] as string] = dep[2] as string;
  }
  const pinned: Record<string, string> = {};
  const visit = (name: string, version: string) => {
    if (pinned[name] !== undefined) return;
    pinned[name] = version;
    for (const [child, v] of Object.entries(deps.get(`${name}@${version}`) ?? {})) visit(child, v);
  };
  const version = [...deps.keys()].find((key) => key.startsWith(`${root}@`))?.slice(root.length + 1);
  if (version === undefined) throw new Error(`${root} is not in pnpm-lock.yaml`);
  visit(root, version);
  return pinned;
}

const run = (file: string, args: string[], cwd: string) =>
  execa(file, args, { cwd, reject: false, all: true, env: { npm_config_nodedir: NODE_DIR, CI: "true" } });

beforeAll(async () => {
  project = await mkdtemp(join(tmpdir(), "bmi-consumer-"));
  const packs = join(project, "tarballs");
  // Tarballs are made from dist/: bring it up to date first (a no-op after `npm test`'s build).
  expect((await run("pnpm", ["-s", "exec", "tsc", "-b"], ROOT)).exitCode).toBe(0);
  tarballs = new Map();
  for (const { name, dir } of await publishedPackages()) {
    const packed = await run("pnpm", ["pack", "--pack-destination", packs], dir);
    expect(packed.exitCode, packed.all).toBe(0);
    const file = (await readdir(packs)).find((f) =>
      f.startsWith(`${name.replace("@", "").replace("/", "-")}-`),
    );
    expect(file, `tarball of ${name}`).toBeDefined();
    tarballs.set(name, join(packs, file as string));
  }
  await cp(FIXTURE, join(project, "app"), { recursive: true });
}, 300_000);

afterAll(async () => {
  if (project) await rm(project, { recursive: true, force: true });
});

describe("a consumer project outside the workspace", () => {
  const app = () => join(project, "app");

  it("the tarballs carry LICENSE, dist and ranges, never .tsbuildinfo or workspace: specifiers", async () => {
    for (const [name, file] of tarballs) {
      const listed = (await run("tar", ["-tzf", file], project)).stdout.split("\n");
      expect(listed, name).toContain("package/LICENSE");
      expect(
        listed.some((f) => f.endsWith(".tsbuildinfo")),
        name,
      ).toBe(false);
      const manifest = (await run("tar", ["-xOzf", file, "package/package.json"], project)).stdout;
      expect(manifest, name).not.toMatch(/workspace:/);
    }
  });

  it("installs the tarballs, without vitest", { timeout: 240_000 }, async () => {
    const manifest = JSON.parse(await readFile(join(app(), "package.json"), "utf8"));
    // Every @bmi/* package (also those the packages depend on) comes from its tarball.
    const fromTarballs = Object.fromEntries([...tarballs].map(([name, file]) => [name, `file:${file}`]));
    manifest.dependencies = { "@bmi/core": fromTarballs["@bmi/core"] };
    manifest.devDependencies = {
      typescript: await rootDevVersion("typescript"),
      "@types/node": await rootDevVersion("@types/node"),
    };
    manifest.pnpm = { overrides: { ...(await lockedClosure("better-sqlite3")), ...fromTarballs } };
    await writeFile(join(app(), "package.json"), `${JSON.stringify(manifest, null, 2)}\n`);
    // Its own pnpm-workspace.yaml (the temp dir is outside ours): allow better-sqlite3's build.
    await writeFile(join(app(), "pnpm-workspace.yaml"), "allowBuilds:\n  better-sqlite3: true\n");
    const installed = await run("pnpm", ["install", "--prefer-offline"], app());
    expect(installed.exitCode, installed.all).toBe(0);
    expect(existsSync(join(app(), "node_modules/@bmi/core/package.json"))).toBe(true);
    expect(existsSync(join(app(), "node_modules/vitest"))).toBe(false);
  });

  it("type-checks with strict TypeScript and skipLibCheck: false", async () => {
    const built = await run("pnpm", ["-s", "run", "build"], app());
    expect(built.exitCode, built.all).toBe(0);
  });

  it("runs its node:test file against createMemoryBmi", async () => {
    const tested = await run("pnpm", ["-s", "run", "test"], app());
    expect(tested.exitCode, tested.all).toBe(0);
    expect(tested.all).toMatch(/# pass 2/);
    expect(tested.all).toMatch(/# fail 0/);
  });
});
