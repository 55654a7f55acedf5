import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { BmiError, type BmiEvent, createBmi, defaultSettings, openSqliteStore } from "../src/index.js";
import {
  createMemoryBoot,
  createMemoryExport,
  createMemoryIsolation,
  createMemoryStorage,
} from "../src/testing/index.js";
import { MIB, setup, thrown } from "./ops-helpers.js";

describe("projects", () => {
  it("creates, lists and deletes an empty project", async () => {
    const { bmi } = await setup({ golden: false });
    await bmi.createProject({ name: "p3", id: 42 });
    expect((await bmi.listProjects()).map((p) => [p.id, p.name])).toContainEqual([42, "p3"]);
    await bmi.deleteProject({ name: "p3" });
    expect((await bmi.listProjects()).map((p) => p.name)).not.toContain("p3");
  });

  it("refuses a duplicate, an unknown and a non-empty project with typed errors", async () => {
    const { bmi } = await setup();
    expect((await thrown(() => bmi.createProject({ name: "p1" }))).code).toBe("already_exists");
    expect((await thrown(() => bmi.deleteProject({ name: "nope" }))).code).toBe("not_found");
    const busy = await thrown(() => bmi.deleteProject({ name: "p1" }));
    expect(busy.code).toBe("busy");
    expect(busy.message).toContain("golden");
  });

  it("rejects a hostile name before anything runs", async () => {
    const { bmi, state } = await setup();
    const before = await state();
    const error = await thrown(() => bmi.createProject({ name: "a;rm -rf /" }));
    expect(error).toBeInstanceOf(BmiError);
    expect(error.code).toBe("invalid_input");
    expect(error.fault).toBe("client");
    expect(error.message).toContain("input.name");
    expect(await state()).toEqual(before);
  });
});

describe("images", () => {
  it("imports an RBD image as a flattened golden image with a protected S and leaves the source alone", async () => {
    const { bmi, storage } = await setup();
    const [golden] = await bmi.listImages({ project: "p1" });
    expect(golden).toMatchObject({ name: "golden", cephName: "1img1", kind: "golden", parentId: null });
    expect((await storage.info("1img1")).parent).toBeNull();
    expect(await storage.listSnapshots("1img1")).toEqual([{ name: "bmi_created_snapshot", protected: true }]);
    expect(await storage.listSnapshots("centos7")).toEqual([]);
  });

  it("imports from an existing snapshot and can protect it", async () => {
    const { bmi, storage } = await setup();
    await storage.createSnapshot({ image: "centos7", snapshot: "v1" });
    const image = await bmi.importImage({ project: "p2", source: "centos7", snapshot: "v1", protect: true });
    expect(image.name).toBe("centos7");
    expect(await storage.listSnapshots("centos7")).toEqual([{ name: "v1", protected: true }]);
  });

  it("refuses a duplicate name, a missing source and an unknown project", async () => {
    const { bmi } = await setup();
    expect(
      (await thrown(() => bmi.importImage({ project: "p1", source: "centos7", name: "golden" }))).code,
    ).toBe("already_exists");
    expect((await thrown(() => bmi.importImage({ project: "p1", source: "nothing" }))).code).toBe(
      "not_found",
    );
    expect((await thrown(() => bmi.importImage({ project: "zz", source: "centos7" }))).code).toBe(
      "not_found",
    );
  });

  it("copies within and across projects as independent images, and moves rows only", async () => {
    const { bmi, storage } = await setup();
    const copy = await bmi.copyImage({ project: "p1", image: "golden", destProject: "p2" });
    expect(copy).toMatchObject({ name: "golden", kind: "golden", parentId: null });
    expect((await storage.info(copy.cephName)).parent).toBeNull();
    expect(
      (await thrown(() => bmi.copyImage({ project: "p1", image: "golden", destProject: "p1" }))).code,
    ).toBe("already_exists");
    const moved = await bmi.moveImage({
      project: "p2",
      image: "golden",
      destProject: "p1",
      destName: "golden2",
    });
    expect(moved).toMatchObject({ name: "golden2", cephName: copy.cephName });
    expect((await bmi.listImages({ project: "p1" })).map((i) => i.name).sort()).toEqual([
      "golden",
      "golden2",
    ]);
  });

  it("exports an image to a free RBD name, flattened and unmanaged", async () => {
    const { bmi, storage } = await setup();
    await bmi.exportImage({ project: "p1", image: "golden", rbdName: "handout" });
    expect((await storage.info("handout")).parent).toBeNull();
    expect((await bmi.listAllImages()).map((i) => i.cephName)).not.toContain("handout");
    expect(
      (await thrown(() => bmi.exportImage({ project: "p1", image: "golden", rbdName: "handout" }))).code,
    ).toBe("already_exists");
  });

  it("removes a golden image, refuses while disks are cloned from it", async () => {
    const { bmi, storage } = await setup();
    await bmi.createDisk({ project: "p1", image: "golden", disk: "d1" });
    expect((await thrown(() => bmi.removeImage({ project: "p1", image: "golden" }))).code).toBe("busy");
    expect((await thrown(() => bmi.removeImage({ project: "p1", image: "d1" }))).code).toBe("invalid_input");
    await bmi.deleteDisk({ project: "p1", disk: "d1" });
    await bmi.removeImage({ project: "p1", image: "golden" });
    expect(await storage.list()).toEqual(["centos7"]);
    expect(await bmi.listImages({ project: "p1" })).toEqual([]);
  });
});

