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
import { isPidAlive } from "../src/store/sqlite/index.js";

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

async function image(
  name: string,
  projectId: number,
  parentId: number | null = null,
  isSnapshot = false,
): Promise<Image> {
  return await store.images.insert({
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
  it("derives each image's kind as in spec §2.3", async () => {
    const p = await store.projects.create("p1");
    const golden = await image("golden", p.id);
    const disk = await image("disk", p.id, golden.id);
    const snap = await image("snap", p.id, golden.id, true);
    expect([golden.kind, disk.kind, snap.kind]).toEqual(["golden", "disk", "snapshot"]);
    expect(disk.cephName).toBe(`1img${disk.id}`);
  });

  it("refuses a duplicate project or image name, and a bad project name", async () => {
    const p = await store.projects.create("p1");
    await expect(store.projects.create("p1")).rejects.toThrow(
      expect.objectContaining({ code: "already_exists", subsystem: "store" }),
    );
    await expect(store.projects.create("../p")).rejects.toThrow(
      expect.objectContaining({ code: "invalid_input" }),
    );
    await image("golden", p.id);
    await expect(image("golden", p.id)).rejects.toThrow(expect.objectContaining({ code: "already_exists" }));
    await expect(image("x", 999)).rejects.toThrow(expect.objectContaining({ code: "not_found" }));
    await expect(image("y", p.id, 999)).rejects.toThrow(expect.objectContaining({ code: "not_found" }));
  });

  it("never reuses the id (and so the RBD name) of a deleted image", async () => {
    const p = await store.projects.create("p1");
    const a = await image("a", p.id);
    const b = await image("b", p.id);
    await store.images.delete(b.id);
    expect((await image("c", p.id)).id).toBe(b.id + 1);
    expect(a.id).toBe(1);
    expect(
      await store.images.insert({
        id: 40,
        name: "admin",
        projectId: p.id,
        parentId: null,
        isPublic: false,
        isSnapshot: false,
        cephName: "imported",
      }),
    ).toMatchObject({ id: 40, cephName: "imported" });
    await store.images.delete(40);
    expect((await image("d", p.id)).id).toBe(41);
  });

  it("lists an image's children (disks cloned from it, snapshots recorded under it)", async () => {
    const p = await store.projects.create("p1");
    const golden = await image("golden", p.id);
    const other = await image("other", p.id);
    const disk = await image("disk", p.id, golden.id);
    const snap = await image("snap", p.id, golden.id, true);
    await image("elsewhere", p.id, other.id);
    expect((await store.images.listChildren(golden.id)).map((i) => [i.name, i.kind, i.cephName])).toEqual([
      ["disk", "disk", disk.cephName],
      ["snap", "snapshot", snap.cephName],
    ]);
    expect(await store.images.listChildren(disk.id)).toEqual([]);
  });

  it("detaches snapshot children of a deleted image, as the original did", async () => {
    const p = await store.projects.create("p1");
    const golden = await image("golden", p.id);
    const snap = await image("snap", p.id, golden.id, true);
    await store.images.delete(golden.id);
    expect(await store.images.getById(golden.id)).toBeUndefined();
    expect(await store.images.getById(snap.id)).toMatchObject({
      parentId: null,
      isSnapshot: false,
      kind: "golden",
    });
  });

  it("refuses to delete an image with clones, an export or a node booting it (busy)", async () => {
    const p = await store.projects.create("p1");
    const golden = await image("golden", p.id);
    const disk = await image("disk", p.id, golden.id);
    await expect(store.images.delete(golden.id)).rejects.toThrow(
      expect.objectContaining({ code: "busy", message: "image golden has clones (disk); delete them first" }),
    );
    await store.exports.put({
      imageId: disk.id,
      target: target("iqn.2026-11.org.bmi:1img2"),
      access: { initiators: "ALL" },
    });
    await expect(store.images.delete(disk.id)).rejects.toThrow(expect.objectContaining({ code: "busy" }));
    await store.exports.delete(disk.id);
    await store.images.delete(disk.id);
    await store.images.delete(golden.id);
    await store.images.delete(golden.id); // idempotent
    expect(await store.images.list()).toEqual([]);
  });

  it("refuses to delete a project that still has images (COR-8), and ignores an unknown one", async () => {
    const p = await store.projects.create("p1");
    const golden = await image("golden", p.id);
    await expect(store.projects.delete(p.id)).rejects.toThrow(expect.objectContaining({ code: "busy" }));
    await store.images.delete(golden.id);
    await store.projects.delete(p.id);
    await store.projects.delete(p.id);
    expect(await store.projects.list()).toEqual([]);
  });

  it("updates an image (move and rename) keeping its RBD name", async () => {
    const p1 = await store.projects.create("p1");
    const p2 = await store.projects.create("p2");
    const golden = await image("golden", p1.id);
    const snap = await image("snap", p1.id, golden.id, true);
    const moved = await store.images.update(snap.id, {
      projectId: p2.id,
      name: "copy",
      parentId: null,
      isSnapshot: false,
    });
    expect(moved).toMatchObject({ projectId: p2.id, name: "copy", kind: "golden", cephName: snap.cephName });
    await image("taken", p2.id);
    await expect(store.images.update(snap.id, { name: "taken" })).rejects.toThrow(
      expect.objectContaining({ code: "already_exists" }),
    );
    await expect(store.images.update(999, { name: "x" })).rejects.toThrow(
      expect.objectContaining({ code: "not_found" }),
    );
  });
});

describe("exports and provisionings", () => {
  it("stores an export's access without any CHAP secret", async () => {
    const path = join(temp, "exports.db");
    const file = openSqliteStore({ create: true, path, uid: "1", snapshotName: "s" });
    try {
      const p = await file.projects.create("p1");
      const img = await file.images.insert({
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
      await file.exports.put({
        imageId: img.id,
        target: target("iqn.2026-11.org.bmi:1img1"),
        access,
      } as ExportRecord);
      expect(await file.exports.get(img.id)).toEqual({
        imageId: img.id,
        target: target("iqn.2026-11.org.bmi:1img1"),
        access: { initiators: { addresses: ["10.0.0.5"] }, chapUser: "bmi" },
      });
      expect(await file.exports.list()).toHaveLength(1);
    } finally {
      await file.close();
    }
    for (const name of readdirSync(temp).filter((n) => n.startsWith("exports.db"))) {
      expect(readFileSync(join(temp, name)).includes("topsecret-chap")).toBe(false);
    }
  });

  it("keeps one node per disk (CON-2) and replaces a node's record", async () => {
    const p = await store.projects.create("p1");
    const golden = await image("golden", p.id);
    const d1 = await image("d1", p.id, golden.id);
    const d2 = await image("d2", p.id, golden.id);
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
    await store.provisionings.put(record("n1", d1));
    expect(await store.provisionings.get("n1")).toEqual(record("n1", d1));
    expect((await store.provisionings.getByDisk(d1.id))?.node).toBe("n1");
    await expect(store.provisionings.put(record("n2", d1))).rejects.toThrow(
      expect.objectContaining({ code: "conflict", message: "disk d1 already boots node n1" }),
    );
    await store.provisionings.put(record("n1", d2));
    expect(await store.provisionings.getByDisk(d1.id)).toBeUndefined();
    await expect(store.projects.delete(p.id)).rejects.toThrow(expect.objectContaining({ code: "busy" }));
    await store.provisionings.delete("n1");
    expect(await store.provisionings.list()).toEqual([]);
  });
});

describe("journal", () => {
  it("appends entries and lists them oldest first, by operation or after an id", async () => {
    const a1 = await store.journal.append({
      operationId: "op-a",
      operation: "create_disk",
      step: "clone",
      status: "started",
      data: { disk: "d1" },
    });
    const b1 = await store.journal.append({
      operationId: "op-b",
      operation: "provision",
      step: null,
      status: "started",
      data: {},
    });
    const a2 = await store.journal.append({
      operationId: "op-a",
      operation: "create_disk",
      step: "clone",
      status: "finished",
      data: { disk: "d1" },
    });
    expect(a1).toMatchObject({ operationId: "op-a", status: "started", data: { disk: "d1" } });
    expect(a1.id).toBeLessThan(b1.id);
    expect(Date.parse(a1.at)).not.toBeNaN();
    expect((await store.journal.list()).map((e) => e.id)).toEqual([a1.id, b1.id, a2.id]);
    expect((await store.journal.list({ operationId: "op-a" })).map((e) => e.status)).toEqual([
      "started",
      "finished",
    ]);
    expect(await store.journal.list({ since: b1.id })).toEqual([a2]);
  });
});

describe("transactions", () => {
  it("rolls back everything, nested calls included, when the outer one rejects", async () => {
    await expect(
      store.transaction(async (tx) => {
        await tx.projects.create("p1");
        await tx.transaction((inner) => inner.projects.create("p2"));
        throw new Error("boom");
      }),
    ).rejects.toThrow("boom");
    expect(await store.projects.list()).toEqual([]);
  });

  it("rolls back only a nested call that rejects when the outer one catches it", async () => {
    await store.transaction(async (tx) => {
      await tx.projects.create("p1");
      await tx
        .transaction(async (inner) => {
          await inner.projects.create("p2");
          throw new Error("inner");
        })
        .catch(() => {
          // the outer transaction carries on
        });
      await tx.projects.create("p3");
    });
    expect((await store.projects.list()).map((p) => p.name)).toEqual(["p1", "p3"]);
  });

  it("lets no other caller's statement into an open transaction (better-sqlite3 is one connection)", async () => {
    let release = () => {};
    const paused = new Promise<void>((resolve) => {
      release = resolve;
    });
    const rolledBack = store.transaction(async (tx) => {
      await tx.projects.create("inside");
      await paused;
      throw new Error("boom");
    });
    // Started while the transaction awaits: it must wait, not join it and be rolled back with it.
    const outside = store.projects.create("outside");
    release();
    await expect(rolledBack).rejects.toThrow("boom");
    expect((await outside).name).toBe("outside");
    expect((await store.projects.list()).map((p) => p.name)).toEqual(["outside"]);
  });

  it("refuses a transaction handle used after its callback ended", async () => {
    const leaked = await store.transaction(async (tx) => tx);
    await expect(leaked.projects.list()).rejects.toThrow(
      expect.objectContaining({ code: "internal", subsystem: "store" }),
    );
  });
});

describe("locks", () => {
  it("gives a lock to one owner at a time; the holder may renew it and release it", async () => {
    expect(await store.locks.tryLock("node:n1", me("op-1"), 60_000)).toBe(true);
    expect(await store.locks.tryLock("node:n1", me("op-2"), 60_000)).toBe(false);
    expect(await store.locks.tryLock("node:n1", me("op-1"), 60_000)).toBe(true);
    expect(await store.locks.tryLock("node:n2", me("op-2"), 60_000)).toBe(true);
    await store.locks.unlock("node:n1", me("op-2")); // not the holder: no effect
    expect(await store.locks.tryLock("node:n1", me("op-2"), 60_000)).toBe(false);
    await store.locks.unlock("node:n1", me("op-1"));
    expect(await store.locks.tryLock("node:n1", me("op-2"), 60_000)).toBe(true);
  });

  it("takes over the lock of a dead process on this host", async () => {
    const dead: LockOwner = { id: "op-dead", pid: deadPid(), host: HOST };
    expect(await store.locks.tryLock("image:1", dead, 600_000)).toBe(true);
    expect(await store.locks.tryLock("image:1", me("op-live"), 600_000)).toBe(true);
    expect(await store.locks.tryLock("image:1", { ...dead, id: "op-other" }, 600_000)).toBe(false);
  });

  it("does not judge a pid of another host: it waits for the lease", async () => {
    const remote: LockOwner = { id: "op-remote", pid: deadPid(), host: "some-other-host" };
    expect(await store.locks.tryLock("image:1", remote, 600_000)).toBe(true);
    expect(await store.locks.tryLock("image:1", me("op-local"), 600_000)).toBe(false);
  });

  it("takes over an expired lease even when its holder is alive", async () => {
    expect(await store.locks.tryLock("image:2", me("op-slow"), 1)).toBe(true);
    await sleep(20);
    expect(await store.locks.tryLock("image:2", me("op-next"), 60_000)).toBe(true);
    expect(await store.locks.tryLock("image:2", me("op-slow"), 60_000)).toBe(false);
  });

  it("is shared by two store instances on one file (two processes)", async () => {
    const path = join(temp, "shared", "bmi.db");
    const a = openSqliteStore({ create: true, path, uid: "1", snapshotName: "s" });
    const b = openSqliteStore({ create: true, path, uid: "1", snapshotName: "s" });
    try {
      expect(await a.locks.tryLock("node:n1", me("op-a"), 60_000)).toBe(true);
      expect(await b.locks.tryLock("node:n1", me("op-b"), 60_000)).toBe(false);
      await a.locks.unlock("node:n1", me("op-a"));
      expect(await b.locks.tryLock("node:n1", me("op-b"), 60_000)).toBe(true);
      expect(await a.locks.tryLock("node:n1", me("op-a"), 60_000)).toBe(false);
      // and each sees the other's rows
      await b.projects.create("p1");
      expect(await a.projects.get("p1")).toBeDefined();
      await a.journal.append({ operationId: "x", operation: "o", step: null, status: "started", data: {} });
      expect(await b.journal.list({ operationId: "x" })).toHaveLength(1);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it("gives a retryable timeout, not a raw SQLite error, when another process keeps the database locked", async () => {
    const path = join(temp, "busy", "bmi.db");
    const a = openSqliteStore({ create: true, path, uid: "1", snapshotName: "s", busyTimeoutMs: 50 });
    const other = new Database(path);
    try {
      other.exec("BEGIN IMMEDIATE");
      await expect(a.projects.create("p1")).rejects.toThrow(
        expect.objectContaining({ code: "busy", retryable: true, subsystem: "store" }),
      );
      expect(await a.projects.list()).toEqual([]); // readers are not blocked (WAL)
      other.exec("ROLLBACK");
      expect((await a.projects.create("p1")).name).toBe("p1");
    } finally {
      other.close();
      await a.close();
    }
  });

  it("rejects a lease that is not a positive duration", async () => {
    await expect(store.locks.tryLock("k", me("op"), 0)).rejects.toThrow(
      expect.objectContaining({ code: "invalid_input" }),
    );
  });
});
