import { describe, expect, it } from "vitest";
import { type Bmi, isBmiError } from "../src/index.js";
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
