import { spawnSync } from "node:child_process";
import { hostname } from "node:os";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Image, Provisioning } from "../../domain/model.js";
import type { ErrorCode } from "../../errors/index.js";
import type { ExportRecord, LockOwner, Store } from "../../store/types.js";

export interface TestStoreOptions {
  name: string;
  /** A new, empty store for each test (its own file or database); the suite closes it after the test. */
  create: () => Promise<Store>;
  /** Called after each test, also when it failed, once the store is closed (e.g. remove its file). */
  cleanup?: () => Promise<void> | void;
  /** The store's own cases, run inside the same describe block. */
  additionalTests?: () => void;
}

/** The store under test, as the cases see it: set before each test. */
type Get = () => Store;

/**
 * The Store contract: every repository method, transactions (commit, rollback, nesting, no
 * interleaving), locks (contention, dead holder, lease) and the journal's order and filters.
 * The SQLite store passes it, on a file and on `:memory:`; a second store (e.g. PostgreSQL)
 * proves itself by passing it too.
 */
export function testStore(options: TestStoreOptions): void {
  describe(`Store contract: ${options.name}`, () => {
    let store: Store | undefined;
    beforeEach(async () => {
      store = await options.create();
    });
    afterEach(async () => {
      await store?.close();
      store = undefined;
      await options.cleanup?.();
    });
    const get: Get = () => {
      if (!store) throw new Error("the store was not created");
      return store;
    };
    describe("projects", () => projectCases(get));
    describe("images", () => imageCases(get));
    describe("exports and provisionings", () => recordCases(get));
    describe("journal", () => journalCases(get));
    describe("locks", () => lockCases(get));
    describe("transactions and close", () => transactionCases(get));
    options.additionalTests?.();
  });
}

/** Rejects with a BmiError of `code` (the store's errors are BmiErrors, never raw driver errors). */
async function rejectsWith(promise: Promise<unknown>, code: ErrorCode): Promise<void> {
  await expect(promise).rejects.toMatchObject({ name: "BmiError", code });
}

async function image(
  store: Pick<Store, "images">,
  name: string,
  projectId: number,
  parentId: number | null = null,
  isSnapshot = false,
): Promise<Image> {
  return store.images.insert({
    name,
    projectId,
    parentId,
    isPublic: false,
    isSnapshot,
    cephName: (id) => `1img${id}`,
  });
}

const target = (name: string) => ({ name, portal: "127.0.0.1", port: 3260, lun: 1 });

const exportOf = (imageId: number, name: string): ExportRecord => ({
  imageId,
  target: target(name),
  access: { initiators: { names: ["iqn.2010-04.org.ipxe:n1"] }, chapUser: "bmi" },
});

const provisioningOf = (node: string, disk: Image): Provisioning => ({
  node,
  project: "p1",
  disk: disk.name,
  diskId: disk.id,
  nic: "eth0",
  mac: "52:54:00:00:00:01" as Provisioning["mac"],
  firmware: "bios",
  target: target(`iqn.2026-11.org.bmi:${disk.cephName}`),
  network: null,
  createdAt: "2026-11-01T00:00:00.000Z",
});

