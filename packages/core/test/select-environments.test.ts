import { describe, expect, it } from "vitest";
import { selectEnvironments } from "../src/testing/index.js";

describe("selectEnvironments (BMI_DRIVERS)", () => {
  const available = { memory: () => "m", lab: () => "l" };
  it("runs every environment when unset or empty, else those named, in that order", () => {
    expect(selectEnvironments(available, {})).toEqual(["m", "l"]);
    expect(selectEnvironments(available, { BMI_DRIVERS: "" })).toEqual(["m", "l"]);
    expect(selectEnvironments(available, { BMI_DRIVERS: "lab" })).toEqual(["l"]);
    expect(selectEnvironments(available, { BMI_DRIVERS: " lab , memory " })).toEqual(["l", "m"]);
  });
  it("refuses an unknown name instead of running nothing", () => {
    expect(() => selectEnvironments(available, { BMI_DRIVERS: "memroy" })).toThrow(
      /unknown environment memroy \(known: memory, lab\)/,
    );
  });
});
