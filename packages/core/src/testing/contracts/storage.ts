import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { BmiError, type ErrorCode } from "../../errors/index.js";
import type { SnapshotRef, StorageDriver } from "../../ports/storage.js";

/** What `create` hands the suite for one test case. */
export interface StorageDriverUnderTest {
  driver: StorageDriver;
  /** Runs after each case, after the suite removed the images it created. */
  cleanup?: () => Promise<void>;
  /** Holds a watcher on `image` (as tgtd does while serving it) until the returned function runs. */
  holdWatcher?: (image: string) => Promise<() => Promise<void>>;
}

export interface TestStorageDriverOptions {
  /** Shown in the describe block, e.g. "memory" or "ceph (clone v1)". */
  name: string;
  create: () => Promise<StorageDriverUnderTest> | StorageDriverUnderTest;
  /** Switch off a group only with a comment saying why. */
  skip?: { watchers?: boolean; importExport?: boolean };
  /** Size of the images the suite creates (default 4 MiB: small enough for any back end). */
  imageSizeBytes?: number;
  additionalTests?: () => void;
}

/** Runs `fn` and returns the BmiError it throws; fails the test when it throws nothing or something else. */
export async function expectBmiError(fn: () => Promise<unknown>, code: ErrorCode): Promise<BmiError> {
  let thrown: unknown;
  try {
    await fn();
  } catch (error) {
    thrown = error;
  }
  expect(thrown, `expected a BmiError with code ${code}`).toBeInstanceOf(BmiError);
  const error = thrown as BmiError;
  expect({ code: error.code, message: error.message }).toMatchObject({ code });
  expect(error.message.length).toBeGreaterThan(0);
  return error;
}

/** What the cases of one suite share; `driver` and `ctx` are the current case's. */
interface Fixture {
  readonly driver: StorageDriver;
  readonly ctx: StorageDriverUnderTest;
  size: number;
  /** A fresh image name, removed after the case. */
  fresh(label: string): string;
  makeImage(label: string): Promise<string>;
  makeGolden(label: string, protect?: boolean): Promise<SnapshotRef>;
}

/**
 * The contract every StorageDriver passes (unstorage's testDriver pattern): the in-memory driver
 * in unit tests, the Ceph driver against a real cluster. Image names carry a random prefix per
 * case, so suites may share a pool; only images the suite created are touched.
 */
export function testStorageDriver(options: TestStorageDriverOptions): void {
  const size = options.imageSizeBytes ?? 4 * 1024 * 1024;

  describe(`StorageDriver contract: ${options.name}`, () => {
    let ctx: StorageDriverUnderTest;
    let driver: StorageDriver;
    let created: string[];
    let prefix: string;

    /** A fresh image name, removed after the case. */
    const fresh = (label: string) => {
      const name = `${prefix}-${label}`;
      created.push(name);
      return name;
    };
    const makeImage = async (label: string) => {
      const name = fresh(label);
      await driver.create(name, size);
      return name;
    };
    const makeGolden = async (label: string, protect = true): Promise<SnapshotRef> => {
      const ref = { image: await makeImage(label), snapshot: "golden" };
      await driver.createSnapshot(ref);
      if (protect) await driver.protectSnapshot(ref);
      return ref;
    };

    const s: Fixture = {
      get driver() {
        return driver;
      },
      get ctx() {
        return ctx;
      },
      size,
      fresh,
      makeImage,
      makeGolden,
    };

    beforeEach(async () => {
      prefix = `ct${randomBytes(4).toString("hex")}`;
      created = [];
      ctx = await options.create();
      driver = ctx.driver;
    });

    afterEach(async () => {
      // Children were created after their parents: remove in reverse order.
      for (const name of [...created].reverse()) {
        try {
          if (!(await driver.exists(name))) continue;
          for (const snap of await driver.listSnapshots(name)) {
            const ref = { image: name, snapshot: snap.name };
            if (snap.protected) await driver.unprotectSnapshot(ref).catch(() => {});
            await driver.removeSnapshot(ref).catch(() => {});
          }
          await driver.remove(name);
        } catch {
          // Best effort: a failed case may leave an image in an odd state; the next case uses new names.
        }
      }
      await ctx.cleanup?.();
    });

    imageCases(s);
    snapshotCases(s);
    cloneCases(s);
    copyAndServeCases(s, options);
    options.additionalTests?.();
  });
}