function projectCases(get: Get): void {
  it("creates, finds and lists projects by id order; ids are allocated or given", async () => {
    const p1 = await get().projects.create("p1");
    const p3 = await get().projects.create("p3", 42);
    expect(p1).toMatchObject({ name: "p1" });
    expect(p3).toEqual({ id: 42, name: "p3" });
    expect(await get().projects.get("p1")).toEqual(p1);
    expect(await get().projects.getById(42)).toEqual(p3);
    expect(await get().projects.get("nope")).toBeUndefined();
    expect(await get().projects.getById(999)).toBeUndefined();
    expect((await get().projects.list()).map((p) => p.name)).toEqual(["p1", "p3"]);
  });

  it("refuses a duplicate name, a taken id and a bad name", async () => {
    await get().projects.create("p1", 7);
    await rejectsWith(get().projects.create("p1"), "already_exists");
    await rejectsWith(get().projects.create("p2", 7), "already_exists");
    await rejectsWith(get().projects.create("../p"), "invalid_input");
    expect((await get().projects.list()).map((p) => p.name)).toEqual(["p1"]);
  });

  it("deletes an empty project, ignores an unknown id, refuses one with images or nodes (busy)", async () => {
    const p = await get().projects.create("p1");
    const golden = await image(get(), "golden", p.id);
    await rejectsWith(get().projects.delete(p.id), "busy");
    const disk = await image(get(), "disk", p.id, golden.id);
    await get().provisionings.put(provisioningOf("n1", disk));
    await get().projects.delete(999);
    await rejectsWith(get().projects.delete(p.id), "busy");
    await get().provisionings.delete("n1");
    await get().images.delete(disk.id);
    await get().images.delete(golden.id);
    await get().projects.delete(p.id);
    expect(await get().projects.list()).toEqual([]);
  });
}

function imageCases(get: Get): void {
  it("inserts images with their kind, RBD name and origin; finds and lists them", async () => {
    const p = await get().projects.create("p1");
    const q = await get().projects.create("p2");
    const golden = await image(get(), "golden", p.id);
    const disk = await image(get(), "disk", p.id, golden.id);
    const snap = await image(get(), "snap", p.id, golden.id, true);
    const fixed = await get().images.insert({
      id: 40,
      name: "imported",
      projectId: q.id,
      parentId: null,
      isPublic: true,
      isSnapshot: false,
      cephName: "centos7",
    });
    expect([golden.kind, disk.kind, snap.kind]).toEqual(["golden", "disk", "snapshot"]);
    expect(disk).toMatchObject({
      name: "disk",
      projectId: p.id,
      parentId: golden.id,
      cephName: `1img${disk.id}`,
    });
    expect(fixed).toMatchObject({ id: 40, cephName: "centos7", isPublic: true });
    expect(await get().images.get(p.id, "disk")).toEqual(disk);
    expect(await get().images.getById(40)).toEqual(fixed);
    expect(await get().images.get(q.id, "disk")).toBeUndefined();
    expect(await get().images.getById(999)).toBeUndefined();
    expect((await get().images.list()).map((i) => i.name)).toEqual(["golden", "disk", "snap", "imported"]);
    expect((await get().images.list(q.id)).map((i) => i.name)).toEqual(["imported"]);
    expect((await get().images.listChildren(golden.id)).map((i) => i.name)).toEqual(["disk", "snap"]);
    expect(await get().images.listChildren(disk.id)).toEqual([]);
    expect(await get().images.origin(40)).toMatchObject({ cephName: "centos7" });
    expect(typeof (await get().images.origin(40))?.snapshotName).toBe("string");
    expect(await get().images.origin(999)).toBeUndefined();
  });

  it("refuses a duplicate name, an unknown project or parent, and a taken id", async () => {
    const p = await get().projects.create("p1");
    const golden = await image(get(), "golden", p.id);
    await rejectsWith(image(get(), "golden", p.id), "already_exists");
    await rejectsWith(image(get(), "x", 999), "not_found");
    await rejectsWith(image(get(), "y", p.id, 999), "not_found");
    const taken = { ...golden, name: "other", cephName: "other" };
    await rejectsWith(get().images.insert(taken), "already_exists");
    expect(await get().images.list()).toHaveLength(1);
  });

  it("never reuses an id, even the highest after it is deleted; idHighWater remembers it", async () => {
    const p = await get().projects.create("p1");
    await image(get(), "a", p.id);
    const b = await image(get(), "b", p.id);
    await get().images.delete(b.id);
    expect(await get().images.idHighWater()).toBe(b.id);
    expect((await image(get(), "c", p.id)).id).toBe(b.id + 1);
    const given = { name: "admin", projectId: p.id, parentId: null, isPublic: false, isSnapshot: false };
    await get().images.insert({ ...given, id: 40, cephName: "imported" });
    await get().images.delete(40);
    expect(await get().images.idHighWater()).toBe(40);
    expect((await image(get(), "d", p.id)).id).toBe(41);
  });

  it("updates name, project and parent; refuses an unknown image, a name clash and a bad parent", async () => {
    const p = await get().projects.create("p1");
    const q = await get().projects.create("p2");
    const golden = await image(get(), "golden", p.id);
    const snap = await image(get(), "snap", p.id, golden.id, true);
    await image(get(), "taken", p.id);
    const moved = await get().images.update(snap.id, {
      name: "v2",
      projectId: q.id,
      parentId: null,
      isSnapshot: false,
    });
    expect(moved).toMatchObject({ id: snap.id, name: "v2", projectId: q.id, parentId: null, kind: "golden" });
    expect(moved.cephName).toBe(snap.cephName);
    expect(await get().images.get(q.id, "v2")).toEqual(moved);
    await rejectsWith(get().images.update(999, { name: "x" }), "not_found");
    await rejectsWith(get().images.update(golden.id, { name: "taken" }), "already_exists");
    await rejectsWith(get().images.update(golden.id, { parentId: golden.id }), "invalid_input");
  });

  it("deletes idempotently, detaching snapshot children; refuses while it has clones, an export or a node (busy)", async () => {
    const p = await get().projects.create("p1");
    const golden = await image(get(), "golden", p.id);
    const snap = await image(get(), "snap", p.id, golden.id, true);
    const disk = await image(get(), "disk", p.id, golden.id);
    await rejectsWith(get().images.delete(golden.id), "busy");
    await get().exports.put(exportOf(disk.id, "iqn.2026-11.org.bmi:disk"));
    await rejectsWith(get().images.delete(disk.id), "busy");
    await get().exports.delete(disk.id);
    await get().provisionings.put(provisioningOf("n1", disk));
    await rejectsWith(get().images.delete(disk.id), "busy");
    await get().provisionings.delete("n1");
    await get().images.delete(disk.id);
    await get().images.delete(golden.id);
    await get().images.delete(golden.id);
    expect(await get().images.getById(snap.id)).toMatchObject({
      parentId: null,
      isSnapshot: false,
      kind: "golden",
    });
  });
}

