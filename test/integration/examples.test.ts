// The examples users copy, run against a real lab (Ceph, tgtd, HIL-compatible server, TFTP root).

import { batchProvision } from "@bmi/examples/batch-provision";
import { main as diMain } from "@bmi/examples/di-wiring";
import { provisionOne } from "@bmi/examples/provision-one";
import { snapshotAndReprovision } from "@bmi/examples/snapshot-reprovision";
import { bmiFromConfig } from "@bmi/examples/wiring";
import { type BmiLab, startBmiLab } from "@bmi/lab";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";

describe("examples against the real lab", () => {
  let lab: BmiLab;
  beforeAll(async () => {
    lab = await startBmiLab({ ceph: inject("ceph"), nodes: 4 });
    await lab.createGoldenImage("golden");
  });
  afterAll(async () => {
    await lab?.stop();
  });

  it("provision-one: plain factories from bmi_config.cfg", async () => {
    const p = await provisionOne({
      configPath: lab.configPath,
      project: lab.project,
      node: "node-01",
      image: "golden",
    });
    expect(p.target.name).toMatch(/^iqn\.2026-11\.org\.bmi:\d+img\d+$/);
    expect((await lab.drivers.export.list()).map((t) => t.target)).toContain(p.target.name);
    expect(await lab.drivers.boot.read("node-01")).toMatchObject({ target: p.target });
    // Idempotent retry: the same call changes nothing.
    expect(
      await provisionOne({
        configPath: lab.configPath,
        project: lab.project,
        node: "node-01",
        image: "golden",
      }),
    ).toEqual(p);
  });

  it("batch-provision: per-node results, failures undone", async () => {
    const { bmi, close } = bmiFromConfig(lab.configPath);
    try {
      const report = await batchProvision(bmi, {
        project: lab.project,
        image: "golden",
        nodes: ["node-02", "node-03", "nope"],
      });
      expect(report.provisioned.map((p) => p.node)).toEqual(["node-02", "node-03"]);
      expect(report.failed).toEqual([expect.objectContaining({ node: "nope", code: "not_found" })]);
      expect(report.steps).toBeGreaterThan(0);
    } finally {
      await close();
    }
  });

  it("snapshot-reprovision: a node's disk becomes an image another node boots", async () => {
    const { bmi, close } = bmiFromConfig(lab.configPath);
    try {
      const { image, provisioned } = await snapshotAndReprovision(bmi, {
        project: lab.project,
        node: "node-02",
        snapshot: "golden-v2",
        targetNode: "node-04",
      });
      expect(image.kind).toBe("snapshot");
      expect(provisioned.node).toBe("node-04");
      // The new image was usable at once; flattening it (cutting it loose from the disk) comes later.
      expect(await bmi.flattenPending()).toBe(1);
      expect((await lab.drivers.storage.info(image.cephName)).parent).toBeNull();
    } finally {
      await close();
    }
  });

  it("di-wiring: tsyringe container with a custom (audited) boot driver", async () => {
    const { bmi, audit, close } = diMain(lab.configPath);
    try {
      await bmi.deprovision({ project: lab.project, node: "node-03", deleteDisk: true });
      expect(audit.map((a) => [a.action, a.node])).toEqual([["remove", "node-03"]]);
    } finally {
      await close();
    }
  });

  it("leaves nothing behind once everything is deprovisioned and removed", async () => {
    const { bmi } = lab;
    for (const p of await bmi.listProvisionings({ project: lab.project })) {
      await bmi.deprovision({ project: lab.project, node: p.node, deleteDisk: true });
    }
    for (const d of await bmi.listDisks({ project: lab.project }))
      await bmi.deleteDisk({ project: lab.project, disk: d.name });
    for (const s of await bmi.listSnapshots({ project: lab.project }))
      await bmi.removeImage({ project: lab.project, image: s.image.name });
    for (const i of await bmi.listImages({ project: lab.project }))
      await bmi.removeImage({ project: lab.project, image: i.name });
    expect(await lab.leftovers()).toEqual({ images: [], targets: [], bootFiles: [] });
    expect((await bmi.reconcile()).drift).toEqual([]);
  });
});
