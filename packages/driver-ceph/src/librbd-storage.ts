import { open as openFile, unlink } from "node:fs/promises";
import { resolve } from "node:path";
import {
  type Backing,
  BmiError,
  type CallOptions,
  type ImageDetails,
  parseInput,
  type SnapshotRef,
  type StorageDriver,
} from "@bmi/core";
import { z } from "zod";
import { check, createConnection } from "./librbd-connection.js";
import { type Librbd, RBD_SNAP_NAMESPACE_TYPE_TRASH } from "./librbd-native.js";
import { CommonOptionsSchema, FilePath, imageName, rbdBacking, snapRef } from "./options.js";

/** Options of {@link createLibrbdStorage}: the CLI back end's, without the binary and runner. */
export type LibrbdStorageOptions = z.input<typeof CommonOptionsSchema>;

/** A StorageDriver that owns a cluster connection: close it (or `await using`) when done. */
export type LibrbdStorage = StorageDriver & AsyncDisposable & { close(): Promise<void> };

const CHUNK = 4 * 1024 * 1024;

/** Calls a librbd list function that answers -ERANGE with the size it needs, until the buffer fits. */
async function grow(start: number, attempt: (size: number[]) => Promise<number>): Promise<[number, number]> {
  const size = [start];
  for (;;) {
    const rc = await attempt(size);
    if (rc !== -34) return [rc, size[0] ?? 0];
  }
}

