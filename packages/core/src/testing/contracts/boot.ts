import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { TargetInfo } from "../../domain/model.js";
import { BmiError, type ErrorCode } from "../../errors/index.js";
import type { BootDriver, BootEntry, BootSpec } from "../../ports/boot.js";

export interface BootDriverFixture {
  driver: BootDriver;
  /** Called after each test, also when it failed. */
  cleanup?: () => Promise<void> | void;
  /**
   * Whether a file named in `BootEntry.files` is really there (on disk, in the Map...). When
   * given, the suite checks that written files exist and removed ones are gone.
   */
  fileExists?: (relativePath: string) => Promise<boolean> | boolean;
}

export interface TestBootDriverOptions {
  name: string;
  /** A fresh, empty driver per test. */
  create: () => Promise<BootDriverFixture>;
  /** Cases a driver may switch off, each with a reason in the caller's comment. */
  skip?: { cancellation?: boolean };
  /** The driver's own cases, run inside the same describe block. */
  additionalTests?: () => void;
}

const TARGET: TargetInfo = {
  name: "iqn.2026-11.org.bmi:1img7",
  portal: "10.0.2.2",
  port: 3260,
  lun: 1,
};

const specOf = (overrides: Partial<BootSpec> = {}): BootSpec => ({
  node: "node-07",
  macs: ["52:54:00:aa:bb:01"],
  target: TARGET,
  firmware: "bios",
  label: "centos7-disk",
  ...overrides,
});

async function expectBmiError(promise: Promise<unknown>, code: ErrorCode): Promise<BmiError> {
  let caught: unknown;
  try {
    await promise;
  } catch (error) {
    caught = error;
  }
  expect(caught, `expected a BmiError ${code}`).toBeInstanceOf(BmiError);
  const error = caught as BmiError;
  expect(error.code).toBe(code);
  expect(error.subsystem).toBe("boot");
  return error;
}

/** What the case groups share; `driver` and `fixture` are the current case's. */
interface BootCases {
  driver(): BootDriver;
  /** Whether `path` is there; without a fileExists hook, what the driver reports (`expected`). */
  exists(path: string, expected: boolean): Promise<boolean>;
  /** Checks that every file of `entry` is there (`present`) or gone. */
  expectFiles(entry: BootEntry, present: boolean): Promise<void>;
  /** Skips the case unless the driver supports every firmware in `wanted`. */
  requireFirmware(skip: () => void, ...wanted: ("bios" | "uefi")[]): void;
}

/**
 * The BootDriver contract: every boot driver (in-memory, PXE on a TFTP root...) passes it.
 * Pattern: unstorage's `testDriver`, better-auth's `testAdapter`.
 */
export function testBootDriver(options: TestBootDriverOptions): void {
  describe(`BootDriver contract: ${options.name}`, () => {
    let fixture: BootDriverFixture | undefined;
    const current = (): BootDriverFixture => {
      if (!fixture) throw new Error("the boot driver fixture was not created");
      return fixture;
    };

    beforeEach(async () => {
      fixture = await options.create();
    });
    afterEach(async () => {
      const done = fixture;
      fixture = undefined;
      await done?.cleanup?.();
    });

    const cases = bootCases(current);
    writeCases(cases);
    removeCases(cases);
    macCases(cases);
    firmwareCases(cases);
    hostileInputCases(cases, options);

    options.additionalTests?.();
  });
}

function bootCases(current: () => BootDriverFixture): BootCases {
  const driver = () => current().driver;
  // Without a fileExists hook the suite checks what the driver reports, not the files behind it.
  const exists = async (path: string, expected: boolean) => {
    const { fileExists } = current();
    return fileExists ? await fileExists(path) : expected;
  };
  return {
    driver,
    exists,
    async expectFiles(entry, present) {
      for (const file of entry.files) expect(await exists(file, present), file).toBe(present);
    },
    // Capabilities are known only once the driver exists, so optional cases skip at run time.
    requireFirmware(skip, ...wanted) {
      if (!wanted.every((firmware) => driver().capabilities.firmware.includes(firmware))) skip();
    },
  };
}