describe("disks", () => {
  it("creates a disk as a CoW clone of the image's S, exported as an IQN target on LUN 1", async () => {
    const { bmi, storage, exporter } = await setup();
    const disk = await bmi.createDisk({ project: "p1", image: "golden", disk: "d1" });
    expect(disk).toMatchObject({ name: "d1", cephName: "1img2", kind: "disk", parentId: 1, node: null });
    expect(disk.target).toEqual({
      name: "iqn.2026-11.org.bmi:1img2",
      portal: "127.0.0.1",
      port: 3260,
      lun: 1,
    });
    expect((await storage.info("1img2")).parent).toEqual({
      image: "1img1",
      snapshot: "bmi_created_snapshot",
    });
    expect((await exporter.list()).map((t) => t.target)).toEqual(["iqn.2026-11.org.bmi:1img2"]);
    expect((await bmi.listDisks({ project: "p1" })).map((d) => d.name)).toEqual(["d1"]);
  });

  it("keeps the original bare target names in compatibility mode", async () => {
    const { bmi, settings } = await setup({ settings: {} });
    settings.iscsi.naming = "bare";
    const disk = await bmi.createDisk({ project: "p1", image: "golden", disk: "d1" });
    expect(disk.target?.name).toBe("1img2");
  });

  it("refuses cloning a disk, a duplicate disk and an unknown image", async () => {
    const { bmi } = await setup();
    await bmi.createDisk({ project: "p1", image: "golden", disk: "d1" });
    expect((await thrown(() => bmi.createDisk({ project: "p1", image: "d1", disk: "d2" }))).code).toBe(
      "invalid_input",
    );
    expect((await thrown(() => bmi.createDisk({ project: "p1", image: "golden", disk: "d1" }))).code).toBe(
      "already_exists",
    );
    expect((await thrown(() => bmi.createDisk({ project: "p1", image: "nope", disk: "d3" }))).code).toBe(
      "not_found",
    );
  });

  it("deletes a disk, also when its target already vanished (COR-3)", async () => {
    const { bmi, storage, exporter } = await setup();
    await bmi.createDisk({ project: "p1", image: "golden", disk: "d1" });
    exporter.simulateRestart();
    await bmi.deleteDisk({ project: "p1", disk: "d1" });
    expect(await storage.exists("1img2")).toBe(false);
    expect(await bmi.listDisks({ project: "p1" })).toEqual([]);
    expect((await thrown(() => bmi.deleteDisk({ project: "p1", disk: "d1" }))).code).toBe("not_found");
  });

  it("refuses to delete a disk that boots a node (CON-2)", async () => {
    const { bmi } = await setup();
    await bmi.provision({ project: "p1", node: "n1", disk: "d1", image: "golden" });
    const error = await thrown(() => bmi.deleteDisk({ project: "p1", disk: "d1" }));
    expect(error.code).toBe("busy");
    expect(error.message).toContain("n1");
  });
});

