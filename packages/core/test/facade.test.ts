import { describe, expect, it } from "vitest";
import { type Bmi, createBmi, isBmiError } from "../src/index.js";
import { createMemoryExport } from "../src/testing/index.js";
import { setup } from "./ops-helpers.js";

/** The facade methods that do work (every one but the synchronous listings and `on`). */
const ASYNC_METHODS = [
  "createProject",
  "deleteProject",
  "importImage",
  "removeImage",
  "copyImage",
  "moveImage",
  "exportImage",
  "createDisk",
  "deleteDisk",
  "provision",
  "provisionMany",
  "deprovision",
  "snapshotDisk",
  "mountImage",
  "unmountImage",
  "reconcile",
] as const satisfies readonly (keyof Bmi)[];

describe("the facade (issue 20.3)", () => {
  it.each(ASYNC_METHODS)("%s rejects bad input through its promise, never synchronously", async (method) => {
    const { bmi } = await setup();
    const call = bmi[method] as (input: unknown) => Promise<unknown>;
    let returned: Promise<unknown> | undefined;
    expect(() => {
      returned = call("not an input object");
    }).not.toThrow();
    expect(returned).toBeInstanceOf(Promise);
    const settled = await Promise.allSettled([returned]);
    expect(settled[0]?.status).toBe("rejected");
    const reason = settled[0]?.status === "rejected" ? settled[0].reason : undefined;
    expect(isBmiError(reason, "invalid_input"), String(reason)).toBe(true);
  });
});

describe("where a target is (issue 20.6)", () => {
  it("is what the export driver answered, recorded once and written into the boot files", async () => {
    const env = await setup();
    // A daemon that listens elsewhere than the settings' default portal.
    const exporter = createMemoryExport({ portal: "10.20.30.40", port: 3261 });
    const { storage, boot, isolation, store, settings } = env;
    const bmi = createBmi({ storage, export: exporter, boot, isolation, store, settings });
    const record = await bmi.provision({ project: "p1", node: "n1", disk: "d1", image: "golden" });
    expect(record.target).toMatchObject({ portal: "10.20.30.40", port: 3261, lun: 1 });
    expect((await bmi.listDisks({ project: "p1" }))[0]?.target).toEqual(record.target);
    expect((await env.boot.read("n1"))?.target).toEqual(record.target);
  });
});
