import { type BmiSettings, createBmi, defaultSettings, type StepHook } from "../src/index.js";
import { openSqliteStore } from "../src/store/index.js";
import {
  captureState,
  createMemoryBoot,
  createMemoryExport,
  createMemoryIsolation,
  createMemoryStorage,
} from "../src/testing/index.js";

export const MIB = 1024 * 1024;

/** A BMI on in-memory drivers and an in-memory SQLite store, with project p1 owning n1 and n2. */
export async function setup(
  options: { settings?: Partial<BmiSettings>; beforeStep?: StepHook; golden?: boolean } = {},
) {
  const storage = createMemoryStorage();
  const exporter = createMemoryExport();
  const boot = createMemoryBoot();
  const isolation = createMemoryIsolation({
    nodes: [
      { name: "n1", project: "p1", nics: [{ label: "eth0", mac: "52:54:00:00:00:01" }] },
      {
        name: "n2",
        project: "p1",
        nics: [
          { label: "eth0", mac: "52:54:00:00:00:02" },
          { label: "eth1", mac: "52:54:00:00:01:02" },
        ],
      },
      { name: "n3", project: "p2", nics: [{ label: "eth0", mac: "52:54:00:00:00:03" }] },
      { name: "free1", project: null, nics: [{ label: "eth0", mac: "52:54:00:00:00:04" }] },
    ],
    networks: ["prov"],
  });
  const settings = defaultSettings({ provisioningNetwork: "prov", ...options.settings });
  const store = openSqliteStore({ path: ":memory:", uid: settings.uid, snapshotName: settings.snapshotName });
  let hook: StepHook | undefined = options.beforeStep;
  const bmi = createBmi({
    storage,
    export: exporter,
    boot,
    isolation,
    store,
    settings,
    beforeStep: (info) => hook?.(info),
  });
  await bmi.createProject({ name: "p1" });
  await bmi.createProject({ name: "p2" });
  if (options.golden !== false) {
    await storage.create("centos7", 4 * MIB);
    await bmi.importImage({ project: "p1", source: "centos7", name: "golden" });
  }
  const state = () =>
    captureState({ storage, export: exporter, boot, isolation, nodes: ["n1", "n2", "n3", "free1"], store });
  return {
    bmi,
    storage,
    exporter,
    boot,
    isolation,
    store,
    settings,
    state,
    setHook: (h: StepHook | undefined) => {
      hook = h;
    },
  };
}

export type Env = Awaited<ReturnType<typeof setup>>;

/** Runs `fn` and returns what it threw (fails the test if it did not throw). */
export async function thrown(fn: () => unknown): Promise<import("../src/index.js").BmiError> {
  try {
    await fn();
  } catch (error) {
    return error as import("../src/index.js").BmiError;
  }
  throw new Error("expected the call to throw");
}
