import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type BmiConfig, loadConfig, resolveBmi, TOKENS } from "@bmi/core";
import { container } from "@bmi/core/di";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createBmiFromConfig, createDriversFromConfig, registerFromConfig } from "../src/index.js";

const SAMPLE = new URL("../../../docs/samples/bmi_config.cfg", import.meta.url);
let dir: string;

/** The sample config with its database and TFTP root in a temp directory (nothing else is touched). */
async function config(fs: Record<string, string> = {}): Promise<BmiConfig> {
  const keys = Object.entries(fs).map(([key, value]) => `${key} = ${value}\n`);
  const text = (await readFile(SAMPLE, "utf8"))
    .replace("tftp_root = /var/lib/tftpboot", `tftp_root = ${dir}/tftp`)
    .replace("path = /var/lib/bmi/bmi.db", `path = ${dir}/bmi.db`)
    .replace("path = /var/log/bmi/", `path = ${dir}/`)
    .replace("[fs]\n", `[fs]\n${keys.join("")}`);
  return loadConfig({ text, env: {} }).config;
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "bmi-wiring-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("createBmiFromConfig", () => {
  it("wires the store at [db] path and every driver, and close() closes them", async () => {
    const wired = createBmiFromConfig(await config({ client: "librbd" }), { createStore: true });
    expect(Object.keys(wired.drivers).sort()).toEqual(["boot", "export", "isolation", "power", "storage"]);
    expect(wired.settings.uid).toBe("1");
    await wired.bmi.createProject({ name: "p1" });
    await wired.close();
    // The librbd back end's connection is closed (it refuses work) and so is the database.
    await expect(wired.drivers.storage.exists("anything")).rejects.toThrow(/storage driver is closed/);
    await expect(wired.store.projects.list()).rejects.toThrow();
    // What it wrote is in the file at [db] path.
    const again = createBmiFromConfig(await config());
    expect((await again.bmi.listProjects()).map((p) => p.name)).toEqual(["p1"]);
    await again.close();
  });

  it("`await using` closes it; without createStore a missing database is refused", async () => {
    const cfg = await config({ client: "librbd" });
    expect(() => createBmiFromConfig(cfg)).toThrow(/bmi db init/);
    let storage: { exists(name: string): Promise<boolean> } | undefined;
    {
      await using wired = createBmiFromConfig(cfg, { createStore: true });
      storage = wired.drivers.storage;
    }
    await expect(storage.exists("anything")).rejects.toThrow(/closed/);
  });

  it("createDriversFromConfig builds only the drivers asked for", async () => {
    const drivers = createDriversFromConfig(await config(), {}, ["boot", "isolation"]);
    expect(Object.keys(drivers).sort()).toEqual(["boot", "isolation"]);
    expect(drivers.isolation.client).toBeDefined();
  });
});

describe("registerFromConfig", () => {
  it("registers what createBmiFromConfig wires, and the resolved BMI closes it", async () => {
    const child = container.createChildContainer();
    const { store, drivers } = registerFromConfig(child, await config(), { createStore: true });
    expect(child.resolve(TOKENS.store)).toBe(store);
    // The power driver too: a DI-wired BMI can power nodes like createBmiFromConfig's.
    expect(child.resolve(TOKENS.power)).toBe(drivers.power);
    const bmi = resolveBmi(child);
    await bmi.createProject({ name: "p1" });
    expect((await store.projects.list()).map((p) => p.name)).toContain("p1");
    await bmi.close();
    await expect(store.projects.list()).rejects.toThrow();
  });
});
