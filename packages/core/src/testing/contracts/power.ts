import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { PowerDriver } from "../../ports/power.js";
import { expectBmiError } from "./storage.js";

export interface PowerDriverFixture {
  driver: PowerDriver;
  /** A node with a BMC, powered off at the start of each test. */
  node: string;
  /** Called after each test, also when it failed (e.g. stop the node's VM). */
  cleanup?: () => Promise<void> | void;
}

export interface TestPowerDriverOptions {
  name: string;
  create: () => Promise<PowerDriverFixture>;
  /** The driver's own cases, run inside the same describe block. */
  additionalTests?: () => void;
}

/**
 * The PowerDriver contract: the in-memory BMCs and HIL's OBM (through obmd) pass it. Power
 * actions of a real BMC take effect after a while, so states are polled, never expected at once.
 */
export function testPowerDriver(options: TestPowerDriverOptions): void {
  describe(`PowerDriver contract: ${options.name}`, () => {
    let fixture: PowerDriverFixture;
    let driver: PowerDriver;
    beforeEach(async () => {
      fixture = await options.create();
      driver = fixture.driver;
    });
    afterEach(async () => {
      await fixture?.cleanup?.();
    });
    const eventually = async (state: string) => {
      for (let i = 0; i < 100; i++) {
        if ((await driver.powerState(fixture.node)) === state) return;
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(await driver.powerState(fixture.node)).toBe(state);
    };

    it("starts off, powers on and off, and reports each state", async () => {
      await eventually("off");
      await driver.powerOn(fixture.node);
      await eventually("on");
      await driver.powerOn(fixture.node); // already on: fine
      await driver.powerOff(fixture.node);
      await eventually("off");
    });

    it("power cycle powers on a node that is off, and resets a running one (soft or forced)", async () => {
      await driver.powerCycle(fixture.node, { force: true });
      await eventually("on");
      await driver.powerCycle(fixture.node, { force: true });
      await eventually("on");
      await driver.powerOff(fixture.node);
      await eventually("off");
    });

    it("sets the boot device when it can, and rejects one it does not know", async () => {
      if (!driver.capabilities.bootDevice) {
        await expectBmiError(() => driver.setBootDevice(fixture.node, "pxe"), "unsupported");
        return;
      }
      await driver.setBootDevice(fixture.node, "pxe");
      await driver.setBootDevice(fixture.node, "disk");
      const bad = await expectBmiError(
        () => driver.setBootDevice(fixture.node, "floppy" as never),
        "invalid_input",
      );
      expect(bad.subsystem).toBe("power");
    });

    it("says not_found for a node without a BMC, and invalid_input for a malformed name", async () => {
      expect((await expectBmiError(() => driver.powerState("no-such-node"), "not_found")).subsystem).toBe(
        "power",
      );
      await expectBmiError(() => driver.powerOn("bad name!"), "invalid_input");
    });

    it("does nothing once cancelled", async () => {
      const controller = new AbortController();
      controller.abort();
      await expectBmiError(() => driver.powerOn(fixture.node, { signal: controller.signal }), "cancelled");
      await eventually("off");
    });

    options.additionalTests?.();
  });
}