function imageCases(s: Fixture) {
  it("reports whether an image exists", async () => {
    const name = s.fresh("img");
    expect(await s.driver.exists(name)).toBe(false);
    await s.driver.create(name, s.size);
    expect(await s.driver.exists(name)).toBe(true);
  });

  it("creates an image with the requested s.size and no parent", async () => {
    const name = await s.makeImage("img");
    expect(await s.driver.info(name)).toEqual({ name, sizeBytes: s.size, parent: null });
  });

  it("refuses to create an image that exists, leaving it unchanged", async () => {
    const name = await s.makeImage("img");
    const error = await expectBmiError(() => s.driver.create(name, s.size * 2), "already_exists");
    expect(error.subsystem).toBe("storage");
    expect((await s.driver.info(name)).sizeBytes).toBe(s.size);
  });

  it("lists created images and forgets removed ones", async () => {
    const a = await s.makeImage("a");
    const b = await s.makeImage("b");
    expect(await s.driver.list()).toEqual(expect.arrayContaining([a, b]));
    await s.driver.remove(a);
    const after = await s.driver.list();
    expect(after).toContain(b);
    expect(after).not.toContain(a);
    expect(await s.driver.exists(a)).toBe(false);
  });

  it("answers not_found for images and snapshots that do not exist", async () => {
    const missing = s.fresh("missing");
    const error = await expectBmiError(() => s.driver.info(missing), "not_found");
    expect(error.fault).toBe("client");
    expect(error.subsystem).toBe("storage");
    await expectBmiError(() => s.driver.remove(missing), "not_found");
    await expectBmiError(() => s.driver.listSnapshots(missing), "not_found");
    const real = await s.makeImage("real");
    const ghost = { image: real, snapshot: "nope" };
    await expectBmiError(() => s.driver.protectSnapshot(ghost), "not_found");
    await expectBmiError(() => s.driver.removeSnapshot(ghost), "not_found");
    await expectBmiError(() => s.driver.clone(ghost, s.fresh("child")), "not_found");
    await expectBmiError(() => s.driver.children(ghost), "not_found");
  });
}

function snapshotCases(s: Fixture) {
  it("creates, lists and removes snapshots; a second snapshot of the same name is refused", async () => {
    const name = await s.makeImage("img");
    const ref = { image: name, snapshot: "s1" };
    await s.driver.createSnapshot(ref);
    await s.driver.createSnapshot({ image: name, snapshot: "s2" });
    expect(await s.driver.listSnapshots(name)).toEqual([
      { name: "s1", protected: false },
      { name: "s2", protected: false },
    ]);
    await expectBmiError(() => s.driver.createSnapshot(ref), "already_exists");
    await s.driver.removeSnapshot(ref);
    expect(await s.driver.listSnapshots(name)).toEqual([{ name: "s2", protected: false }]);
  });

  it("protects and unprotects snapshots idempotently", async () => {
    const ref = await s.makeGolden("img", false);
    await s.driver.protectSnapshot(ref);
    await s.driver.protectSnapshot(ref);
    expect(await s.driver.listSnapshots(ref.image)).toEqual([{ name: ref.snapshot, protected: true }]);
    await s.driver.unprotectSnapshot(ref);
    await s.driver.unprotectSnapshot(ref);
    expect(await s.driver.listSnapshots(ref.image)).toEqual([{ name: ref.snapshot, protected: false }]);
  });

  it("refuses to remove a protected snapshot with busy, and removes it once unprotected", async () => {
    const ref = await s.makeGolden("img");
    const error = await expectBmiError(() => s.driver.removeSnapshot(ref), "busy");
    expect(error.retryable).toBe(true);
    expect(await s.driver.listSnapshots(ref.image)).toHaveLength(1);
    await s.driver.unprotectSnapshot(ref);
    await s.driver.removeSnapshot(ref);
    expect(await s.driver.listSnapshots(ref.image)).toEqual([]);
  });
}

