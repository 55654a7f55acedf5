import { describe, expect, it } from "vitest";
import { type Bmi, closeDriver, createBmi, openSqliteStore, type StorageDriver } from "../src/index.js";
import {
  createMemoryBoot,
  createMemoryExport,
  createMemoryIsolation,
  createMemoryStorage,
} from "../src/testing/index.js";

/** A BMI whose storage driver holds a "connection" (as the librbd back end does). */
function closableBmi(close: () => Promise<void>) {
  const store = openSqliteStore({ path: ":memory:", uid: "1", snapshotName: "s" });
  const storage: StorageDriver & AsyncDisposable = {
    ...createMemoryStorage(),
    [Symbol.asyncDispose]: close,
  };
  const bmi = createBmi({
    storage,
    export: createMemoryExport(),
    boot: createMemoryBoot(),
    isolation: createMemoryIsolation({ nodes: [] }),
    store,
  });
  return { bmi, store };
}

describe("Bmi.close()", () => {
  it("closes the drivers that hold connections, then the store, once", async () => {
    let closed = 0;
    const { bmi, store } = closableBmi(async () => {
      closed++;
    });
    await bmi.createProject({ name: "p1" });
    await Promise.all([bmi.close(), bmi.close()]);
    await bmi.close();
    expect(closed).toBe(1);
    await expect(store.projects.list()).rejects.toThrow();
  });

  it("`await using` closes it at the end of the block", async () => {
    let closed = 0;
    let used: Bmi | undefined;
    {
      await using bmi = closableBmi(async () => {
        closed++;
      }).bmi;
      used = bmi;
      expect(await used.listProjects()).toEqual([]);
    }
    expect(closed).toBe(1);
    await expect(used.createProject({ name: "p1" })).rejects.toThrow();
  });

  it("still closes the store when a driver fails to close, and reports the failure", async () => {
    const { bmi, store } = closableBmi(async () => {
      throw new Error("connection already broken");
    });
    await expect(bmi.close()).rejects.toThrow("connection already broken");
    await expect(store.projects.list()).rejects.toThrow();
  });
});

describe("closeDriver()", () => {
  it("disposes a driver that holds a connection (asyncDispose before close) and leaves others alone", async () => {
    const calls: string[] = [];
    await closeDriver({
      [Symbol.asyncDispose]: async () => void calls.push("dispose"),
      close: () => calls.push("close"),
    });
    await closeDriver({ close: async () => void calls.push("close only") });
    await closeDriver(createMemoryStorage());
    await closeDriver(undefined);
    expect(calls).toEqual(["dispose", "close only"]);
  });
});