function recordCases(get: Get): void {
  const disks = async () => {
    const p = await get().projects.create("p1");
    const golden = await image(get(), "golden", p.id);
    return [await image(get(), "d1", p.id, golden.id), await image(get(), "d2", p.id, golden.id)] as const;
  };

  it("puts (replacing), gets, lists and deletes exports; a target serves one image", async () => {
    const [d1, d2] = await disks();
    await get().exports.put(exportOf(d2.id, "t2"));
    await get().exports.put({ imageId: d1.id, target: target("t0"), access: { initiators: "ALL" } });
    await get().exports.put(exportOf(d1.id, "t1"));
    expect(await get().exports.get(d1.id)).toEqual(exportOf(d1.id, "t1"));
    expect(await get().exports.get(999)).toBeUndefined();
    expect((await get().exports.list()).map((e) => e.target.name)).toEqual(["t1", "t2"]);
    await rejectsWith(get().exports.put(exportOf(d1.id, "t2")), "already_exists");
    await rejectsWith(get().exports.put(exportOf(999, "t9")), "not_found");
    await get().exports.delete(d1.id);
    await get().exports.delete(d1.id);
    expect((await get().exports.list()).map((e) => e.imageId)).toEqual([d2.id]);
  });

  it("puts (replacing), gets by node and by disk, lists by node and deletes provisionings; a disk serves one node", async () => {
    const [d1, d2] = await disks();
    await get().provisionings.put(provisioningOf("n2", d2));
    await get().provisionings.put(provisioningOf("n1", d1));
    await get().provisionings.put({ ...provisioningOf("n1", d1), network: "prov" });
    expect(await get().provisionings.get("n1")).toEqual({ ...provisioningOf("n1", d1), network: "prov" });
    expect(await get().provisionings.getByDisk(d2.id)).toEqual(provisioningOf("n2", d2));
    expect(await get().provisionings.get("n9")).toBeUndefined();
    expect(await get().provisionings.getByDisk(999)).toBeUndefined();
    expect((await get().provisionings.list()).map((r) => r.node)).toEqual(["n1", "n2"]);
    await rejectsWith(get().provisionings.put(provisioningOf("n3", d1)), "conflict");
    await get().provisionings.put(provisioningOf("n2", d2)); // the same record again: fine
    await get().provisionings.delete("n2");
    await get().provisionings.put(provisioningOf("n1", d2)); // n1 moves to d2: d1 is free
    expect(await get().provisionings.getByDisk(d1.id)).toBeUndefined();
    await get().provisionings.put(provisioningOf("n2", d1));
    await rejectsWith(get().provisionings.put(provisioningOf("n3", { ...d1, id: 999 })), "not_found");
    await get().provisionings.delete("n1");
    await get().provisionings.delete("n1");
    expect((await get().provisionings.list()).map((r) => [r.node, r.disk])).toEqual([["n2", "d1"]]);
  });
}