function cloneCases(s: Fixture) {
  it("clones a protected snapshot copy-on-write: the child names its parent and is listed as a child", async () => {
    const ref = await s.makeGolden("golden");
    const child = s.fresh("child");
    await s.driver.clone(ref, child);
    expect(await s.driver.info(child)).toEqual({ name: child, sizeBytes: s.size, parent: ref });
    expect(await s.driver.children(ref)).toEqual([child]);
    expect(await s.driver.exists(child)).toBe(true);
  });

  it("refuses a clone onto an existing name", async () => {
    const ref = await s.makeGolden("golden");
    const other = await s.makeImage("other");
    await expectBmiError(() => s.driver.clone(ref, other), "already_exists");
    expect((await s.driver.info(other)).parent).toBeNull();
    expect(await s.driver.children(ref)).toEqual([]);
  });

  it("handles clones of unprotected snapshots as its capability says", async () => {
    const ref = await s.makeGolden("golden", false);
    const child = s.fresh("child");
    if (s.driver.capabilities.cloneUnprotected) {
      await s.driver.clone(ref, child);
      expect((await s.driver.info(child)).parent).toEqual(ref);
    } else {
      const error = await expectBmiError(() => s.driver.clone(ref, child), "conflict");
      expect(error.retryable).toBe(false);
      expect(error.message).toMatch(/protect/);
      expect(await s.driver.exists(child)).toBe(false);
    }
  });

  it("refuses to unprotect a snapshot that has clones (busy) until they are gone, unless clones need no protection", async () => {
    const ref = await s.makeGolden("golden");
    const child = s.fresh("child");
    await s.driver.clone(ref, child);
    if (s.driver.capabilities.cloneUnprotected) {
      // Clone v2: children do not depend on the protect flag, so unprotecting is allowed.
      await s.driver.unprotectSnapshot(ref);
      expect(await s.driver.listSnapshots(ref.image)).toEqual([{ name: ref.snapshot, protected: false }]);
      expect((await s.driver.info(child)).parent).toEqual(ref);
      return;
    }
    const error = await expectBmiError(() => s.driver.unprotectSnapshot(ref), "busy");
    expect(error.retryable).toBe(true);
    expect(await s.driver.listSnapshots(ref.image)).toEqual([{ name: ref.snapshot, protected: true }]);
    await s.driver.remove(child);
    expect(await s.driver.children(ref)).toEqual([]);
    await s.driver.unprotectSnapshot(ref);
    expect(await s.driver.listSnapshots(ref.image)).toEqual([{ name: ref.snapshot, protected: false }]);
  });

  it("refuses to remove an image that has snapshots or clones, leaving everything in place", async () => {
    const ref = await s.makeGolden("golden");
    const child = s.fresh("child");
    await s.driver.clone(ref, child);
    const error = await expectBmiError(() => s.driver.remove(ref.image), "busy");
    expect(error.subsystem).toBe("storage");
    expect(await s.driver.exists(ref.image)).toBe(true);
    expect((await s.driver.info(child)).parent).toEqual(ref);

    const plain = await s.makeImage("plain");
    await s.driver.createSnapshot({ image: plain, snapshot: "s" });
    await expectBmiError(() => s.driver.remove(plain), "busy");
    expect(await s.driver.exists(plain)).toBe(true);
  });

  it("flattens a clone: it loses its parent, which can then be unprotected and removed", async () => {
    const ref = await s.makeGolden("golden");
    const child = s.fresh("child");
    await s.driver.clone(ref, child);
    await s.driver.flatten(child);
    expect(await s.driver.info(child)).toEqual({ name: child, sizeBytes: s.size, parent: null });
    expect(await s.driver.children(ref)).toEqual([]);
    await s.driver.unprotectSnapshot(ref);
    await s.driver.removeSnapshot(ref);
    await s.driver.remove(ref.image);
    expect(await s.driver.exists(ref.image)).toBe(false);
    expect(await s.driver.exists(child)).toBe(true);
  });

  it("treats flattening an image without a parent as done", async () => {
    const name = await s.makeImage("img");
    await s.driver.flatten(name);
    expect(await s.driver.info(name)).toEqual({ name, sizeBytes: s.size, parent: null });
    await expectBmiError(() => s.driver.flatten(s.fresh("missing")), "not_found");
  });
}

