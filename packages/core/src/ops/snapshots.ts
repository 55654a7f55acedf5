import { z } from "zod";
import type { Image } from "../domain/model.js";
import { cephNameOf, DiskName, ProjectName, SnapshotName } from "../domain/names.js";
import { parseInput } from "../domain/validate.js";
import { BmiError, toBmiError } from "../errors/index.js";
import { type BmiContext, operation, requireImage, requireKind, requireProject } from "./context.js";
import { imageLock } from "./locks.js";
import type { Saga } from "./saga.js";
import {
  cloneSourceSteps,
  cloneStep,
  insertImageStep,
  makeGoldenSteps,
  protectedSnapshotSteps,
  tempSnapshotName,
} from "./steps/index.js";

const SnapshotInput = z.strictObject({
  project: ProjectName,
  disk: DiskName,
  snapshot: SnapshotName,
  /** Snapshot a disk that is booting a node (its content may be inconsistent; CON-2). */
  force: z.boolean().optional(),
  /**
   * "later" (default): the new image is a clone of the disk's snapshot, usable at once; it is
   * flattened by `flattenPending()` or when the disk is deleted. "now": flatten before returning
   * (the original's behaviour; takes as long as copying the disk).
   */
  flatten: z.enum(["now", "later"]).optional(),
});
export type SnapshotDiskInput = z.input<typeof SnapshotInput>;

/**
 * Saves a disk's content as a new golden image marked as a snapshot: snapshot the disk under a
 * temporary name, clone it, give the clone a protected S. With `flatten: "now"` the clone is then
 * flattened and the temporary snapshot dropped; by default that waits for `flattenPending()`, so
 * the image can be cloned in about a second whatever the disk's size.
 */
export function snapshotDisk(ctx: BmiContext, input: SnapshotDiskInput): Promise<Image> {
  const args = parseInput(SnapshotInput, input, "input");
  const { storage } = ctx.drivers;
  const locks = [imageLock(args.project, args.disk), imageLock(args.project, args.snapshot)];
  return operation(
    ctx,
    "snapshot disk",
    { project: args.project, disk: args.disk, snapshot: args.snapshot },
    locks,
    async (saga) => {
      const project = await requireProject(ctx, args.project);
      const disk = await requireImage(ctx, project, args.disk, "disk");
      requireKind(disk, ["disk"], project, "snapshot disk");
      const user = await ctx.store.provisionings.getByDisk(disk.id);
      if (user && !args.force) await requirePoweredOff(ctx, disk.name, user.node);
      if (await ctx.store.images.get(project.id, args.snapshot)) {
        throw new BmiError(
          "already_exists",
          `image ${args.snapshot} already exists in project ${project.name}`,
          { subsystem: "store" },
        );
      }
      const temp = { image: disk.cephName, snapshot: tempSnapshotName(ctx, saga.operationId) };
      await protectedSnapshotSteps(ctx, saga, temp, {
        create: "snapshot disk",
        protect: "protect disk snapshot",
      });
      const image = await insertImageStep(ctx, saga, {
        name: args.snapshot,
        projectId: project.id,
        // As the original: a snapshot's parent is the disk's source image.
        parentId: disk.parentId,
        isPublic: false,
        isSnapshot: true,
        cephName: (id) => cephNameOf(ctx.settings.uid, id),
      });
      await cloneStep(ctx, saga, temp, image.cephName);
      if (args.flatten !== "now") {
        await cloneSourceSteps(ctx, saga, image);
        return image;
      }
      await makeGoldenSteps(ctx, saga, image);
      await saga.cleanup("unprotect disk snapshot", () => storage.unprotectSnapshot(temp));
      await saga.cleanup("remove disk snapshot", () => storage.removeSnapshot(temp));
      return image;
    },
  );
}

/** A disk's temporary snapshots (left by `snapshotDisk`) and the clones made from each. */
async function pendingOf(ctx: BmiContext, disk: Image) {
  const { storage } = ctx.drivers;
  const prefix = `${ctx.settings.snapshotName}-tmp-`;
  const all = await storage.listSnapshots(disk.cephName).catch((error: unknown) => {
    // A disk whose clone is already gone has nothing pending (COR-3: it can still be deleted).
    if (toBmiError(error).code === "not_found") return [];
    throw error;
  });
  const snapshots = all.filter((s) => s.name.startsWith(prefix));
  return Promise.all(
    snapshots.map(async (s) => {
      const ref = { image: disk.cephName, snapshot: s.name };
      return { ref, protected: s.protected, children: await storage.children(ref) };
    }),
  );
}