/** Writing, listing and re-writing a node's entry. */
function writeCases(cases: BootCases): void {
  const { exists, expectFiles } = cases;
  it("declares at least one firmware type", () => {
    const driver = cases.driver();
    expect(driver.capabilities.firmware.length).toBeGreaterThan(0);
    for (const firmware of driver.capabilities.firmware) expect(["bios", "uefi"]).toContain(firmware);
  });

  it("starts empty", async () => {
    const driver = cases.driver();
    expect(await driver.list()).toEqual([]);
    expect(await driver.read("node-07")).toBeNull();
  });

  it("writes a node's files and reads them back", async () => {
    const driver = cases.driver();
    const firmware = driver.capabilities.firmware[0] ?? "bios";
    const written = await driver.write(specOf({ firmware }));
    expect(written).toMatchObject({
      node: "node-07",
      macs: ["52:54:00:aa:bb:01"],
      target: TARGET,
      firmware,
    });
    expect(await driver.read("node-07")).toEqual(written);
    expect(written.files.length).toBeGreaterThanOrEqual(2);
    expect(new Set(written.files).size).toBe(written.files.length);
    for (const file of written.files) {
      expect(file.startsWith("/")).toBe(false);
      expect(file.split("/")).not.toContain("..");
    }
    await expectFiles(written, true);
  });

  it("lists every node with files", async () => {
    const driver = cases.driver();
    await driver.write(specOf({ node: "node-a", macs: ["52:54:00:aa:bb:0a"] }));
    await driver.write(
      specOf({ node: "node-b", macs: ["52:54:00:aa:bb:0b"], target: { ...TARGET, name: "1img8" } }),
    );
    const listed = await driver.list();
    expect(listed.map((entry) => entry.node).sort()).toEqual(["node-a", "node-b"]);
    expect(listed.find((entry) => entry.node === "node-b")?.target?.name).toBe("1img8");
  });

  it("re-writing a node replaces its target and drops MACs it no longer has", async () => {
    const driver = cases.driver();
    const first = await driver.write(specOf({ macs: ["52:54:00:aa:bb:01", "52:54:00:aa:bb:02"] }));
    const target = { ...TARGET, name: "iqn.2026-11.org.bmi:1img9", port: 3261 };
    const second = await driver.write(specOf({ macs: ["52:54:00:aa:bb:02"], target }));
    const read = await driver.read("node-07");
    expect(read?.target).toEqual(target);
    expect(read?.macs).toEqual(["52:54:00:aa:bb:02"]);
    await expectFiles(second, true);
    const dropped = first.files.filter((file) => !second.files.includes(file));
    expect(dropped.length).toBeGreaterThan(0);
    for (const file of dropped) expect(await exists(file, false), file).toBe(false);
  });

  it("re-writing the same spec is idempotent", async () => {
    const driver = cases.driver();
    const first = await driver.write(specOf());
    const second = await driver.write(specOf());
    expect(second).toEqual(first);
    expect(await driver.list()).toHaveLength(1);
  });
}

/** Removing a node's files, and only its own. */
function removeCases(cases: BootCases): void {
  const { expectFiles } = cases;
  it("removes every file of a node", async () => {
    const driver = cases.driver();
    const written = await driver.write(specOf({ macs: ["52:54:00:aa:bb:01", "52:54:00:aa:bb:02"] }));
    await driver.remove("node-07");
    expect(await driver.read("node-07")).toBeNull();
    expect(await driver.list()).toEqual([]);
    await expectFiles(written, false);
  });

  it("removing a node without files is fine, also twice", async () => {
    const driver = cases.driver();
    await expect(driver.remove("never-written")).resolves.toBeUndefined();
    await driver.write(specOf());
    await driver.remove("node-07");
    await expect(driver.remove("node-07")).resolves.toBeUndefined();
  });

  it("removing one node leaves the others", async () => {
    const driver = cases.driver();
    await driver.write(specOf({ node: "node-a", macs: ["52:54:00:aa:bb:0a"] }));
    const b = await driver.write(specOf({ node: "node-b", macs: ["52:54:00:aa:bb:0b"] }));
    await driver.remove("node-a");
    expect(await driver.read("node-b")).toEqual(b);
    await expectFiles(b, true);
  });
}

/** MACs: one form, one node each. */
function macCases(cases: BootCases): void {
  const { expectFiles } = cases;
  it("normalises MACs to lower-case colon form and drops duplicates", async () => {
    const driver = cases.driver();
    const written = await driver.write(specOf({ macs: ["52-54-00-AA-BB-0C", "52:54:00:aa:bb:0c"] }));
    expect(written.macs).toEqual(["52:54:00:aa:bb:0c"]);
    expect((await driver.read("node-07"))?.macs).toEqual(["52:54:00:aa:bb:0c"]);
    for (const file of written.files) expect(file).toBe(file.replace(/[A-F]/g, ""));
  });

  it("refuses a MAC that already boots another node, changing nothing", async () => {
    const driver = cases.driver();
    const a = await driver.write(specOf({ node: "node-a", macs: ["52:54:00:aa:bb:0a"] }));
    await expectBmiError(driver.write(specOf({ node: "node-b", macs: ["52:54:00:AA:BB:0A"] })), "conflict");
    expect(await driver.read("node-a")).toEqual(a);
    expect(await driver.read("node-b")).toBeNull();
    await expectFiles(a, true);
  });
}