describe("provision and deprovision", () => {
  it("provisions from an image in one call: disk, target, boot files, network, record", async () => {
    const { bmi, boot, isolation, exporter } = await setup();
    const p = await bmi.provision({ project: "p1", node: "n2", disk: "d1", image: "golden", nic: "eth1" });
    expect(p).toMatchObject({
      node: "n2",
      project: "p1",
      disk: "d1",
      nic: "eth1",
      mac: "52:54:00:00:01:02",
      network: "prov",
    });
    expect(await boot.read("n2")).toMatchObject({
      node: "n2",
      macs: ["52:54:00:00:01:02"],
      target: p.target,
    });
    expect(await isolation.attachments("n2")).toEqual([
      { node: "n2", nic: "eth1", network: "prov", channel: "vlan/native" },
    ]);
    expect((await exporter.list()).map((t) => t.target)).toEqual([p.target.name]);
    expect((await bmi.listDisks({ project: "p1" }))[0]?.node).toBe("n2");
    expect(await bmi.listProvisionings({ project: "p1" })).toEqual([p]);
  });

  it("is idempotent for the same disk and refuses another disk", async () => {
    const { bmi, state } = await setup();
    const first = await bmi.provision({ project: "p1", node: "n1", disk: "d1", image: "golden" });
    const before = await state();
    expect(await bmi.provision({ project: "p1", node: "n1", disk: "d1" })).toEqual(first);
    expect(await state()).toEqual(before);
    expect(
      (await thrown(() => bmi.provision({ project: "p1", node: "n1", disk: "d2", image: "golden" }))).code,
    ).toBe("conflict");
  });

  it("refuses free, foreign and unknown nodes, unknown NICs, and a disk already in use", async () => {
    const { bmi, state } = await setup();
    await bmi.createDisk({ project: "p1", image: "golden", disk: "d1" });
    const before = await state();
    expect((await thrown(() => bmi.provision({ project: "p1", node: "free1", disk: "d1" }))).code).toBe(
      "forbidden",
    );
    expect((await thrown(() => bmi.provision({ project: "p1", node: "n3", disk: "d1" }))).code).toBe(
      "forbidden",
    );
    expect((await thrown(() => bmi.provision({ project: "p1", node: "ghost", disk: "d1" }))).code).toBe(
      "not_found",
    );
    expect(
      (await thrown(() => bmi.provision({ project: "p1", node: "n1", disk: "d1", nic: "eth9" }))).code,
    ).toBe("not_found");
    expect((await thrown(() => bmi.provision({ project: "p1", node: "n1", disk: "nodisk" }))).code).toBe(
      "not_found",
    );
    expect(await state()).toEqual(before);
    await bmi.provision({ project: "p1", node: "n1", disk: "d1" });
    expect((await thrown(() => bmi.provision({ project: "p1", node: "n2", disk: "d1" }))).code).toBe("busy");
  });

  it("rejects a bad MAC-bearing or hostile input before any driver call", async () => {
    const { bmi, storage } = await setup();
    const calls = storage.calls.length;
    for (const input of [
      { project: "p1", node: "../etc", disk: "d1" },
      { project: "p1", node: "n1", disk: "d1\nINITRD evil" },
      { project: "p1", node: "n1", disk: "d1", firmware: "coreboot" },
      { project: "p1", node: "n1", disk: "d1", extra: 1 },
    ]) {
      const error = await thrown(() => bmi.provision(input as never));
      expect(error.code).toBe("invalid_input");
    }
    expect(storage.calls.length).toBe(calls);
  });

  it("gives one of two concurrent provisions of a node a conflict", async () => {
    const { bmi } = await setup();
    await bmi.createDisk({ project: "p1", image: "golden", disk: "d1" });
    await bmi.createDisk({ project: "p1", image: "golden", disk: "d2" });
    const results = await Promise.allSettled([
      bmi.provision({ project: "p1", node: "n1", disk: "d1" }),
      bmi.provision({ project: "p1", node: "n1", disk: "d2" }),
    ]);
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    const rejected = results.find((r) => r.status === "rejected") as PromiseRejectedResult;
    expect(rejected.reason).toBeInstanceOf(BmiError);
    expect(rejected.reason.code).toBe("conflict");
    expect(await bmi.listProvisionings()).toHaveLength(1);
  });

  it("deprovisions: network detached, boot files and record gone, disk kept unless asked", async () => {
    const { bmi, boot, isolation, storage } = await setup();
    const p = await bmi.provision({ project: "p1", node: "n1", disk: "d1", image: "golden" });
    await bmi.deprovision({ project: "p1", node: "n1" });
    expect(await boot.read("n1")).toBeNull();
    expect(await isolation.attachments("n1")).toEqual([]);
    expect(await bmi.listProvisionings()).toEqual([]);
    expect((await bmi.listDisks({ project: "p1" })).map((d) => d.node)).toEqual([null]);
    await bmi.provision({ project: "p1", node: "n1", disk: "d1" });
    await bmi.deprovision({ project: "p1", node: "n1", deleteDisk: true });
    expect(await bmi.listDisks({ project: "p1" })).toEqual([]);
    expect(await storage.exists(p.target.name.split(":")[1] ?? "")).toBe(false);
  });

  it("refuses to deprovision an unprovisioned node or another project's node", async () => {
    const { bmi } = await setup();
    expect((await thrown(() => bmi.deprovision({ project: "p1", node: "n1" }))).code).toBe("not_found");
    await bmi.provision({ project: "p1", node: "n1", disk: "d1", image: "golden" });
    expect((await thrown(() => bmi.deprovision({ project: "p2", node: "n1" }))).code).toBe("forbidden");
  });

  it("refuses to deprovision through another NIC than the provisioned one, and keeps everything", async () => {
    const { bmi, boot } = await setup();
    await bmi.provision({ project: "p1", node: "n1", disk: "d1", image: "golden", nic: "eth0" });
    const wrong = await thrown(() => bmi.deprovision({ project: "p1", node: "n1", nic: "eth1" }));
    expect(wrong.code).toBe("invalid_input");
    expect(wrong.message).toBe("node n1 is provisioned through NIC eth0, not eth1");
    expect(await boot.read("n1")).not.toBeNull();
    expect(await bmi.listProvisionings()).toHaveLength(1);
    await bmi.deprovision({ project: "p1", node: "n1", nic: "eth0" });
    expect(await bmi.listProvisionings()).toEqual([]);
  });

  it("provisions a batch with a concurrency limit and reports each node", async () => {
    const { bmi } = await setup();
    const results = await bmi.provisionMany(
      [
        { project: "p1", node: "n1", disk: "d1", image: "golden" },
        { project: "p1", node: "n2", disk: "d2", image: "golden" },
        { project: "p1", node: "n3", disk: "d3", image: "golden" },
      ],
      { concurrency: 2 },
    );
    expect(results.map((r) => [r.node, r.ok])).toEqual([
      ["n1", true],
      ["n2", true],
      ["n3", false],
    ]);
    const failed = results[2];
    expect(failed?.ok === false && failed.error.code).toBe("forbidden");
    expect((await bmi.listDisks({ project: "p1" })).map((d) => d.name)).toEqual(["d1", "d2"]);
  });
});