/** A StorageDriver calling librbd in-process (koffi, on libuv's worker threads), one connection per driver. */
export function createLibrbdStorage(options: LibrbdStorageOptions): LibrbdStorage {
  const o = parseInput(CommonOptionsSchema, options, "librbd storage options", "storage");
  const pool = o.pool;
  const connection = createConnection(o);
  const spec = (image: string) => `${pool}/${image}`;
  const snapSpec = (ref: SnapshotRef) => `${pool}/${ref.image}@${ref.snapshot}`;

  const run = <T>(
    what: string,
    call: CallOptions | undefined,
    fn: (lib: Librbd, io: unknown) => Promise<T>,
  ) => connection.run(what, call, o.timeoutMs, (h) => fn(h.lib, h.io));
  const runData = <T>(
    what: string,
    call: CallOptions | undefined,
    fn: (lib: Librbd, io: unknown) => Promise<T>,
  ) => connection.run(what, call, o.dataTimeoutMs, (h) => fn(h.lib, h.io));

  /** Opens `image` (at `snap`), runs `fn`, always closes it. */
  async function withImage<T>(
    lib: Librbd,
    io: unknown,
    what: string,
    image: string,
    snap: string | null,
    fn: (img: unknown) => Promise<T>,
    readOnly = true,
  ): Promise<T> {
    const out: unknown[] = [null];
    const openFn = readOnly ? lib.rbd_open_read_only : lib.rbd_open;
    check(await openFn(io, image, out, snap), "other", what, snap ? { image, snapshot: snap } : { image });
    try {
      return await fn(out[0]);
    } finally {
      await lib.rbd_close(out[0]);
    }
  }

  async function parentOf(lib: Librbd, io: unknown, img: unknown): Promise<SnapshotRef | null> {
    const image = lib.alloc("linkedImage", 1);
    const snap = lib.alloc("snapSpec", 1);
    try {
      const rc = await lib.rbd_get_parent(img, image, snap);
      if (rc === -2) return null;
      check(rc, "other", "rbd_get_parent");
      const [p] = lib.linkedImages(image, 1);
      const s = lib.snapSpec(snap);
      await lib.rbd_linked_image_spec_cleanup(image);
      await lib.rbd_snap_spec_cleanup(snap);
      if (!p) return null;
      const inPool = p.pool_name === pool && !p.pool_namespace;
      let snapshot = s.name;
      if (s.namespace_type === RBD_SNAP_NAMESPACE_TYPE_TRASH && inPool) {
        // Clone v2: a removed parent snapshot lives on in the trash; report the name it had.
        snapshot = await withImage(lib, io, "rbd_open parent", p.image_name, null, async (parent) => {
          const buf = Buffer.alloc(256);
          check(await lib.rbd_snap_get_trash_namespace(parent, s.id, buf, buf.length), "other", "trash name");
          return buf.subarray(0, buf.indexOf(0)).toString("utf8");
        });
      }
      return { image: inPool ? p.image_name : `${p.pool_name}/${p.image_name}`, snapshot };
    } finally {
      lib.free(image);
      lib.free(snap);
    }
  }

  const snapOp =
    (
      fnName: "rbd_snap_create" | "rbd_snap_remove" | "rbd_snap_protect" | "rbd_snap_unprotect",
      step: Parameters<typeof check>[1],
      idempotentReason?: string,
    ) =>
    async (ref: SnapshotRef, call?: CallOptions) => {
      const r = snapRef(ref);
      const what = `${fnName} ${snapSpec(r)}`;
      await run(what, call, (lib, io) =>
        withImage(
          lib,
          io,
          what,
          r.image,
          null,
          async (img) => {
            const rc = await lib[fnName](img, r.snapshot);
            try {
              check(rc, step, what, { ...r });
            } catch (error) {
              if (error instanceof BmiError && error.details.reason === idempotentReason) return;
              throw error;
            }
          },
          false,
        ),
      );
    };

  const driver: LibrbdStorage = {
    name: "ceph",
    capabilities: { cowClone: true, liveSnapshot: true, cloneUnprotected: o.cloneFormat === 2 },

    async exists(image, call) {
      const name = imageName(image);
      return run(`rbd_open ${spec(name)}`, call, async (lib, io) => {
        const out: unknown[] = [null];
        const rc = await lib.rbd_open_read_only(io, name, out, null);
        if (rc === -2) return false;
        check(rc, "other", `rbd_open ${spec(name)}`, { image: name });
        await lib.rbd_close(out[0]);
        return true;
      });
    },

    async list(call) {
      return run(`rbd_list ${pool}`, call, async (lib, io) => {
        let buf = Buffer.alloc(0);
        const [rc, used] = await grow(4096, (size) => {
          buf = Buffer.alloc(size[0] ?? 4096);
          return lib.rbd_list(io, buf, size);
        });
        check(rc, "other", `rbd_list ${pool}`, { pool });
        return buf
          .subarray(0, used)
          .toString("utf8")
          .split("\0")
          .filter((n) => n.length > 0)
          .sort();
      });
    },

    async info(image, call): Promise<ImageDetails> {
      const name = imageName(image);
      const what = `rbd info ${spec(name)}`;
      return run(what, call, (lib, io) =>
        withImage(lib, io, what, name, null, async (img) => {
          const size = [0];
          check(await lib.rbd_get_size(img, size), "other", what, { image: name });
          return { name, sizeBytes: Number(size[0]), parent: await parentOf(lib, io, img) };
        }),
      );
    },

    async create(image, sizeBytes, call) {
      const name = imageName(image);
      const size = parseInput(z.number().int().nonnegative(), sizeBytes, "sizeBytes", "storage");
      const what = `rbd_create ${spec(name)}`;
      await run(what, call, async (lib, io) =>
        check(await lib.rbd_create(io, name, size, [0]), "other", what, { image: name }),
      );
    },

    async remove(image, call) {
      const name = imageName(image);
      const what = `rbd_remove ${spec(name)}`;
      await run(what, call, async (lib, io) =>
        check(await lib.rbd_remove(io, name), "remove", what, { image: name }),
      );
    },

    async clone(parent, child, call) {
      const ref = snapRef(parent, "parent");
      const name = imageName(child, "child");
      const what = `rbd_clone3 ${snapSpec(ref)} ${spec(name)}`;
      await run(what, call, async (lib, io) => {
        const opts: unknown[] = [null];
        await lib.rbd_image_options_create(opts); // void: it cannot fail
        try {
          const rc = await lib.rbd_clone3(io, ref.image, ref.snapshot, io, name, opts[0]);
          check(rc, o.cloneFormat === 1 ? "clone" : "other", what, { ...ref, child: name });
        } finally {
          await lib.rbd_image_options_destroy(opts[0]);
        }
      });
    },

    async flatten(image, call) {
      const name = imageName(image);
      const what = `rbd_flatten ${spec(name)}`;
      await runData(what, call, (lib, io) =>
        withImage(
          lib,
          io,
          what,
          name,
          null,
          async (img) => {
            const rc = await lib.rbd_flatten(img);
            // Already flat: the wanted state holds, so a retried flatten succeeds.
            if (rc === -22) return;
            check(rc, "flatten", what, { image: name });
          },
          false,
        ),
      );
    },

    async copy(source, target, call) {
      const from =
        typeof source === "string"
          ? { image: imageName(source, "source"), snapshot: null }
          : snapRef(source, "source");
      const to = imageName(target, "target");
      const what = `rbd_copy ${spec(from.image)} ${spec(to)}`;
      await runData(what, call, (lib, io) =>
        withImage(lib, io, what, from.image, from.snapshot, async (img) =>
          check(await lib.rbd_copy(img, io, to), "other", what, { target: to }),
        ),
      );
    },

    createSnapshot: snapOp("rbd_snap_create", "other"),
    removeSnapshot: snapOp("rbd_snap_remove", "snap_remove"),
    protectSnapshot: snapOp("rbd_snap_protect", "snap_protect", "already_protected"),
    unprotectSnapshot: snapOp("rbd_snap_unprotect", "snap_unprotect", "already_unprotected"),

    async listSnapshots(image, call) {
      const name = imageName(image);
      const what = `rbd_snap_list ${spec(name)}`;
      return run(what, call, (lib, io) =>
        withImage(lib, io, what, name, null, async (img) => {
          let infos = lib.alloc("snapInfo", 1);
          const [rc] = await grow(16, async (max) => {
            lib.free(infos);
            infos = lib.alloc("snapInfo", max[0] ?? 16);
            return lib.rbd_snap_list(img, infos, max);
          });
          try {
            check(rc, "other", what, { image: name });
            const names = lib.snapInfos(infos, rc).map((s) => s.name);
            await lib.rbd_snap_list_end(infos);
            const result = [];
            for (const snap of names) {
              const prot = [0];
              const rc = await lib.rbd_snap_is_protected(img, snap, prot);
              // rbd_snap_list also lists clone-v2 snapshots in the trash; only user snapshots answer by name.
              if (rc === -2) continue;
              check(rc, "other", what, { image: name });
              result.push({ name: snap, protected: prot[0] === 1 });
            }
            return result;
          } finally {
            lib.free(infos);
          }
        }),
      );
    },

    async children(ref, call) {
      const r = snapRef(ref);
      const what = `rbd_list_children3 ${snapSpec(r)}`;
      return run(what, call, (lib, io) =>
        withImage(lib, io, what, r.image, r.snapshot, async (img) => {
          let specs = lib.alloc("linkedImage", 1);
          const [rc, count] = await grow(16, async (max) => {
            lib.free(specs);
            specs = lib.alloc("linkedImage", max[0] ?? 16);
            return lib.rbd_list_children3(img, specs, max);
          });
          try {
            check(rc, "other", what, { ...r });
            const kids = lib.linkedImages(specs, count);
            await lib.rbd_linked_image_spec_list_cleanup(specs, count);
            return kids
              .filter((c) => !c.trash)
              .map((c) =>
                c.pool_name === pool && !c.pool_namespace ? c.image_name : `${c.pool_name}/${c.image_name}`,
              )
              .sort();
          } finally {
            lib.free(specs);
          }
        }),
      );
    },

    backingFor: (image): Backing => rbdBacking(pool, o, image),

    async importFile(path, image, call) {
      const file = resolve(parseInput(FilePath, path, "path", "storage"));
      const name = imageName(image);
      const what = `import ${file} to ${spec(name)}`;
      const handle = await openFile(file, "r");
      try {
        const { size } = await handle.stat();
        await runData(what, call, async (lib, io) => {
          check(await lib.rbd_create(io, name, size, [0]), "other", what, { image: name });
          try {
            await withImage(lib, io, what, name, null, (img) => copyIn(lib, img, handle, size, what), false);
          } catch (error) {
            await lib.rbd_remove(io, name); // a failed import leaves no half-written image behind
            throw error;
          }
        });
      } finally {
        await handle.close();
      }
    },

    async exportFile(image, path, call) {
      const name = imageName(image);
      const file = resolve(parseInput(FilePath, path, "path", "storage"));
      const what = `export ${spec(name)} to ${file}`;
      await runData(what, call, (lib, io) =>
        withImage(lib, io, what, name, null, async (img) => {
          const size = [0];
          check(await lib.rbd_get_size(img, size), "other", what, { image: name });
          const handle = await openFile(file, "wx");
          try {
            await copyOut(lib, img, handle, Number(size[0]), what);
          } catch (error) {
            await handle.close();
            await unlink(file).catch(() => {});
            throw error;
          }
          await handle.close();
        }),
      );
    },

    close: () => connection.close(),
    [Symbol.asyncDispose]: () => connection.close(),
  };
  return driver;
}

