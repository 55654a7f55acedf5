/**
 * The original BMI's behaviours that its clients' scripts rely on, as explicit options of the
 * SDK (issue 21.4); without the options the safer defaults hold.
 */
import { describe, expect, it } from "vitest";
import { setup, thrown } from "./ops-helpers.js";

describe("provision switchDisk", () => {
  it("refuses another disk by default; with switchDisk rewrites the boot files and moves the record", async () => {
    const { bmi, boot } = await setup();
    await bmi.provision({ project: "p1", node: "n2", disk: "d1", image: "golden", nic: "eth1" });
    const d2 = await bmi.createDisk({ project: "p1", image: "golden", disk: "d2" });
    expect((await thrown(() => bmi.provision({ project: "p1", node: "n2", disk: "d2" }))).code).toBe(
      "conflict",
    );
    const switched = await bmi.provision({ project: "p1", node: "n2", disk: "d2", switchDisk: true });
    expect([switched.disk, switched.nic, switched.target.name]).toEqual(["d2", "eth1", d2.target?.name]);
    expect((await boot.read("n2"))?.target?.name).toBe(d2.target?.name);
    expect((await boot.read("n2"))?.macs).toEqual(["52:54:00:00:01:02"]);
    expect((await bmi.listDisks({ project: "p1" })).map((d) => [d.name, d.node])).toEqual([
      ["d1", null],
      ["d2", "n2"],
    ]);
  });

  it("checks the NIC on every provision: a NIC the node lacks, or another NIC, is refused", async () => {
    const { bmi, boot } = await setup();
    await bmi.provision({ project: "p1", node: "n2", disk: "d1", image: "golden", nic: "eth0" });
    await bmi.createDisk({ project: "p1", image: "golden", disk: "d2" });
    const before = await boot.read("n2");
    expect(
      (await thrown(() => bmi.provision({ project: "p1", node: "n2", disk: "d1", nic: "eth9" }))).code,
    ).toBe("not_found");
    const missing = await thrown(() =>
      bmi.provision({ project: "p1", node: "n2", disk: "d2", nic: "eth9", switchDisk: true }),
    );
    expect(missing.code).toBe("not_found");
    const other = await thrown(() =>
      bmi.provision({ project: "p1", node: "n2", disk: "d2", nic: "eth1", switchDisk: true }),
    );
    expect([other.code, other.message]).toEqual(["conflict", expect.stringContaining("NIC eth0")]);
    expect(await boot.read("n2")).toEqual(before);
  });

  it("does not take a disk that boots another node, nor a node of another project", async () => {
    const { bmi } = await setup();
    await bmi.provision({ project: "p1", node: "n1", disk: "d1", image: "golden" });
    await bmi.provision({ project: "p1", node: "n2", disk: "d2", image: "golden" });
    const busy = await thrown(() =>
      bmi.provision({ project: "p1", node: "n1", disk: "d2", switchDisk: true }),
    );
    expect(busy.code).toBe("busy");
    await bmi.importImage({ project: "p2", source: "centos7", name: "g2" });
    const foreign = await thrown(() =>
      bmi.provision({ project: "p2", node: "n1", disk: "x", image: "g2", switchDisk: true }),
    );
    expect(foreign.code).toBe("conflict");
    expect((await bmi.listProvisionings()).map((p) => [p.node, p.disk])).toEqual([
      ["n1", "d1"],
      ["n2", "d2"],
    ]);
  });
});

describe("deprovision missingOk", () => {
  it("a node that is not provisioned is not_found by default, done with missingOk", async () => {
    const { bmi, state } = await setup();
    expect((await thrown(() => bmi.deprovision({ project: "p1", node: "n1" }))).code).toBe("not_found");
    const before = await state();
    await bmi.deprovision({ project: "p1", node: "n1", missingOk: true });
    expect(await state()).toEqual(before);
  });

  it("still refuses a node another project provisioned", async () => {
    const { bmi } = await setup();
    await bmi.provision({ project: "p1", node: "n1", disk: "d1", image: "golden" });
    const error = await thrown(() => bmi.deprovision({ project: "p2", node: "n1", missingOk: true }));
    expect(error.code).toBe("forbidden");
  });
});

describe("deleteDisk deprovision", () => {
  it("a booting disk is busy by default; with deprovision the node is deprovisioned, then the disk deleted", async () => {
    const { bmi, boot, storage, isolation } = await setup();
    const record = await bmi.provision({ project: "p1", node: "n1", disk: "d1", image: "golden" });
    expect((await thrown(() => bmi.deleteDisk({ project: "p1", disk: "d1" }))).code).toBe("busy");
    await bmi.deleteDisk({ project: "p1", disk: "d1", deprovision: true });
    expect(await boot.read("n1")).toBeNull();
    expect(await isolation.attachments("n1")).toEqual([]);
    expect(await bmi.listProvisionings()).toEqual([]);
    expect(await bmi.listDisks({ project: "p1" })).toEqual([]);
    expect(await storage.exists(`1img${record.diskId}`)).toBe(false);
  });

  it("an idle disk is deleted as without the option", async () => {
    const { bmi } = await setup();
    await bmi.createDisk({ project: "p1", image: "golden", disk: "d1" });
    await bmi.deleteDisk({ project: "p1", disk: "d1", deprovision: true });
    expect(await bmi.listDisks({ project: "p1" })).toEqual([]);
  });
});
