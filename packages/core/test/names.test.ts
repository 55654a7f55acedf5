import { describe, expect, it } from "vitest";
import { BmiError, ImageName, MacAddress, NodeName, parseInput } from "../src/index.js";

describe("names", () => {
  it.each(["centos7-golden", "bmi_infra", "node-07", "1img12", "a.b_c-d"])(
    "accepts the BMI name %s",
    (name) => {
      expect(parseInput(ImageName, name, "image")).toBe(name);
    },
  );

  it.each([
    ["../x", "may only contain"],
    ["a;rm -rf /", "may only contain"],
    ["x".repeat(300), "at most 100"],
    ["", "must not be empty"],
    ["héllo", "may only contain"],
    ["a\nb", "may only contain"],
    [".hidden", "must start with"],
  ])("rejects the hostile name %j with a client error naming the field", (name, message) => {
    let error: unknown;
    try {
      parseInput(NodeName, name, "node");
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(BmiError);
    const bmi = error as BmiError;
    expect(bmi.code).toBe("invalid_input");
    expect(bmi.fault).toBe("client");
    expect(bmi.message).toContain("invalid node");
    expect(bmi.message).toContain(message);
  });

  it("normalises MACs to lower-case colon form", () => {
    expect(parseInput(MacAddress, "52-54-00-AA-BB-01", "mac")).toBe("52:54:00:aa:bb:01");
    expect(() => parseInput(MacAddress, "52:54:00:aa-bb:01", "mac")).toThrow(/six hex pairs/);
  });
});