describe("snapshots", () => {
  it("snapshots a disk into an independent image and clones from it", async () => {
    const { bmi, storage } = await setup();
    await bmi.createDisk({ project: "p1", image: "golden", disk: "d1" });
    const snap = await bmi.snapshotDisk({ project: "p1", disk: "d1", snapshot: "s1", flatten: "now" });
    expect(snap).toMatchObject({ name: "s1", kind: "snapshot", isSnapshot: true, parentId: 1 });
    expect((await storage.info(snap.cephName)).parent).toBeNull();
    expect(await storage.listSnapshots("1img2")).toEqual([]);
    expect((await bmi.listSnapshots({ project: "p1" })).map((s) => [s.image.name, s.parent])).toEqual([
      ["s1", "golden"],
    ]);
    const d2 = await bmi.createDisk({ project: "p1", image: "s1", disk: "d2" });
    expect((await storage.info(d2.cephName)).parent?.image).toBe(snap.cephName);
  });

  it("snapshots a provisioned disk while its node is off, refuses while it runs unless forced (issue 16.5)", async () => {
    const { bmi, power } = await setup();
    await bmi.provision({ project: "p1", node: "n1", disk: "d1", image: "golden" });
    await bmi.power({ project: "p1", node: "n1", action: "on" });
    const running = await thrown(() => bmi.snapshotDisk({ project: "p1", disk: "d1", snapshot: "s1" }));
    expect(running.code).toBe("busy");
    expect(running.message).toBe(
      "disk d1 boots node n1 and it is powered on: power the node off first (bmi power off), or pass force if you know its disk is quiet",
    );
    await bmi.power({ project: "p1", node: "n1", action: "off" });
    await expect(bmi.snapshotDisk({ project: "p1", disk: "d1", snapshot: "s0" })).resolves.toMatchObject({
      name: "s0",
    });
    power.setPower("n1", "unknown");
    expect(
      (await thrown(() => bmi.snapshotDisk({ project: "p1", disk: "d1", snapshot: "s1" }))).message,
    ).toMatch(/its BMC does not say it is off/);
    // OBM disabled in HIL answers conflict: still "off" unproven, and the message says how on.
    power.failNext(
      "powerState",
      new BmiError("conflict", "HIL: OBM is not enabled for node n1", { subsystem: "power" }),
    );
    const noObm = await thrown(() => bmi.snapshotDisk({ project: "p1", disk: "d1", snapshot: "s1" }));
    expect(noObm.code).toBe("busy");
    expect(noObm.message).toMatch(
      /its power state cannot be read \(HIL: OBM is not enabled for node n1\).*pass force/,
    );
    await expect(
      bmi.snapshotDisk({ project: "p1", disk: "d1", snapshot: "s1", force: true }),
    ).resolves.toMatchObject({ name: "s1" });
    expect(
      (await thrown(() => bmi.snapshotDisk({ project: "p1", disk: "golden", snapshot: "s2" }))).code,
    ).toBe("invalid_input");
  });
});

