import { describe, expect, it } from "vitest";
import { BmiError, createBmi } from "../src/index.js";
import { testPowerDriver } from "../src/testing/contracts/index.js";
import { createMemoryPower } from "../src/testing/index.js";
import { setup, thrown } from "./ops-helpers.js";

testPowerDriver({
  name: "memory",
  create: async () => ({ driver: createMemoryPower({ nodes: ["node-01"] }), node: "node-01" }),
});

describe("bmi.power (issue 16.1)", () => {
  it("sets the boot device, powers the node and journals it", async () => {
    const { bmi, power, store } = await setup();
    expect(await bmi.power({ project: "p1", node: "n1", action: "cycle", bootDevice: "pxe" })).toBe("on");
    expect(power.bootDevice("n1")).toBe("pxe");
    expect(power.boots("n1")).toBe(1);
    expect(await bmi.powerStatus({ project: "p1", node: "n1" })).toBe("on");
    const steps = (await store.journal.list()).filter(
      (j) => j.operation === "power" && j.status === "finished",
    );
    expect(steps.map((j) => j.step)).toEqual([
      "authorize node",
      "set boot device",
      "power cycle",
      "read power state",
      null,
    ]);
  });

  it("refuses a node the project does not own before any call reaches its BMC", async () => {
    const { bmi, power } = await setup();
    expect((await thrown(() => bmi.power({ project: "p1", node: "n3", action: "on" }))).code).toBe(
      "forbidden",
    );
    expect((await thrown(() => bmi.powerStatus({ project: "p1", node: "free1" }))).code).toBe("forbidden");
    expect(power.calls).toEqual([]);
  });

  it("rejects bad input before anything runs, naming the field", async () => {
    const { bmi, power } = await setup();
    const bad = await thrown(() => bmi.power({ project: "p1", node: "n1", action: "explode" as never }));
    expect(bad.code).toBe("invalid_input");
    expect(bad.message).toMatch(/action/);
    expect(power.calls).toEqual([]);
  });

  it("says a BMC that fails is unavailable, naming the node", async () => {
    const { bmi, power } = await setup();
    power.failNext(
      "powerOn",
      new BmiError("unavailable", "obmd for n1 is unreachable", { subsystem: "power" }),
    );
    const error = await thrown(() => bmi.power({ project: "p1", node: "n1", action: "on" }));
    expect(error).toMatchObject({ code: "unavailable", retryable: true });
    expect(error.message).toMatch(/n1/);
  });

  it("says clearly that nothing can be powered without a power driver", async () => {
    const { storage, exporter, boot, isolation, store, settings } = await setup();
    const bmi = createBmi({ storage, export: exporter, boot, isolation, store, settings });
    const error = await thrown(() => bmi.power({ project: "p1", node: "n1", action: "on" }));
    expect(error).toMatchObject({ code: "unsupported", subsystem: "power" });
    expect(error.message).toBe("no power driver is configured: BMI cannot power nodes");
  });
});