/** BIOS and UEFI entries, per the driver's capabilities. */
function firmwareCases(cases: BootCases): void {
  const { exists, expectFiles, requireFirmware } = cases;
  it("writes a BIOS (pxelinux) entry when the firmware is bios", async (context) => {
    const driver = cases.driver();
    requireFirmware(() => context.skip(), "bios");
    expect((await driver.write(specOf({ firmware: "bios" }))).firmware).toBe("bios");
    expect((await driver.read("node-07"))?.firmware).toBe("bios");
  });

  it("writes a UEFI entry when the firmware is uefi", async (context) => {
    const driver = cases.driver();
    requireFirmware(() => context.skip(), "uefi");
    const written = await driver.write(specOf({ firmware: "uefi" }));
    expect(written.firmware).toBe("uefi");
    expect((await driver.read("node-07"))?.firmware).toBe("uefi");
    await expectFiles(written, true);
  });

  it("switching a node's firmware replaces its per-MAC entries", async (context) => {
    const driver = cases.driver();
    requireFirmware(() => context.skip(), "bios", "uefi");
    const bios = await driver.write(specOf({ firmware: "bios" }));
    const uefi = await driver.write(specOf({ firmware: "uefi" }));
    expect((await driver.read("node-07"))?.firmware).toBe("uefi");
    expect(uefi.files).not.toEqual(bios.files);
    for (const file of bios.files.filter((f) => !uefi.files.includes(f))) {
      expect(await exists(file, false), file).toBe(false);
    }
  });

  it("refuses a firmware it does not support", async () => {
    const driver = cases.driver();
    const missing = (["bios", "uefi"] as const).find((f) => !driver.capabilities.firmware.includes(f));
    if (missing === undefined) {
      await expectBmiError(driver.write(specOf({ firmware: "coreboot" as "bios" })), "invalid_input");
    } else {
      await expectBmiError(driver.write(specOf({ firmware: missing })), "unsupported");
    }
    expect(await driver.list()).toEqual([]);
  });
}

/** Hostile input and cancellation: refused before anything is written. */
function hostileInputCases(cases: BootCases, options: TestBootDriverOptions): void {
  it.each(["../escape", "a/b", "/etc/passwd", "node\nchain http://evil", "", ".hidden", "x;reboot"])(
    "rejects the hostile node name %j without writing anything",
    async (node) => {
      const driver = cases.driver();
      await expectBmiError(driver.write(specOf({ node })), "invalid_input");
      await expectBmiError(driver.remove(node), "invalid_input");
      await expectBmiError(driver.read(node), "invalid_input");
      expect(await driver.list()).toEqual([]);
    },
  );

  it.each<[string, Partial<BootSpec>]>([
    ["a target name with a newline", { target: { ...TARGET, name: "1img7\nchain http://evil/x" } }],
    ["a portal with a newline", { target: { ...TARGET, portal: "10.0.2.2\nshell" } }],
    ["a portal with a colon", { target: { ...TARGET, portal: "10.0.2.2:99" } }],
    ["port 0", { target: { ...TARGET, port: 0 } }],
    ["a negative LUN", { target: { ...TARGET, lun: -1 } }],
    ["a label with a newline", { label: "disk\nKERNEL evil.lkrn" }],
    ["a label with a space", { label: "disk MENU" }],
    ["a malformed MAC", { macs: ["52:54:00:aa:bb"] }],
    ["a MAC with a path", { macs: ["../../../etc"] }],
    ["no MAC at all", { macs: [] }],
  ])("rejects %s without writing anything", async (_what, overrides) => {
    const driver = cases.driver();
    await expectBmiError(driver.write(specOf(overrides)), "invalid_input");
    expect(await driver.list()).toEqual([]);
  });

  it.skipIf(options.skip?.cancellation)("honours an aborted signal: cancelled, nothing written", async () => {
    const driver = cases.driver();
    const controller = new AbortController();
    controller.abort();
    await expectBmiError(driver.write(specOf(), { signal: controller.signal }), "cancelled");
    expect(await driver.list()).toEqual([]);
  });
}
