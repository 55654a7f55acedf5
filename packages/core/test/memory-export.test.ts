import { describe, expect, it } from "vitest";
import { BmiError } from "../src/errors/index.js";
import { testExportDriver } from "../src/testing/contracts/index.js";
import { createMemoryExport } from "../src/testing/index.js";

testExportDriver({
  name: "memory",
  create: async () => {
    const driver = createMemoryExport();
    return {
      driver,
      backing: (name) => ({ kind: "memory", image: name }),
      openSession: async (target) => {
        driver.setSessions(target, 1);
        return async () => {
          if ((await driver.list()).some((t) => t.target === target)) driver.setSessions(target, 0);
        };
      },
      canLogin: async (target, initiator) => driver.canLogin(target, { ...initiator, address: "127.0.0.1" }),
      restartDaemon: async () => driver.simulateRestart(),
    };
  },
});

// The same suite against a driver without ACL or CHAP: it must refuse, never export to everyone.
testExportDriver({
  name: "memory without acl/chap",
  // No ACL: initiators cannot be restricted, so the login probes have nothing to check.
  skip: { acl: true },
  create: async () => {
    const driver = createMemoryExport({ capabilities: { acl: false, chap: false } });
    return {
      driver,
      backing: (name) => ({ kind: "memory", image: name }),
      openSession: async (target) => {
        driver.setSessions(target, 2);
        return async () => {};
      },
      restartDaemon: async () => driver.simulateRestart(),
    };
  },
});

describe("memory export extras", () => {
  const request = (target: string) => ({
    target,
    backing: { kind: "memory" as const, image: target.split(":").at(-1) ?? target },
    access: { initiators: "ALL" as const },
  });

  it("fails the next call on demand, then works again", async () => {
    const driver = createMemoryExport();
    const boom = new BmiError("unavailable", "tgtd is down", { subsystem: "export" });
    driver.failNext("export", boom, 2);
    await expect(driver.export(request("iqn.2026-11.org.bmi:x"))).rejects.toBe(boom);
    await expect(driver.export(request("iqn.2026-11.org.bmi:x"))).rejects.toBe(boom);
    expect(await driver.list()).toEqual([]);
    await expect(driver.export(request("iqn.2026-11.org.bmi:x"))).resolves.toMatchObject({ lun: 1 });
  });

  it("queues injected failures in order, an injected unavailable by default, before changing anything", async () => {
    const driver = createMemoryExport();
    const boom = new BmiError("busy", "tgtd is busy", { subsystem: "export" });
    driver.failNext("export");
    driver.failNext("export", boom);
    const first = await driver.export(request("iqn.2026-11.org.bmi:q")).catch((e: unknown) => e);
    expect(first).toBeInstanceOf(BmiError);
    expect(first).toMatchObject({ code: "unavailable", subsystem: "export", retryable: true });
    await expect(driver.export(request("iqn.2026-11.org.bmi:q"))).rejects.toBe(boom);
    expect(await driver.list()).toEqual([]);
    await expect(driver.export(request("iqn.2026-11.org.bmi:q"))).resolves.toMatchObject({ lun: 1 });
  });

  it("a cancelled call is refused before its injected failure is used up", async () => {
    const driver = createMemoryExport();
    driver.failNext("unexport");
    const controller = new AbortController();
    controller.abort();
    const error = await driver.list({ signal: controller.signal }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "cancelled", subsystem: "export" });
    await driver.export(request("iqn.2026-11.org.bmi:c"));
    const cancelled = await driver
      .unexport("iqn.2026-11.org.bmi:c", { signal: controller.signal })
      .catch((e: unknown) => e);
    expect(cancelled).toMatchObject({ code: "cancelled" });
    await expect(driver.unexport("iqn.2026-11.org.bmi:c")).rejects.toMatchObject({ code: "unavailable" });
    await driver.unexport("iqn.2026-11.org.bmi:c");
    expect(await driver.list()).toEqual([]);
  });

  it("refuses backings its capabilities exclude", async () => {
    const driver = createMemoryExport({ capabilities: { backings: ["memory"] } });
    const error = await driver
      .export({ ...request("iqn.2026-11.org.bmi:f"), backing: { kind: "file", path: "/tmp/x" } })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BmiError);
    expect((error as BmiError).code).toBe("unsupported");
  });

  it("reports the configured portal and port", async () => {
    const driver = createMemoryExport({ portal: "10.0.0.5", port: 3261 });
    const result = await driver.export(request("iqn.2026-11.org.bmi:p"));
    expect(result).toMatchObject({ portal: "10.0.0.5", port: 3261, lun: 1, sessions: 0 });
  });

  it("setSessions on a missing target is not_found", () => {
    const driver = createMemoryExport();
    expect(() => driver.setSessions("iqn.2026-11.org.bmi:none", 1)).toThrow(/does not exist/);
  });

  it("an address ACL accepts a CIDR range", async () => {
    const driver = createMemoryExport();
    await driver.export({
      ...request("iqn.2026-11.org.bmi:c"),
      access: { initiators: { addresses: ["10.1.0.0/16"] } },
    });
    expect(driver.canLogin("iqn.2026-11.org.bmi:c", { address: "10.1.200.3" })).toBe(true);
    expect(driver.canLogin("iqn.2026-11.org.bmi:c", { address: "10.2.0.1" })).toBe(false);
  });
});
