import { resolve } from "node:path";
import type { Backing, CallOptions, ImageDetails, StorageDriver } from "@bmi/core";
import { z } from "zod";
import { check, createConnection } from "./librbd-connection.js";
import { exportFile, importFile } from "./librbd-files.js";
import { createRbd, grow, parentOf, type Rbd, withImage } from "./librbd-image.js";
import type { Librbd } from "./librbd-native.js";
import { children, listSnapshots, snapOp } from "./librbd-snapshots.js";
import { CommonOptionsSchema, FilePath, imageName, kit, rbdBacking, snapRef } from "./options.js";

/** Options of {@link createLibrbdStorage}: the CLI back end's, without the binary and runner. */
export type LibrbdStorageOptions = z.input<typeof CommonOptionsSchema>;

/** A StorageDriver that owns a cluster connection: close it (or `await using`) when done. */
export type LibrbdStorage = StorageDriver & AsyncDisposable & { close(): Promise<void> };

const filePath = (path: unknown) => resolve(kit.input(FilePath, path, "path"));

/** A StorageDriver calling librbd in-process (koffi, on libuv's worker threads), one connection per driver. */
export function createLibrbdStorage(options: LibrbdStorageOptions): LibrbdStorage {
  const o = kit.input(CommonOptionsSchema, options, "librbd storage options");
  const connection = createConnection(o);
  const rbd = createRbd(o, connection);
  return {
    name: "ceph",
    capabilities: { cowClone: true, liveSnapshot: true, cloneUnprotected: o.cloneFormat === 2 },
    exists: (image, call) => exists(rbd, imageName(image), call),
    list: (call) => list(rbd, call),
    info: (image, call) => info(rbd, imageName(image), call),
    create: async (image, sizeBytes, call) => {
      const name = imageName(image);
      const size = kit.input(z.number().int().nonnegative(), sizeBytes, "sizeBytes");
      const what = `rbd_create ${rbd.spec(name)}`;
      await rbd.run(what, call, async (lib, io) =>
        check(await lib.rbd_create(io, name, size, [0]), "other", what, { image: name }),
      );
    },
    remove: async (image, call) => {
      const name = imageName(image);
      const what = `rbd_remove ${rbd.spec(name)}`;
      await rbd.run(what, call, async (lib, io) =>
        check(await lib.rbd_remove(io, name), "remove", what, { image: name }),
      );
    },
    clone: (parent, child, call) => clone(rbd, snapRef(parent, "parent"), imageName(child, "child"), call),
    flatten: (image, call) => flatten(rbd, imageName(image), call),
    copy: (source, target, call) => copy(rbd, source, imageName(target, "target"), call),
    createSnapshot: snapOp(rbd, "rbd_snap_create", "other"),
    removeSnapshot: snapOp(rbd, "rbd_snap_remove", "snap_remove"),
    protectSnapshot: snapOp(rbd, "rbd_snap_protect", "snap_protect", "already_protected"),
    unprotectSnapshot: snapOp(rbd, "rbd_snap_unprotect", "snap_unprotect", "already_unprotected"),
    listSnapshots: (image, call) => listSnapshots(rbd, imageName(image), call),
    children: (ref, call) => children(rbd, snapRef(ref), call),
    backingFor: (image): Backing => rbdBacking(o.pool, o, image),
    importFile: (path, image, call) => importFile(rbd, filePath(path), imageName(image), call),
    exportFile: (image, path, call) => exportFile(rbd, imageName(image), filePath(path), call),
    close: () => connection.close(),
    [Symbol.asyncDispose]: () => connection.close(),
  };
}

async function exists(rbd: Rbd, name: string, call: CallOptions | undefined): Promise<boolean> {
  const what = `rbd_open ${rbd.spec(name)}`;
  return rbd.run(what, call, async (lib, io) => {
    const out: unknown[] = [null];
    const rc = await lib.rbd_open_read_only(io, name, out, null);
    if (rc === -2) return false;
    check(rc, "other", what, { image: name });
    await lib.rbd_close(out[0]);
    return true;
  });
}

async function list(rbd: Rbd, call: CallOptions | undefined): Promise<string[]> {
  const what = `rbd_list ${rbd.pool}`;
  return rbd.run(what, call, async (lib, io) => {
    let buf = Buffer.alloc(0);
    const [rc, used] = await grow(4096, (size) => {
      buf = Buffer.alloc(size[0] ?? 4096);
      return lib.rbd_list(io, buf, size);
    });
    check(rc, "other", what, { pool: rbd.pool });
    return buf
      .subarray(0, used)
      .toString("utf8")
      .split("\0")
      .filter((n) => n.length > 0)
      .sort();
  });
}

async function info(rbd: Rbd, name: string, call: CallOptions | undefined): Promise<ImageDetails> {
  const what = `rbd info ${rbd.spec(name)}`;
  return rbd.run(what, call, (lib, io) =>
    withImage(lib, io, what, name, null, async (img) => {
      const size = [0];
      check(await lib.rbd_get_size(img, size), "other", what, { image: name });
      return { name, sizeBytes: Number(size[0]), parent: await parentOf(rbd.pool, lib, io, img) };
    }),
  );
}

async function clone(
  rbd: Rbd,
  ref: { image: string; snapshot: string },
  name: string,
  call: CallOptions | undefined,
) {
  const what = `rbd_clone3 ${rbd.snapSpec(ref)} ${rbd.spec(name)}`;
  await rbd.run(what, call, async (lib, io) => {
    const opts: unknown[] = [null];
    await lib.rbd_image_options_create(opts); // void: it cannot fail
    try {
      const rc = await lib.rbd_clone3(io, ref.image, ref.snapshot, io, name, opts[0]);
      check(rc, rbd.options.cloneFormat === 1 ? "clone" : "other", what, { ...ref, child: name });
    } finally {
      await lib.rbd_image_options_destroy(opts[0]);
    }
  });
}

async function flatten(rbd: Rbd, name: string, call: CallOptions | undefined) {
  const what = `rbd_flatten ${rbd.spec(name)}`;
  const work = async (lib: Librbd, img: unknown) => {
    const rc = await lib.rbd_flatten(img);
    // Already flat: the wanted state holds, so a retried flatten succeeds.
    if (rc === -22) return;
    check(rc, "flatten", what, { image: name });
  };
  await rbd.runData(what, call, (lib, io) =>
    withImage(lib, io, what, name, null, (img) => work(lib, img), false),
  );
}

async function copy(rbd: Rbd, source: unknown, to: string, call: CallOptions | undefined) {
  const from =
    typeof source === "string"
      ? { image: imageName(source, "source"), snapshot: null }
      : snapRef(source, "source");
  const what = `rbd_copy ${rbd.spec(from.image)} ${rbd.spec(to)}`;
  await rbd.runData(what, call, (lib, io) =>
    withImage(lib, io, what, from.image, from.snapshot, async (img) =>
      check(await lib.rbd_copy(img, io, to), "other", what, { target: to }),
    ),
  );
}
