import { describe, expect, it } from "vitest";
import { setup } from "./ops-helpers.js";

// Each driver call is an external process on a real deployment (rbd, tgtadm): the batch benchmark
// found these redundant ones, so they stay gone.
describe("deleting a disk runs no redundant driver calls", () => {
  it("neither checks the clone exists first nor lists every target", async () => {
    const { bmi, storage, exporter } = await setup();
    await bmi.provision({ project: "p1", node: "n1", disk: "d1", image: "golden" });
    const before = storage.calls.length;
    let listed = 0;
    const list = exporter.list.bind(exporter);
    exporter.list = async (...args) => {
      listed++;
      return list(...args);
    };
    await bmi.deprovision({ project: "p1", node: "n1", deleteDisk: true });
    const methods = storage.calls.slice(before).map((c) => c.method);
    expect(methods).not.toContain("exists");
    expect(methods.filter((m) => m === "remove")).toHaveLength(1);
    expect(listed).toBe(0);
    expect(await storage.list()).toEqual(["1img1", "centos7"]);
    expect(await exporter.list()).toEqual([]);
  });

  it("still deletes a disk whose clone and target are already gone", async () => {
    const { bmi, storage, exporter } = await setup();
    const d1 = await bmi.createDisk({ project: "p1", image: "golden", disk: "d1" });
    await exporter.unexport(d1.target?.name ?? "", { force: true });
    await storage.remove(d1.cephName);
    await bmi.deleteDisk({ project: "p1", disk: "d1" });
    expect(await bmi.listDisks({ project: "p1" })).toEqual([]);
    expect((await bmi.reconcile()).drift).toEqual([]);
  });
});
