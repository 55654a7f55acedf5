import { describe, expect, it } from "vitest";
import { BmiError } from "../src/index.js";
import { testBootDriver } from "../src/testing/contracts/index.js";
import { createMemoryBoot } from "../src/testing/index.js";

const spec = {
  node: "node-07",
  macs: ["52:54:00:aa:bb:01"],
  target: { name: "1img7", portal: "127.0.0.1", port: 3260, lun: 1 },
  firmware: "bios" as const,
  label: "disk",
};

testBootDriver({
  name: "memory",
  create: async () => {
    const driver = createMemoryBoot();
    return { driver, fileExists: (path) => driver.files.has(path) };
  },
});

testBootDriver({
  name: "memory (bios only)",
  create: async () => {
    const driver = createMemoryBoot({ firmware: ["bios"] });
    return { driver, fileExists: (path) => driver.files.has(path) };
  },
});

describe("createMemoryBoot failure injection", () => {
  it("failNext fails one call, changes nothing, and the next call works", async () => {
    const driver = createMemoryBoot();
    driver.failNext("write");
    await expect(driver.write(spec)).rejects.toMatchObject({ code: "unavailable", subsystem: "boot" });
    expect(driver.files.size).toBe(0);
    await driver.write(spec);
    expect(driver.files.size).toBe(2);
  });

  it("failWith can fail one node's removal with a chosen error", async () => {
    const driver = createMemoryBoot({
      failWith: (operation, node) =>
        operation === "remove" && node === "node-07"
          ? new BmiError("busy", "in use", { subsystem: "boot" })
          : undefined,
    });
    await driver.write(spec);
    await expect(driver.remove("node-07")).rejects.toMatchObject({ code: "busy" });
    expect(await driver.read("node-07")).not.toBeNull();
  });

  it("renders a script that sanboots the target and a pxelinux entry that loads it", async () => {
    const driver = createMemoryBoot();
    await driver.write(spec);
    expect(driver.files.get("node-07.ipxe")).toContain("sanboot --keep iscsi:127.0.0.1::3260:1:1img7");
    expect(driver.files.get("pxelinux.cfg/01-52-54-00-aa-bb-01")).toContain("INITRD node-07.ipxe");
  });
});
