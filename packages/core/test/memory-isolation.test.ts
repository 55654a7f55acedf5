import { describe, expect, it } from "vitest";
import { BmiError } from "../src/index.js";
import { type IsolationFixture, testIsolationDriver } from "../src/testing/contracts/index.js";
import { createMemoryIsolation } from "../src/testing/index.js";

const fixture: IsolationFixture = {
  project: "proj1",
  node: "node1",
  nic: "eth0",
  mac: "52:54:00:AA:BB:01",
  freeNode: "node2",
  freeNic: "eth0",
  foreignNode: "node3",
  network: "prov",
  otherNetwork: "net2",
};

const seed = () =>
  createMemoryIsolation({
    nodes: [
      { name: "node1", project: "proj1", nics: [{ label: "eth0", mac: "52:54:00:AA:BB:01" }] },
      { name: "node2", nics: [{ label: "eth0", mac: "52-54-00-aa-bb-02" }] },
      { name: "node3", project: "proj2", nics: [{ label: "eth0", mac: "52:54:00:aa:bb:03" }] },
    ],
    networks: [{ name: "prov", projects: ["proj1"] }, "net2", { name: "closed", projects: ["proj2"] }],
  });

testIsolationDriver({
  name: "memory",
  create: async () => ({ driver: seed(), fixture }),
  additionalTests: () => {
    it("fails the next call when a failure is injected, then recovers", async () => {
      const driver = seed();
      driver.failNext("node");
      const error = await driver.node("node1").catch((e: unknown) => e);
      expect(error).toBeInstanceOf(BmiError);
      expect((error as BmiError).code).toBe("unavailable");
      expect((error as BmiError).retryable).toBe(true);
      expect((await driver.node("node1")).project).toBe("proj1");
    });

    it("injects a chosen error for several calls of one operation only", async () => {
      const driver = seed();
      driver.failNext("attach", new BmiError("busy", "pending", { subsystem: "isolation" }), 2);
      const attachment = { node: "node1", nic: "eth0", network: "prov" };
      await expect(driver.attach(attachment)).rejects.toMatchObject({ code: "busy" });
      await expect(driver.attach(attachment)).rejects.toMatchObject({ code: "busy" });
      expect(await driver.attachments("node1")).toEqual([]);
      await driver.attach(attachment);
      expect(driver.allAttachments).toHaveLength(1);
    });

    it("refuses a network whose access list excludes the node's project", async () => {
      const driver = seed();
      await expect(driver.attach({ node: "node1", nic: "eth0", network: "closed" })).rejects.toMatchObject({
        code: "conflict",
      });
    });

    it("follows ownership changes", async () => {
      const driver = seed();
      driver.setOwner("node2", "proj1");
      expect((await driver.authorize("proj1", "node2")).project).toBe("proj1");
      driver.setOwner("node1", null);
      await expect(driver.authorize("proj1", "node1")).rejects.toMatchObject({ code: "forbidden" });
    });

    it("rejects a bad seed with invalid_input naming the field", () => {
      expect(() =>
        createMemoryIsolation({ nodes: [{ name: "n1", nics: [{ label: "eth0", mac: "not-a-mac" }] }] }),
      ).toThrow(/options\.nodes\.0\.nics\.0\.mac/);
    });
  },
});

describe("createMemoryIsolation without a network list", () => {
  it("accepts any well-formed network as public", async () => {
    const driver = createMemoryIsolation({
      nodes: [{ name: "n1", project: "p", nics: [{ label: "eth0", mac: "52:54:00:00:00:01" }] }],
    });
    await driver.attach({ node: "n1", nic: "eth0", network: "anything" });
    expect(await driver.attachments("n1")).toEqual([
      { node: "n1", nic: "eth0", network: "anything", channel: "vlan/native" },
    ]);
  });
});