describe("mounts and targets", () => {
  it("mounts and unmounts an image, and restores targets after the daemon lost them", async () => {
    const { bmi, exporter } = await setup();
    const target = await bmi.mountImage({ project: "p1", image: "golden" });
    expect(await bmi.mountImage({ project: "p1", image: "golden" })).toEqual(target);
    await bmi.createDisk({ project: "p1", image: "golden", disk: "d1" });
    expect((await bmi.listMounts({ project: "p1" })).map((m) => m.image).sort()).toEqual(["d1", "golden"]);
    exporter.simulateRestart();
    expect((await bmi.restoreTargets()).sort()).toEqual([
      "iqn.2026-11.org.bmi:1img1",
      "iqn.2026-11.org.bmi:1img2",
    ]);
    expect((await exporter.list()).length).toBe(2);
    await bmi.unmountImage({ project: "p1", image: "golden" });
    expect((await thrown(() => bmi.unmountImage({ project: "p1", image: "golden" }))).code).toBe("not_found");
    expect((await thrown(() => bmi.unmountImage({ project: "p1", image: "d1" }))).code).toBe("invalid_input");
  });
});

describe("reconcile", () => {
  it("reports drift between store, storage, targets and boot files, and repairs it", async () => {
    const { bmi, storage, exporter, boot } = await setup();
    await bmi.provision({ project: "p1", node: "n1", disk: "d1", image: "golden" });
    expect((await bmi.reconcile()).drift).toEqual([]);
    await storage.create("1img99", MIB); // orphan image
    exporter.simulateRestart(); // missing target
    await boot.remove("n1"); // missing boot files
    await boot.write({
      node: "stray",
      macs: ["52:54:00:99:99:99"],
      target: { name: "x", portal: "127.0.0.1", port: 3260, lun: 1 },
      firmware: "bios",
      label: "x",
    });
    const report = await bmi.reconcile();
    // Objects named like ours that no operation of this database made are `unknown`: left alone.
    expect(report.drift.map((d) => [d.kind, d.subject]).sort()).toEqual([
      ["missing_boot_files", "n1"],
      ["missing_target", "iqn.2026-11.org.bmi:1img2"],
      ["unknown", "1img99"],
      ["unknown", "stray"],
    ]);
    expect(report.repaired).toEqual([]);
    // Repair refuses on a database that looks new (no admin project) or restored (ids above its own).
    expect(await thrown(() => bmi.reconcile({ repair: true }))).toMatchObject({ code: "conflict" });
    await bmi.createProject({ name: "bmi_infra" }); // as `bmi db init` does
    const restored = await thrown(() => bmi.reconcile({ repair: true }));
    expect(restored.message).toMatch(/1img99.*never allocated an id above 2/);
    expect(await storage.exists("1img99")).toBe(true);
    await storage.remove("1img99");
    const repaired = await bmi.reconcile({ repair: true });
    expect(repaired.failed).toEqual([]);
    expect(repaired.repaired.map((d) => d.kind).sort()).toEqual(["missing_boot_files", "missing_target"]);
    expect(await boot.read("stray")).not.toBeNull();
    // Named explicitly by the operator, an unknown object is removed.
    const named = await bmi.reconcile({ repair: true, remove: ["stray"] });
    expect(named.repaired.map((d) => d.subject)).toEqual(["stray"]);
    expect((await bmi.reconcile()).drift).toEqual([]);
    expect(await boot.read("stray")).toBeNull();
    expect(await boot.read("n1")).not.toBeNull();
  });
});