function journalCases(get: Get): void {
  it("appends with increasing ids and a time; lists oldest first, by operation or after an id", async () => {
    const line = (operationId: string, status: string) => ({
      operationId,
      operation: "provision",
      step: status === "started" ? null : "clone",
      status,
      data: { disk: "d1", nested: { n: 1 } },
    });
    const a1 = await get().journal.append(line("op-a", "started"));
    const b1 = await get().journal.append(line("op-b", "started"));
    const a2 = await get().journal.append(line("op-a", "finished"));
    expect(a1).toMatchObject({ ...line("op-a", "started") });
    expect(a1.id).toBeLessThan(b1.id);
    expect(b1.id).toBeLessThan(a2.id);
    expect(Date.parse(a1.at)).not.toBeNaN();
    expect(await get().journal.list()).toEqual([a1, b1, a2]);
    expect(await get().journal.list({ operationId: "op-a" })).toEqual([a1, a2]);
    expect(await get().journal.list({ since: b1.id })).toEqual([a2]);
    expect(await get().journal.list({ operationId: "op-b", since: b1.id })).toEqual([]);
  });
}

const HOST = hostname();
const owner = (id: string, host = HOST, pid = process.pid): LockOwner => ({ id, pid, host });

/** The pid of a process that has exited (and been reaped). */
function deadPid(): number {
  return spawnSync(process.execPath, ["-e", ""]).pid;
}

