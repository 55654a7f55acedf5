import { describe, expect, it } from "vitest";
import { BmiError } from "../src/index.js";
import { expectBmiError, testStorageDriver } from "../src/testing/contracts/index.js";
import { createMemoryStorage } from "../src/testing/index.js";

testStorageDriver({
  name: "memory (clone v1)",
  create: () => {
    const driver = createMemoryStorage();
    return {
      driver,
      holdWatcher: async (image) => {
        const release = driver.addWatcher(image);
        return async () => release();
      },
    };
  },
});

testStorageDriver({
  name: "memory (clone v2)",
  create: () => {
    const driver = createMemoryStorage({ cloneUnprotected: true });
    return {
      driver,
      holdWatcher: async (image) => {
        const release = driver.addWatcher(image);
        return async () => release();
      },
    };
  },
});

describe("memory storage test hooks", () => {
  it("fails the next call of a method once with the injected error, changing nothing", async () => {
    const storage = createMemoryStorage();
    storage.failNext("create", new BmiError("timeout", "injected", { subsystem: "storage" }));
    await expectBmiError(() => storage.create("a", 1), "timeout");
    expect(await storage.exists("a")).toBe(false);
    await storage.create("a", 1);
    expect(await storage.exists("a")).toBe(true);
  });

  it("injects a retryable unavailable error by default", async () => {
    const storage = createMemoryStorage();
    storage.failNext("list");
    const error = await expectBmiError(() => storage.list(), "unavailable");
    expect(error.retryable).toBe(true);
    expect(await storage.list()).toEqual([]);
  });

  it("runs the onCall hook before every call and records the calls", async () => {
    const storage = createMemoryStorage();
    const seen: string[] = [];
    storage.onCall((method, args) => {
      seen.push(`${method}:${JSON.stringify(args)}`);
      if (method === "remove") throw new BmiError("busy", "held by test", { subsystem: "storage" });
    });
    await storage.create("a", 8);
    await expectBmiError(() => storage.remove("a"), "busy");
    expect(seen).toEqual(['create:["a",8]', 'remove:["a"]']);
    expect(storage.calls.map((c) => c.method)).toEqual(["create", "remove"]);
    storage.onCall(undefined);
    await storage.remove("a");
    expect(await storage.exists("a")).toBe(false);
  });

  it("keeps a clone's content through its parent snapshot and after flatten", async () => {
    const storage = createMemoryStorage();
    const { mkdtemp, writeFile, rm } = await import("node:fs/promises");
    const { join } = await import("node:path");
    const { tmpdir } = await import("node:os");
    const dir = await mkdtemp(join(tmpdir(), "bmi-memory-storage-"));
    try {
      await writeFile(join(dir, "golden.raw"), Buffer.from("golden data"));
      await storage.importFile(join(dir, "golden.raw"), "golden");
      await storage.createSnapshot({ image: "golden", snapshot: "s" });
      await storage.protectSnapshot({ image: "golden", snapshot: "s" });
      await storage.clone({ image: "golden", snapshot: "s" }, "node1");
      expect(storage.read("node1").toString()).toBe("golden data");
      await storage.flatten("node1");
      await storage.unprotectSnapshot({ image: "golden", snapshot: "s" });
      await storage.removeSnapshot({ image: "golden", snapshot: "s" });
      await storage.remove("golden");
      expect(storage.read("node1").toString()).toBe("golden data");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