describe("events and journal", () => {
  it("emits typed progress events with timings and journals every step", async () => {
    const { bmi, store } = await setup();
    const events: BmiEvent[] = [];
    const off = bmi.on((e) => events.push(e));
    await bmi.createDisk({ project: "p1", image: "golden", disk: "d1" });
    off();
    expect(events[0]).toMatchObject({ type: "operation:started", operation: "create disk" });
    expect(events.at(-1)).toMatchObject({ type: "operation:finished", operation: "create disk" });
    const steps = events
      .filter((e) => e.type === "step:finished")
      .map((e) => (e.type === "step:finished" ? e.step : ""));
    expect(steps).toEqual(["insert image row", "clone", "export target", "record export"]);
    const first = events[0];
    const operationId = first && "operationId" in first ? first.operationId : "";
    const journal = await store.journal.list({ operationId });
    expect(journal.map((j) => [j.step, j.status])).toEqual([
      [null, "started"],
      // Steps that touch objects journal them before they run (reconcile's proof of what is ours).
      ["insert image row", "started"],
      ["insert image row", "finished"],
      ["clone", "started"],
      ["clone", "finished"],
      ["export target", "started"],
      ["export target", "finished"],
      ["record export", "finished"],
      [null, "finished"],
    ]);
  });
});

describe("config changes (COR-10)", () => {
  it("clones an image from the S it was created with after [bmi] snapshot changes", async () => {
    const dir = await mkdtemp(join(tmpdir(), "bmi-cor10-"));
    try {
      const drivers = {
        storage: createMemoryStorage(),
        export: createMemoryExport(),
        boot: createMemoryBoot(),
        isolation: createMemoryIsolation({ nodes: [] }),
      };
      const open = (snapshotName: string) => {
        const settings = defaultSettings({ snapshotName });
        const store = openSqliteStore({
          create: true,
          path: join(dir, "bmi.db"),
          uid: settings.uid,
          snapshotName,
        });
        return { bmi: createBmi({ ...drivers, store, settings }), store };
      };
      const before = open("old_snap");
      await before.bmi.createProject({ name: "p1" });
      await drivers.storage.create("centos7", MIB);
      await before.bmi.importImage({ project: "p1", source: "centos7", name: "golden" });
      before.store.close();

      const after = open("new_snap");
      const disk = await after.bmi.createDisk({ project: "p1", image: "golden", disk: "d1" });
      expect((await drivers.storage.info(disk.cephName)).parent).toEqual({
        image: "1img1",
        snapshot: "old_snap",
      });
      after.store.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
