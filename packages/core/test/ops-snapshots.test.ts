import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { setup, thrown } from "./ops-helpers.js";

const TEMP = /^bmi_created_snapshot-tmp-/;

describe("snapshotDisk with flatten later (the default)", () => {
  it("returns a clone of the disk's snapshot that can be cloned at once, with S protected", async () => {
    const { bmi, storage } = await setup();
    const d1 = await bmi.createDisk({ project: "p1", image: "golden", disk: "d1" });
    const snap = await bmi.snapshotDisk({ project: "p1", disk: "d1", snapshot: "s1" });
    const info = await storage.info(snap.cephName);
    expect(info.parent?.image).toBe(d1.cephName);
    expect(info.parent?.snapshot).toMatch(TEMP);
    expect(await storage.listSnapshots(snap.cephName)).toMatchObject([
      { name: "bmi_created_snapshot", protected: true },
    ]);
    const d2 = await bmi.createDisk({ project: "p1", image: "s1", disk: "d2" });
    expect((await storage.info(d2.cephName)).parent?.image).toBe(snap.cephName);
    expect((await bmi.listSnapshots({ project: "p1" })).map((s) => [s.image.name, s.parent])).toEqual([
      ["s1", "golden"],
    ]);
  });

  it("holds the disk's content before and after flattening, and after the disk is gone", async () => {
    const { bmi, storage } = await setup();
    const dir = await mkdtemp(join(tmpdir(), "bmi-snap-"));
    try {
      await writeFile(join(dir, "img"), Buffer.concat([Buffer.from("content"), Buffer.alloc(4096)]));
      await storage.importFile?.(join(dir, "img"), "src2");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    await bmi.importImage({ project: "p1", source: "src2", name: "g2" });
    await bmi.createDisk({ project: "p1", image: "g2", disk: "d1" });
    const snap = await bmi.snapshotDisk({ project: "p1", disk: "d1", snapshot: "s1" });
    const head = () => storage.read(snap.cephName).subarray(0, 7).toString();
    expect(head()).toBe("content");
    expect(await bmi.flattenPending()).toBe(1);
    expect(head()).toBe("content");
    await bmi.deleteDisk({ project: "p1", disk: "d1" });
    expect(head()).toBe("content");
  });

  it("is not drift for reconcile while pending", async () => {
    const { bmi } = await setup();
    await bmi.createDisk({ project: "p1", image: "golden", disk: "d1" });
    await bmi.snapshotDisk({ project: "p1", disk: "d1", snapshot: "s1" });
    expect((await bmi.reconcile()).drift).toEqual([]);
  });

  it("flattenPending makes the image independent and drops the disk's temporary snapshot", async () => {
    const { bmi, storage } = await setup();
    const d1 = await bmi.createDisk({ project: "p1", image: "golden", disk: "d1" });
    const s1 = await bmi.snapshotDisk({ project: "p1", disk: "d1", snapshot: "s1" });
    const s2 = await bmi.snapshotDisk({ project: "p1", disk: "d1", snapshot: "s2" });
    await bmi.createDisk({ project: "p1", image: "s1", disk: "d2" });
    expect(await bmi.flattenPending()).toBe(2);
    expect((await storage.info(s1.cephName)).parent).toBeNull();
    expect((await storage.info(s2.cephName)).parent).toBeNull();
    expect(await storage.listSnapshots(d1.cephName)).toEqual([]);
    expect(await bmi.flattenPending()).toBe(0);
    // The flattened image still serves its own clones, and the disk can go.
    await bmi.deleteDisk({ project: "p1", disk: "d1" });
    await bmi.createDisk({ project: "p1", image: "s2", disk: "d3" });
    expect((await bmi.reconcile()).drift).toEqual([]);
  });

  it("deleting the source disk flattens its pending snapshot images first", async () => {
    const { bmi, storage } = await setup();
    await bmi.provision({ project: "p1", node: "n1", disk: "d1", image: "golden" });
    const snap = await bmi.snapshotDisk({ project: "p1", disk: "d1", snapshot: "s1", force: true });
    await bmi.deprovision({ project: "p1", node: "n1", deleteDisk: true });
    expect(await bmi.listDisks({ project: "p1" })).toEqual([]);
    expect((await storage.info(snap.cephName)).parent).toBeNull();
    await bmi.createDisk({ project: "p1", image: "s1", disk: "d2" });
    expect((await bmi.reconcile()).drift).toEqual([]);
  });

  it("a failed flatten while deleting the disk leaves the disk and the pending image as they were", async () => {
    const { bmi, storage, exporter, setHook } = await setup();
    const d1 = await bmi.createDisk({ project: "p1", image: "golden", disk: "d1" });
    const snap = await bmi.snapshotDisk({ project: "p1", disk: "d1", snapshot: "s1" });
    setHook(({ step }) => {
      if (step === "remove disk snapshot") throw new Error("injected");
    });
    await thrown(() => bmi.deleteDisk({ project: "p1", disk: "d1" }));
    setHook(undefined);
    expect((await bmi.listDisks({ project: "p1" })).map((d) => d.name)).toEqual(["d1"]);
    expect((await exporter.list()).map((t) => t.target)).toContain(d1.target?.name);
    // The unprotect was undone, so the disk's snapshot is exactly as before (the flatten itself is harmless).
    expect((await storage.listSnapshots(d1.cephName)).map((s) => s.protected)).toEqual([true]);
    await bmi.deleteDisk({ project: "p1", disk: "d1" });
    expect((await storage.info(snap.cephName)).parent).toBeNull();
  });

  it("flatten now keeps the original's behaviour", async () => {
    const { bmi, storage } = await setup();
    const d1 = await bmi.createDisk({ project: "p1", image: "golden", disk: "d1" });
    const snap = await bmi.snapshotDisk({ project: "p1", disk: "d1", snapshot: "s1", flatten: "now" });
    expect((await storage.info(snap.cephName)).parent).toBeNull();
    expect(await storage.listSnapshots(d1.cephName)).toEqual([]);
    expect(await bmi.flattenPending()).toBe(0);
    expect(
      (
        await thrown(() =>
          bmi.snapshotDisk({ project: "p1", disk: "d1", snapshot: "s2", flatten: "soon" as "now" }),
        )
      ).code,
    ).toBe("invalid_input");
  });
});

describe("removing a snapshot image before it was flattened", () => {
  it("drops the disk's temporary snapshot, so the disk can be deleted at once", async () => {
    const { bmi, storage } = await setup();
    const disk = await bmi.createDisk({ project: "p1", image: "golden", disk: "d1" });
    await bmi.snapshotDisk({ project: "p1", disk: "d1", snapshot: "s1" });
    expect(await storage.listSnapshots(disk.cephName)).toHaveLength(1);
    await bmi.removeImage({ project: "p1", image: "s1" });
    expect(await storage.listSnapshots(disk.cephName)).toEqual([]);
    await bmi.deleteDisk({ project: "p1", disk: "d1" });
    expect(await storage.exists(disk.cephName)).toBe(false);
    expect((await bmi.reconcile()).drift).toEqual([]);
  });
});