function lockCases(get: Get): void {
  it("gives a lock to one owner at a time; the holder re-takes, renews, holds and releases it", async () => {
    const { locks } = get();
    expect(await locks.tryLock("node:n1", owner("op-1"), 60_000)).toBe(true);
    expect(await locks.tryLock("node:n1", owner("op-2"), 60_000)).toBe(false);
    expect(await locks.tryLock("node:n1", owner("op-1"), 60_000)).toBe(true);
    expect(await locks.holds("node:n1", owner("op-1"))).toBe(true);
    expect(await locks.holds("node:n1", owner("op-2"))).toBe(false);
    expect(await locks.renew("node:n1", owner("op-1"), 60_000)).toBe(true);
    expect(await locks.renew("node:n1", owner("op-2"), 60_000)).toBe(false);
    await locks.unlock("node:n1", owner("op-2")); // not the holder: no effect
    expect(await locks.tryLock("node:n1", owner("op-2"), 60_000)).toBe(false);
    await locks.unlock("node:n1", owner("op-1"));
    expect(await locks.holds("node:n1", owner("op-1"))).toBe(false);
    expect(await locks.tryLock("node:n1", owner("op-2"), 60_000)).toBe(true);
  });

  it("takes over the lock of a dead process on this host, but waits for the lease of another host's", async () => {
    const { locks } = get();
    const dead = owner("op-dead", HOST, deadPid());
    expect(await locks.tryLock("image:1", dead, 600_000)).toBe(true);
    expect(await locks.tryLock("image:1", owner("op-live"), 600_000)).toBe(true);
    expect(await locks.holds("image:1", dead)).toBe(false);
    const remote = owner("op-remote", "some-other-host", deadPid());
    expect(await locks.tryLock("image:2", remote, 600_000)).toBe(true);
    expect(await locks.tryLock("image:2", owner("op-local"), 600_000)).toBe(false);
  });

  it("ends a lease: an expired lock is taken over, and its old holder can neither renew nor hold it", async () => {
    const { locks } = get();
    expect(await locks.tryLock("image:3", owner("op-slow"), 1)).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(await locks.holds("image:3", owner("op-slow"))).toBe(false);
    expect(await locks.renew("image:3", owner("op-slow"), 60_000)).toBe(false);
    expect(await locks.tryLock("image:3", owner("op-next"), 60_000)).toBe(true);
    expect(await locks.tryLock("image:3", owner("op-slow"), 60_000)).toBe(false);
  });

  it("lists every lock with whether its holder is gone, and breaks one by owner", async () => {
    const { locks } = get();
    await locks.tryLock("b:live", owner("op-live"), 60_000);
    await locks.tryLock("a:dead", owner("op-dead", HOST, deadPid()), 60_000);
    const listed = await locks.list();
    expect(listed.map((l) => [l.key, l.owner.id, l.stale])).toEqual([
      ["a:dead", "op-dead", true],
      ["b:live", "op-live", false],
    ]);
    expect(listed[1]?.expiresAt).toBeGreaterThan(Date.now());
    await locks.break("b:live", "op-other"); // another owner's id: no effect
    await locks.break("a:dead", "op-dead");
    expect((await locks.list()).map((l) => l.key)).toEqual(["b:live"]);
  });

  it("rejects a lease that is not a positive duration", async () => {
    await rejectsWith(get().locks.tryLock("k", owner("op"), 0), "invalid_input");
    await rejectsWith(get().locks.renew("k", owner("op"), -1), "invalid_input");
  });
}

function transactionCases(get: Get): void {
  it("commits when the callback resolves, with its value", async () => {
    const value = await get().transaction(async (tx) => {
      const p = await tx.projects.create("p1");
      await image(tx, "golden", p.id);
      return p.name;
    });
    expect(value).toBe("p1");
    expect((await get().images.list()).map((i) => i.name)).toEqual(["golden"]);
  });

  it("rolls back everything, nested transactions included, when the callback rejects", async () => {
    await expect(
      get().transaction(async (tx) => {
        await tx.projects.create("p1");
        await tx.transaction((inner) => inner.projects.create("p2"));
        await tx.journal.append({
          operationId: "x",
          operation: "o",
          step: null,
          status: "started",
          data: {},
        });
        throw new Error("boom");
      }),
    ).rejects.toThrow("boom");
    expect(await get().projects.list()).toEqual([]);
    expect(await get().journal.list()).toEqual([]);
  });

  it("rolls back only a nested transaction that rejects when the outer one carries on", async () => {
    await get().transaction(async (tx) => {
      await tx.projects.create("p1");
      await tx
        .transaction(async (inner) => {
          await inner.projects.create("p2");
          throw new Error("inner");
        })
        .catch(() => {});
      await tx.projects.create("p3");
    });
    expect((await get().projects.list()).map((p) => p.name)).toEqual(["p1", "p3"]);
  });

  it("keeps a write made outside an open transaction when that transaction rolls back", async () => {
    let release = () => {};
    const paused = new Promise<void>((resolve) => {
      release = resolve;
    });
    const rolledBack = get().transaction(async (tx) => {
      await tx.projects.create("inside");
      await paused;
      throw new Error("boom");
    });
    const outside = get().projects.create("outside");
    release();
    await expect(rolledBack).rejects.toThrow("boom");
    expect((await outside).name).toBe("outside");
    expect((await get().projects.list()).map((p) => p.name)).toEqual(["outside"]);
  });

  it("closes idempotently; later calls reject", async () => {
    await get().projects.create("p1");
    await Promise.all([get().close(), get().close()]);
    await get().close();
    await expect(get().projects.list()).rejects.toThrow();
  });
}