/**
 * Steps that make every snapshot image taken from `disk` independent of it: flatten each clone
 * of its temporary snapshots, then drop them, so the disk can be removed. Clones no row knows are
 * left alone (reconcile reports them) and keep the snapshot. The caller holds the disk's lock.
 */
/**
 * A disk that boots a node is consistent only while the node is off (the original's documented
 * flow: power off, then snapshot). With a power driver BMI asks the BMC; without one, `force`
 * is the operator's word that the node is off.
 */
async function requirePoweredOff(ctx: BmiContext, disk: string, node: string): Promise<void> {
  let state: string | undefined;
  let unreadable: BmiError | undefined;
  try {
    state = ctx.drivers.power ? await ctx.drivers.power.powerState(node) : undefined;
  } catch (error) {
    // OBM disabled in HIL (conflict), a silent BMC (unavailable): no answer is not "off".
    if (!(error instanceof BmiError) || error.code === "cancelled") throw error;
    unreadable = error;
    state = "unknown";
  }
  if (state === "off") return;
  const why =
    state === undefined
      ? "BMI has no power driver to check that it is off"
      : state === "on"
        ? "it is powered on"
        : unreadable
          ? `its power state cannot be read (${unreadable.message})`
          : "its BMC does not say it is off";
  throw new BmiError(
    "busy",
    `disk ${disk} boots node ${node} and ${why}: power the node off first (bmi power off), or pass force if you know its disk is quiet`,
    {
      subsystem: "storage",
      details: { node, power: state ?? null },
      ...(unreadable ? { cause: unreadable } : {}),
    },
  );
}

export async function settleDiskSnapshotsSteps(ctx: BmiContext, saga: Saga, disk: Image): Promise<number> {
  const { storage } = ctx.drivers;
  const known = new Set((await ctx.store.images.list()).map((i) => i.cephName));
  let flattened = 0;
  for (const pending of await pendingOf(ctx, disk)) {
    const ours = pending.children.filter((c) => known.has(c));
    for (const child of ours) {
      // No undo: a flattened clone holds the same data, only no longer shared.
      await saga.step("flatten snapshot image", () => storage.flatten(child));
      flattened++;
    }
    if (ours.length < pending.children.length) continue;
    if (pending.protected) {
      await saga.step(
        "unprotect disk snapshot",
        () => storage.unprotectSnapshot(pending.ref),
        () => storage.protectSnapshot(pending.ref),
      );
    }
    await saga.step("remove disk snapshot", () => storage.removeSnapshot(pending.ref));
  }
  return flattened;
}

/**
 * Flattens every snapshot image still sharing data with its disk (`snapshotDisk` with the default
 * `flatten: "later"`), one disk at a time under that disk's lock; returns how many it flattened.
 * Run it in the background whenever convenient; deleting a disk does it for that disk anyway.
 */
export async function flattenPending(ctx: BmiContext): Promise<number> {
  let total = 0;
  const projects = new Map((await ctx.store.projects.list()).map((p) => [p.id, p.name]));
  for (const disk of (await ctx.store.images.list()).filter((i) => i.kind === "disk")) {
    const project = projects.get(disk.projectId);
    if (project === undefined || (await pendingOf(ctx, disk)).length === 0) continue;
    total += await operation(
      ctx,
      "flatten snapshots",
      { project, disk: disk.name },
      [imageLock(project, disk.name)],
      async (saga) => {
        const current = await ctx.store.images.getById(disk.id);
        return current ? settleDiskSnapshotsSteps(ctx, saga, current) : 0;
      },
    );
  }
  return total;
}

/** The project's snapshot images with their parents' names (the original's list_snapshots). */
export async function listSnapshots(
  ctx: BmiContext,
  input: { project: string },
): Promise<{ image: Image; parent: string | null }[]> {
  const { project } = parseInput(z.strictObject({ project: ProjectName }), input, "input");
  const rows = (await ctx.store.images.list((await requireProject(ctx, project)).id)).filter(
    (i) => i.kind === "snapshot",
  );
  return Promise.all(
    rows.map(async (image) => ({
      image,
      parent:
        image.parentId === null ? null : ((await ctx.store.images.getById(image.parentId))?.name ?? null),
    })),
  );
}
