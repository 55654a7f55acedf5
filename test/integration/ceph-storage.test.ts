import { rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { expectBmiError, testStorageDriver } from "@bmi/core/testing/contracts";
import {
  type CephStorageOptions,
  createCephStorage,
  createLibrbdStorage,
  type LibrbdStorage,
} from "@bmi/driver-ceph";
import { makeTempDir } from "@bmi/lab";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { cephAdmin, filePrefix, holdWatcher, rbdAsClient } from "./ceph-helpers.js";

const ceph = inject("ceph");
const base: CephStorageOptions = {
  conf: ceph.conf,
  keyring: ceph.keyring,
  clientId: ceph.clientId,
  pool: ceph.pool,
  timeoutMs: 20_000,
};

for (const cloneFormat of [1, 2] as const) {
  testStorageDriver({
    name: `ceph CLI (clone v${cloneFormat})`,
    create: () => ({
      driver: createCephStorage({ ...base, cloneFormat }),
      holdWatcher: (image) => holdWatcher(ceph, image),
    }),
  });
  // The same contract in-process: one connection per case, closed by the suite's cleanup.
  let librbd: LibrbdStorage | undefined;
  testStorageDriver({
    name: `ceph librbd (clone v${cloneFormat})`,
    create: () => {
      librbd = createLibrbdStorage({ ...base, cloneFormat });
      return {
        driver: librbd,
        holdWatcher: (image) => holdWatcher(ceph, image),
        cleanup: async () => librbd?.close(),
      };
    },
  });
}

describe("ceph storage on the real cluster", () => {
  const storage = createCephStorage(base);
  const prefix = filePrefix("cs");
  const created: string[] = [];
  const name = (label: string) => {
    const n = `${prefix}-${label}`;
    created.push(n);
    return n;
  };

  afterAll(async () => {
    for (const image of created.reverse()) {
      const snaps = await rbdAsClient(ceph, ["snap", "ls", "--format", "json", `${ceph.pool}/${image}`]);
      for (const s of JSON.parse(snaps.stdout || "[]") as Array<{ name: string }>) {
        await rbdAsClient(ceph, ["snap", "unprotect", `${ceph.pool}/${image}@${s.name}`]);
        await rbdAsClient(ceph, ["snap", "rm", `${ceph.pool}/${image}@${s.name}`]);
      }
      await rbdAsClient(ceph, ["rm", "--no-progress", `${ceph.pool}/${image}`]);
    }
  });

  const golden = async (label: string) => {
    const ref = { image: name(label), snapshot: "bmi_created_snapshot" };
    await storage.create(ref.image, 8 * 1024 * 1024);
    await storage.createSnapshot(ref);
    await storage.protectSnapshot(ref);
    return ref;
  };

  it("makes clones metadata-only: a fresh clone uses no space of its own", async () => {
    const ref = await golden("g-du");
    const child = name("c-du");
    await storage.clone(ref, child);
    const du = await rbdAsClient(ceph, ["du", "--format", "json", `${ceph.pool}/${child}`]);
    expect(du.exitCode).toBe(0);
    const images = (JSON.parse(du.stdout) as { images: Array<{ name: string; used_size: number }> }).images;
    expect(images.find((i) => i.name === child)?.used_size).toBe(0);
  });

  it("refuses to remove a parent with clones, naming the reason, with rbd's stderr as the cause", async () => {
    const ref = await golden("g-rm");
    const child = name("c-rm");
    await storage.clone(ref, child);
    const error = await expectBmiError(() => storage.remove(ref.image), "busy");
    expect(error.details).toMatchObject({ reason: "snapshots", exitCode: 39, image: ref.image });
    expect(error.message).toContain(ref.image);
    expect(error.message).toMatch(/snapshots/);
    expect(String((error.cause as Error).message)).toMatch(/image has snapshots/);
    expect(await storage.exists(ref.image)).toBe(true);
  });

  it("refuses to remove an image with snapshots (exit 39) and a protected snapshot (exit 16)", async () => {
    const ref = await golden("g-snap");
    const imageError = await expectBmiError(() => storage.remove(ref.image), "busy");
    expect(imageError.details).toMatchObject({ reason: "snapshots", exitCode: 39 });
    const snapError = await expectBmiError(() => storage.removeSnapshot(ref), "busy");
    expect(snapError.details).toMatchObject({ reason: "protected", exitCode: 16 });
    expect(await storage.listSnapshots(ref.image)).toEqual([{ name: ref.snapshot, protected: true }]);
  });

  it("refuses to unprotect a snapshot with clones (exit 16, children)", async () => {
    const ref = await golden("g-unprot");
    await storage.clone(ref, name("c-unprot"));
    const error = await expectBmiError(() => storage.unprotectSnapshot(ref), "busy");
    expect(error.details).toMatchObject({ reason: "children", exitCode: 16 });
  });

  it("refuses a clone v1 of an unprotected snapshot with a non-retryable conflict", async () => {
    const image = name("g-noprot");
    await storage.create(image, 4 * 1024 * 1024);
    await storage.createSnapshot({ image, snapshot: "s" });
    const child = name("c-noprot");
    const error = await expectBmiError(() => storage.clone({ image, snapshot: "s" }, child), "conflict");
    expect(error.retryable).toBe(false);
    expect(error.details).toMatchObject({ reason: "unprotected", exitCode: 22 });
    expect(await storage.exists(child)).toBe(false);
  });

  it("answers not_found for names that do not exist, and for a pool that does not exist", async () => {
    const missing = name("missing");
    const error = await expectBmiError(() => storage.info(missing), "not_found");
    expect(error.details).toMatchObject({ exitCode: 2, image: missing });
    expect(error.message).toContain(`${ceph.pool}/${missing}`);
    await expectBmiError(() => storage.createSnapshot({ image: missing, snapshot: "s" }), "not_found");
    await expectBmiError(() => storage.flatten(missing), "not_found");
    const noPool = createCephStorage({ ...base, pool: `nopool${prefix}` });
    const poolError = await expectBmiError(() => noPool.list(), "not_found");
    expect(poolError.details).toMatchObject({ reason: "pool" });
  });

  it("rejects hostile names before running anything", async () => {
    for (const bad of ["../etc", "-rf", "a b", "x@y", "p/q"]) {
      const error = await expectBmiError(() => storage.create(bad, 1), "invalid_input");
      expect(error.subsystem).toBe("storage");
    }
  });

  describe("credentials", () => {
    let dir: { path: string; remove: () => Promise<void> };
    let otherPool: string;
    beforeAll(async () => {
      dir = await makeTempDir("ceph-cred");
      otherPool = `${prefix}-other`;
      await cephAdmin(ceph, ["osd", "pool", "create", otherPool, "8", "8"]);
    });
    afterAll(async () => {
      await cephAdmin(ceph, ["osd", "pool", "delete", otherPool, otherPool, "--yes-i-really-really-mean-it"]);
      await dir.remove();
    });

    it("maps a wrong key to a non-retryable permission_denied error", async () => {
      const key = (await execa("ceph-authtool", ["--gen-print-key"])).stdout.trim();
      const keyring = join(dir.path, "wrong.keyring");
      await writeFile(keyring, `[client.${ceph.clientId}]\n\tkey = ${key}\n`, { mode: 0o600 });
      const wrong = createCephStorage({ ...base, keyring });
      const error = await expectBmiError(() => wrong.list(), "permission_denied");
      expect(error.retryable).toBe(false);
      expect(error.details).toMatchObject({ exitCode: 13 });
      expect(error.message).not.toContain(key);
    });

    it("maps a missing keyring to permission_denied, not to 'image does not exist'", async () => {
      const gone = createCephStorage({ ...base, keyring: join(dir.path, "absent.keyring") });
      const error = await expectBmiError(() => gone.exists("anything"), "permission_denied");
      expect(error.details).toMatchObject({ reason: "keyring" });
      await rm(join(dir.path, "absent.keyring"), { force: true });
    });

    it("maps a pool outside the client's caps to permission_denied", async () => {
      const outside = createCephStorage({ ...base, pool: otherPool });
      const error = await expectBmiError(() => outside.create(name("nocaps"), 1024), "permission_denied");
      expect(error.details).toMatchObject({ exitCode: 1 });
    });
  });

  it("tells tgt how to open the image: pool, image, conf and client id", () => {
    expect(storage.backingFor("1img7")).toEqual({
      kind: "rbd",
      pool: ceph.pool,
      image: "1img7",
      conf: ceph.conf,
      clientId: ceph.clientId,
    });
  });

  it("creates images of an exact byte size", async () => {
    const image = name("bytes");
    await storage.create(image, 5 * 1024 * 1024 + 4096);
    expect((await storage.info(image)).sizeBytes).toBe(5 * 1024 * 1024 + 4096);
  });

  it("kills a running rbd when the call's signal aborts, failing with cancelled", async () => {
    const controller = new AbortController();
    const pending = storage.list({ signal: controller.signal });
    controller.abort();
    await expectBmiError(() => pending, "cancelled");
  });
});