type FileHandle = Awaited<ReturnType<typeof openFile>>;
const isZero = (buf: Buffer) => buf.every((b) => b === 0);

/** File → image in 4 MiB chunks; all-zero chunks are skipped so the image stays sparse. */
async function copyIn(lib: Librbd, img: unknown, file: FileHandle, size: number, what: string) {
  const buf = Buffer.alloc(CHUNK);
  for (let offset = 0; offset < size; offset += CHUNK) {
    const { bytesRead } = await file.read(buf, 0, Math.min(CHUNK, size - offset), offset);
    const chunk = buf.subarray(0, bytesRead);
    if (isZero(chunk)) continue;
    check(await lib.rbd_write(img, offset, chunk.length, chunk), "other", what);
  }
}

/** Image → file in 4 MiB chunks; all-zero chunks become holes. */
async function copyOut(lib: Librbd, img: unknown, file: FileHandle, size: number, what: string) {
  const buf = Buffer.alloc(CHUNK);
  await file.truncate(size);
  for (let offset = 0; offset < size; offset += CHUNK) {
    const len = Math.min(CHUNK, size - offset);
    const read = check(await lib.rbd_read(img, offset, len, buf), "other", what);
    const chunk = buf.subarray(0, read);
    if (!isZero(chunk)) await file.write(chunk, 0, chunk.length, offset);
  }
}
