import type { CallOptions, SnapshotRef } from "@bmi/core";
import type { z } from "zod";
import { type Connection, check } from "./librbd-connection.js";
import { type Librbd, RBD_SNAP_NAMESPACE_TYPE_TRASH } from "./librbd-native.js";
import type { CommonOptionsSchema } from "./options.js";
import { inDriverPool, nameInPool, type PooledImage } from "./pool-names.js";

/** One librbd call's work on the pool: the library and the pool's I/O context. */
export type Work<T> = (lib: Librbd, io: unknown) => Promise<T>;

/** What every operation of the librbd back end shares: the pool, the options, the connection. */
export interface Rbd {
  pool: string;
  options: z.output<typeof CommonOptionsSchema>;
  /** Runs metadata work, bounded by `timeoutMs`. */
  run<T>(what: string, call: CallOptions | undefined, work: Work<T>): Promise<T>;
  /** Runs data work (flatten, copy, import, export), bounded by `dataTimeoutMs`. */
  runData<T>(what: string, call: CallOptions | undefined, work: Work<T>): Promise<T>;
  spec(image: string): string;
  snapSpec(ref: SnapshotRef): string;
}

export function createRbd(options: z.output<typeof CommonOptionsSchema>, connection: Connection): Rbd {
  const { pool } = options;
  return {
    pool,
    options,
    run: (what, call, work) => connection.run(what, call, options.timeoutMs, (h) => work(h.lib, h.io)),
    runData: (what, call, work) =>
      connection.run(what, call, options.dataTimeoutMs, (h) => work(h.lib, h.io)),
    spec: (image) => `${pool}/${image}`,
    snapSpec: (ref) => `${pool}/${ref.image}@${ref.snapshot}`,
  };
}

/** Opens `image` (at `snap`), runs `fn`, always closes it. */
export async function withImage<T>(
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

/** Calls a librbd list function that answers -ERANGE with the size it needs, until the buffer fits. */
export async function grow(
  start: number,
  attempt: (size: number[]) => Promise<number>,
): Promise<[number, number]> {
  const size = [start];
  for (;;) {
    const rc = await attempt(size);
    if (rc !== -34) return [rc, size[0] ?? 0];
  }
}

/** A librbd linked-image spec as the pool rule (pool-names.ts) reads it. */
export const pooledSpec = (c: {
  pool_name: string;
  pool_namespace: string;
  image_name: string;
}): PooledImage => ({
  pool: c.pool_name,
  namespace: c.pool_namespace,
  image: c.image_name,
});

/** The open image's parent snapshot, or null; a clone-v2 parent snapshot in the trash by its old name. */
export async function parentOf(
  pool: string,
  lib: Librbd,
  io: unknown,
  img: unknown,
): Promise<SnapshotRef | null> {
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
    const parent = pooledSpec(p);
    const inPool = inDriverPool(pool, parent);
    let snapshot = s.name;
    if (s.namespace_type === RBD_SNAP_NAMESPACE_TYPE_TRASH && inPool) {
      // Clone v2: a removed parent snapshot lives on in the trash; report the name it had.
      snapshot = await withImage(lib, io, "rbd_open parent", p.image_name, null, async (parent) => {
        const buf = Buffer.alloc(256);
        check(await lib.rbd_snap_get_trash_namespace(parent, s.id, buf, buf.length), "other", "trash name");
        return buf.subarray(0, buf.indexOf(0)).toString("utf8");
      });
    }
    return { image: nameInPool(pool, parent), snapshot };
  } finally {
    lib.free(image);
    lib.free(snap);
  }
}