function copyAndServeCases(s: Fixture, options: TestStorageDriverOptions) {
  it("copies an image or a snapshot into an independent image", async () => {
    const ref = await s.makeGolden("golden");
    const fromImage = s.fresh("copy1");
    const fromSnap = s.fresh("copy2");
    await s.driver.copy(ref.image, fromImage);
    await s.driver.copy(ref, fromSnap);
    for (const name of [fromImage, fromSnap]) {
      expect(await s.driver.info(name)).toEqual({ name, sizeBytes: s.size, parent: null });
      expect(await s.driver.listSnapshots(name)).toEqual([]);
    }
    expect(await s.driver.children(ref)).toEqual([]);
    await expectBmiError(() => s.driver.copy(ref.image, fromImage), "already_exists");
    await expectBmiError(() => s.driver.copy(s.fresh("missing"), s.fresh("copy3")), "not_found");
  });

  it("describes how to serve an image without doing I/O", async () => {
    const name = s.fresh("img");
    const backing = s.driver.backingFor(name);
    if (backing.kind === "file") expect(backing.path).toContain(name);
    else expect(backing.image).toBe(name);
    expect(await s.driver.exists(name)).toBe(false);
  });

  it("fails with cancelled when the call's signal is already aborted, changing nothing", async () => {
    const name = s.fresh("img");
    const controller = new AbortController();
    controller.abort();
    await expectBmiError(() => s.driver.create(name, s.size, { signal: controller.signal }), "cancelled");
    expect(await s.driver.exists(name)).toBe(false);
  });

  it.skipIf(options.skip?.watchers)(
    "refuses to remove an image that is being served (watchers) with busy",
    async (test) => {
      if (!s.ctx.holdWatcher) return test.skip("no holdWatcher hook for this s.driver");
      const name = await s.makeImage("served");
      const release = await s.ctx.holdWatcher(name);
      try {
        const error = await expectBmiError(() => s.driver.remove(name), "busy");
        expect(error.retryable).toBe(true);
        expect(await s.driver.exists(name)).toBe(true);
      } finally {
        await release();
      }
      await s.driver.remove(name);
      expect(await s.driver.exists(name)).toBe(false);
    },
  );

  it("removes a snapshot with clone-v2 children only when clones of unprotected snapshots are allowed", async (test) => {
    if (!s.driver.capabilities.cloneUnprotected)
      return test.skip("clone v1: snapshots with children are protected");
    const ref = await s.makeGolden("golden", false);
    const child = s.fresh("child");
    await s.driver.clone(ref, child);
    await s.driver.removeSnapshot(ref);
    expect(await s.driver.listSnapshots(ref.image)).toEqual([]);
    // The parent keeps the data its clone reads through, so it stays unremovable.
    await expectBmiError(() => s.driver.remove(ref.image), "busy");
    expect((await s.driver.info(child)).parent).toEqual(ref);
    await s.driver.remove(child);
    await s.driver.remove(ref.image);
    expect(await s.driver.exists(ref.image)).toBe(false);
  });

  it.skipIf(options.skip?.importExport)(
    "imports a local file into a new image and exports it back unchanged",
    async (test) => {
      if (!s.driver.importFile || !s.driver.exportFile)
        return test.skip("s.driver has no importFile/exportFile");
      const dir = await mkdtemp(join(tmpdir(), "bmi-storage-contract-"));
      try {
        const data = randomBytes(256 * 1024);
        await writeFile(join(dir, "in.raw"), data);
        const name = s.fresh("imported");
        await s.driver.importFile(join(dir, "in.raw"), name);
        expect(await s.driver.info(name)).toEqual({ name, sizeBytes: data.length, parent: null });
        await s.driver.exportFile(name, join(dir, "out.raw"));
        expect((await readFile(join(dir, "out.raw"))).equals(data)).toBe(true);
        await expectBmiError(
          () => s.driver.importFile?.(join(dir, "in.raw"), name) ?? Promise.resolve(),
          "already_exists",
        );
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  );
}
