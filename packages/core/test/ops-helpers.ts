import type { AddressRange, BmiSettings, SqliteStore, StepHook } from "../src/index.js";
import { createMemoryBmi } from "../src/testing/index.js";

export const MIB = 1024 * 1024;

/** A BMI on in-memory drivers and an in-memory SQLite store, with project p1 owning n1 and n2. */
export async function setup(
  options: {
    settings?: Partial<BmiSettings>;
    beforeStep?: StepHook;
    golden?: boolean;
    store?: SqliteStore;
    nodeAddresses?: AddressRange;
  } = {},
) {
  const memory = createMemoryBmi({
    isolation: {
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
    },
    settings: { provisioningNetwork: "prov", ...options.settings },
    beforeStep: options.beforeStep,
    ...(options.store ? { store: options.store } : {}),
    ...(options.nodeAddresses ? { nodeAddresses: options.nodeAddresses } : {}),
  });
  const { bmi, storage } = memory;
  await bmi.createProject({ name: "p1" });
  await bmi.createProject({ name: "p2" });
  if (options.golden !== false) {
    await storage.create("centos7", 4 * MIB);
    await bmi.importImage({ project: "p1", source: "centos7", name: "golden" });
  }
  return { ...memory, exporter: memory.export, settings: bmi.settings, setHook: memory.setBeforeStep };
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
