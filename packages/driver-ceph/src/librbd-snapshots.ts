import { BmiError, type CallOptions, type SnapshotRef } from "@bmi/core";
import { check } from "./librbd-connection.js";
import { grow, pooledSpec, type Rbd, withImage } from "./librbd-image.js";
import type { Librbd } from "./librbd-native.js";
import { snapRef } from "./options.js";
import { nameInPool } from "./pool-names.js";

type SnapFn = "rbd_snap_create" | "rbd_snap_remove" | "rbd_snap_protect" | "rbd_snap_unprotect";

/**
 * One snapshot call on the image (opened read-write). `idempotentReason`: the error reason that
 * means the wanted state already holds (e.g. already protected), so a retried call succeeds.
 */
export const snapOp =
  (rbd: Rbd, fnName: SnapFn, step: Parameters<typeof check>[1], idempotentReason?: string) =>
  async (ref: SnapshotRef, call?: CallOptions) => {
    const r = snapRef(ref);
    const what = `${fnName} ${rbd.snapSpec(r)}`;
    const apply = async (lib: Librbd, img: unknown) => {
      try {
        check(await lib[fnName](img, r.snapshot), step, what, { ...r });
      } catch (error) {
        if (error instanceof BmiError && error.details.reason === idempotentReason) return;
        throw error;
      }
    };
    await rbd.run(what, call, (lib, io) =>
      withImage(lib, io, what, r.image, null, (img) => apply(lib, img), false),
    );
  };

/** The image's user snapshots (not clone-v2 snapshots in the trash) with their protection. */
export async function listSnapshots(rbd: Rbd, name: string, call: CallOptions | undefined) {
  const what = `rbd_snap_list ${rbd.spec(name)}`;
  return rbd.run(what, call, (lib, io) =>
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
}

/** The clones of a snapshot (not those in the trash), sorted. */
export async function children(rbd: Rbd, r: SnapshotRef, call: CallOptions | undefined) {
  const what = `rbd_list_children3 ${rbd.snapSpec(r)}`;
  return rbd.run(what, call, (lib, io) =>
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
          .map((c) => nameInPool(rbd.pool, pooledSpec(c)))
          .sort();
      } finally {
        lib.free(specs);
      }
    }),
  );
}
