import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  type ExportRecord,
  type Image,
  type LockOwner,
  openSqliteStore,
  type Provisioning,
  type SqliteStore,
} from "../src/index.js";
import { isPidAlive } from "../src/store/sqlite-store.js";

const temp = mkdtempSync(join(tmpdir(), "bmi-store-test-"));
afterAll(() => rmSync(temp, { recursive: true, force: true }));

const HOST = hostname();
const me = (id: string): LockOwner => ({ id, pid: process.pid, host: HOST });

/** The pid of a process that has exited (and been reaped). */
function deadPid(): number {
  const child = spawnSync(process.execPath, ["-e", ""]);
  expect(isPidAlive(child.pid)).toBe(false);
  return child.pid;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let store: SqliteStore;
beforeEach(() => {
  store = openSqliteStore({ create: true, path: ":memory:", uid: "1", snapshotName: "bmi_created_snapshot" });
});
afterEach(() => store.close());

function image(name: string, projectId: number, parentId: number | null = null, isSnapshot = false): Image {
  return store.insertImage({
    name,
    projectId,
    parentId,
    isPublic: false,
    isSnapshot,
    cephName: (id) => `1img${id}`,
  });
}

const target = (name: string) => ({ name, portal: "127.0.0.1", port: 3260, lun: 1 });

describe("projects and images", () => {
  it("derives each image's kind as in spec §2.3", () => {
    const p = store.createProject("p1");
    const golden = image("golden", p.id);
    const disk = image("disk", p.id, golden.id);
    const snap = image("snap", p.id, golden.id, true);
    expect([golden.kind, disk.kind, snap.kind]).toEqual(["golden", "disk", "snapshot"]);
    expect(disk.cephName).toBe(`1img${disk.id}`);
  });

  it("refuses a duplicate project or image name, and a bad project name", () => {
    const p = store.createProject("p1");
    expect(() => store.createProject("p1")).toThrow(
      expect.objectContaining({ code: "already_exists", subsystem: "store" }),
    );
    expect(() => store.createProject("../p")).toThrow(expect.objectContaining({ code: "invalid_input" }));
    image("golden", p.id);
    expect(() => image("golden", p.id)).toThrow(expect.objectContaining({ code: "already_exists" }));
    expect(() => image("x", 999)).toThrow(expect.objectContaining({ code: "not_found" }));
    expect(() => image("y", p.id, 999)).toThrow(expect.objectContaining({ code: "not_found" }));
  });

  it("never reuses the id (and so the RBD name) of a deleted image", () => {
    const p = store.createProject("p1");
    const a = image("a", p.id);
    const b = image("b", p.id);
    store.deleteImage(b.id);
    expect(image("c", p.id).id).toBe(b.id + 1);
    expect(a.id).toBe(1);
    expect(
      store.insertImage({
        id: 40,
        name: "admin",
        projectId: p.id,
        parentId: null,
        isPublic: false,
        isSnapshot: false,
        cephName: "imported",
      }),
    ).toMatchObject({ id: 40, cephName: "imported" });
    store.deleteImage(40);
    expect(image("d", p.id).id).toBe(41);
  });

  it("lists an image's children (disks cloned from it, snapshots recorded under it)", () => {
    const p = store.createProject("p1");
    const golden = image("golden", p.id);
    const other = image("other", p.id);
    const disk = image("disk", p.id, golden.id);
    const snap = image("snap", p.id, golden.id, true);
    image("elsewhere", p.id, other.id);
    expect(store.listChildren(golden.id).map((i) => [i.name, i.kind, i.cephName])).toEqual([
      ["disk", "disk", disk.cephName],
      ["snap", "snapshot", snap.cephName],
    ]);
    expect(store.listChildren(disk.id)).toEqual([]);
  });

  it("detaches snapshot children of a deleted image, as the original did", () => {
    const p = store.createProject("p1");
    const golden = image("golden", p.id);
    const snap = image("snap", p.id, golden.id, true);
    store.deleteImage(golden.id);
    expect(store.getImageById(golden.id)).toBeUndefined();
    expect(store.getImageById(snap.id)).toMatchObject({ parentId: null, isSnapshot: false, kind: "golden" });
  });

  it("refuses to delete an image with clones, an export or a node booting it (busy)", () => {
    const p = store.createProject("p1");
    const golden = image("golden", p.id);
    const disk = image("disk", p.id, golden.id);
    expect(() => store.deleteImage(golden.id)).toThrow(
      expect.objectContaining({ code: "busy", message: "image golden has clones (disk); delete them first" }),
    );
    store.putExport({
      imageId: disk.id,
      target: target("iqn.2026-11.org.bmi:1img2"),
      access: { initiators: "ALL" },
    });
    expect(() => store.deleteImage(disk.id)).toThrow(expect.objectContaining({ code: "busy" }));
    store.deleteExport(disk.id);
    store.deleteImage(disk.id);
    store.deleteImage(golden.id);
    store.deleteImage(golden.id); // idempotent
    expect(store.listImages()).toEqual([]);
  });

  it("refuses to delete a project that still has images (COR-8), and ignores an unknown one", () => {
    const p = store.createProject("p1");
    const golden = image("golden", p.id);
    expect(() => store.deleteProject(p.id)).toThrow(expect.objectContaining({ code: "busy" }));
    store.deleteImage(golden.id);
    store.deleteProject(p.id);
    store.deleteProject(p.id);
    expect(store.listProjects()).toEqual([]);
  });

  it("updates an image (move and rename) keeping its RBD name", () => {
    const p1 = store.createProject("p1");
    const p2 = store.createProject("p2");
    const golden = image("golden", p1.id);
    const snap = image("snap", p1.id, golden.id, true);
    const moved = store.updateImage(snap.id, {
      projectId: p2.id,
      name: "copy",
      parentId: null,
      isSnapshot: false,
    });
    expect(moved).toMatchObject({ projectId: p2.id, name: "copy", kind: "golden", cephName: snap.cephName });
    image("taken", p2.id);
    expect(() => store.updateImage(snap.id, { name: "taken" })).toThrow(
      expect.objectContaining({ code: "already_exists" }),
    );
    expect(() => store.updateImage(999, { name: "x" })).toThrow(
      expect.objectContaining({ code: "not_found" }),
    );
  });
});

describe("exports and provisionings", () => {
  it("stores an export's access without any CHAP secret", () => {
    const path = join(temp, "exports.db");
    const file = openSqliteStore({ create: true, path, uid: "1", snapshotName: "s" });
    try {
      const p = file.createProject("p1");
      const img = file.insertImage({
        name: "g",
        projectId: p.id,
        parentId: null,
        isPublic: false,
        isSnapshot: false,
        cephName: "1img1",
      });
      const access = {
        initiators: { addresses: ["10.0.0.5"] },
        chapUser: "bmi",
        chap: { user: "bmi", secret: "topsecret-chap" },
      };
      file.putExport({
        imageId: img.id,
        target: target("iqn.2026-11.org.bmi:1img1"),
        access,
      } as ExportRecord);
      expect(file.getExport(img.id)).toEqual({
        imageId: img.id,
        target: target("iqn.2026-11.org.bmi:1img1"),
        access: { initiators: { addresses: ["10.0.0.5"] }, chapUser: "bmi" },
      });
      expect(file.listExports()).toHaveLength(1);
    } finally {
      file.close();
    }
    for (const name of readdirSync(temp).filter((n) => n.startsWith("exports.db"))) {
      expect(readFileSync(join(temp, name)).includes("topsecret-chap")).toBe(false);
    }
  });

  it("keeps one node per disk (CON-2) and replaces a node's record", () => {
    const p = store.createProject("p1");
    const golden = image("golden", p.id);
    const d1 = image("d1", p.id, golden.id);
    const d2 = image("d2", p.id, golden.id);
    const record = (node: string, disk: Image): Provisioning => ({
      node,
      project: "p1",
      disk: disk.name,
      diskId: disk.id,
      nic: "eth0",
      mac: "52:54:00:00:00:01" as Provisioning["mac"],
      firmware: "bios",
      target: target(`iqn.2026-11.org.bmi:${disk.cephName}`),
      network: "prov",
      createdAt: "2026-11-26T00:00:00.000Z",
    });
    store.putProvisioning(record("n1", d1));
    expect(store.getProvisioning("n1")).toEqual(record("n1", d1));
    expect(store.getProvisioningByDisk(d1.id)?.node).toBe("n1");
    expect(() => store.putProvisioning(record("n2", d1))).toThrow(
      expect.objectContaining({ code: "conflict", message: "disk d1 already boots node n1" }),
    );
    store.putProvisioning(record("n1", d2));
    expect(store.getProvisioningByDisk(d1.id)).toBeUndefined();
    expect(() => store.deleteProject(p.id)).toThrow(expect.objectContaining({ code: "busy" }));
    store.deleteProvisioning("n1");
    expect(store.listProvisionings()).toEqual([]);
  });
});

describe("journal", () => {
  it("appends entries and lists them oldest first, by operation or after an id", () => {
    const a1 = store.appendJournal({
      operationId: "op-a",
      operation: "create_disk",
      step: "clone",
      status: "started",
      data: { disk: "d1" },
    });
    const b1 = store.appendJournal({
      operationId: "op-b",
      operation: "provision",
      step: null,
      status: "started",
      data: {},
    });
    const a2 = store.appendJournal({
      operationId: "op-a",
      operation: "create_disk",
      step: "clone",
      status: "finished",
      data: { disk: "d1" },
    });
    expect(a1).toMatchObject({ operationId: "op-a", status: "started", data: { disk: "d1" } });
    expect(a1.id).toBeLessThan(b1.id);
    expect(Date.parse(a1.at)).not.toBeNaN();
    expect(store.listJournal().map((e) => e.id)).toEqual([a1.id, b1.id, a2.id]);
    expect(store.listJournal({ operationId: "op-a" }).map((e) => e.status)).toEqual(["started", "finished"]);
    expect(store.listJournal({ since: b1.id })).toEqual([a2]);
  });
});

describe("transactions", () => {
  it("rolls back everything, nested calls included, when the outer one throws", () => {
    expect(() =>
      store.transaction(() => {
        store.createProject("p1");
        store.transaction(() => store.createProject("p2"));
        throw new Error("boom");
      }),
    ).toThrow("boom");
    expect(store.listProjects()).toEqual([]);
  });

  it("rolls back only a nested call that throws when the outer one catches it", () => {
    store.transaction(() => {
      store.createProject("p1");
      try {
        store.transaction(() => {
          store.createProject("p2");
          throw new Error("inner");
        });
      } catch {
        // the outer transaction carries on
      }
      store.createProject("p3");
    });
    expect(store.listProjects().map((p) => p.name)).toEqual(["p1", "p3"]);
  });

  it("refuses an async callback", () => {
    expect(() => store.transaction(async () => 1)).toThrow(
      expect.objectContaining({ code: "internal", subsystem: "store" }),
    );
  });
});

describe("locks", () => {
  it("gives a lock to one owner at a time; the holder may renew it and release it", () => {
    expect(store.tryLock("node:n1", me("op-1"), 60_000)).toBe(true);
    expect(store.tryLock("node:n1", me("op-2"), 60_000)).toBe(false);
    expect(store.tryLock("node:n1", me("op-1"), 60_000)).toBe(true);
    expect(store.tryLock("node:n2", me("op-2"), 60_000)).toBe(true);
    store.unlock("node:n1", me("op-2")); // not the holder: no effect
    expect(store.tryLock("node:n1", me("op-2"), 60_000)).toBe(false);
    store.unlock("node:n1", me("op-1"));
    expect(store.tryLock("node:n1", me("op-2"), 60_000)).toBe(true);
  });

  it("takes over the lock of a dead process on this host", () => {
    const dead: LockOwner = { id: "op-dead", pid: deadPid(), host: HOST };
    expect(store.tryLock("image:1", dead, 600_000)).toBe(true);
    expect(store.tryLock("image:1", me("op-live"), 600_000)).toBe(true);
    expect(store.tryLock("image:1", { ...dead, id: "op-other" }, 600_000)).toBe(false);
  });

  it("does not judge a pid of another host: it waits for the lease", () => {
    const remote: LockOwner = { id: "op-remote", pid: deadPid(), host: "some-other-host" };
    expect(store.tryLock("image:1", remote, 600_000)).toBe(true);
    expect(store.tryLock("image:1", me("op-local"), 600_000)).toBe(false);
  });

  it("takes over an expired lease even when its holder is alive", async () => {
    expect(store.tryLock("image:2", me("op-slow"), 1)).toBe(true);
    await sleep(20);
    expect(store.tryLock("image:2", me("op-next"), 60_000)).toBe(true);
    expect(store.tryLock("image:2", me("op-slow"), 60_000)).toBe(false);
  });

  it("is shared by two store instances on one file (two processes)", () => {
    const path = join(temp, "shared", "bmi.db");
    const a = openSqliteStore({ create: true, path, uid: "1", snapshotName: "s" });
    const b = openSqliteStore({ create: true, path, uid: "1", snapshotName: "s" });
    try {
      expect(a.tryLock("node:n1", me("op-a"), 60_000)).toBe(true);
      expect(b.tryLock("node:n1", me("op-b"), 60_000)).toBe(false);
      a.unlock("node:n1", me("op-a"));
      expect(b.tryLock("node:n1", me("op-b"), 60_000)).toBe(true);
      expect(a.tryLock("node:n1", me("op-a"), 60_000)).toBe(false);
      // and each sees the other's rows
      b.createProject("p1");
      expect(a.getProject("p1")).toBeDefined();
      a.appendJournal({ operationId: "x", operation: "o", step: null, status: "started", data: {} });
      expect(b.listJournal({ operationId: "x" })).toHaveLength(1);
    } finally {
      a.close();
      b.close();
    }
  });

  it("gives a retryable timeout, not a raw SQLite error, when another process keeps the database locked", () => {
    const path = join(temp, "busy", "bmi.db");
    const a = openSqliteStore({ create: true, path, uid: "1", snapshotName: "s", busyTimeoutMs: 50 });
    const other = new Database(path);
    try {
      other.exec("BEGIN IMMEDIATE");
      expect(() => a.createProject("p1")).toThrow(
        expect.objectContaining({ code: "busy", retryable: true, subsystem: "store" }),
      );
      expect(a.listProjects()).toEqual([]); // readers are not blocked (WAL)
      other.exec("ROLLBACK");
      expect(a.createProject("p1").name).toBe("p1");
    } finally {
      other.close();
      a.close();
    }
  });

  it("rejects a lease that is not a positive duration", () => {
    expect(() => store.tryLock("k", me("op"), 0)).toThrow(expect.objectContaining({ code: "invalid_input" }));
  });
});
