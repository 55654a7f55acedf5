import { z } from "zod";
import type { Disk, Image, Project } from "../domain/model.js";
import { cephNameOf, DiskName, ImageName, ProjectName } from "../domain/names.js";
import { parseInput } from "../domain/validate.js";
import { BmiError } from "../errors/index.js";
import { type BmiContext, operation, requireImage, requireKind, requireProject } from "./context.js";
import { imageLock, nodeLock } from "./locks.js";
import { deprovisionSteps } from "./nodes.js";
import type { Saga } from "./saga.js";
import { settleDiskSnapshotsSteps } from "./snapshots.js";
import {
  cloneSource,
  cloneStep,
  deleteImageRowStep,
  exportSteps,
  insertImageStep,
  removeImageLastStep,
  unexportSteps,
} from "./steps/index.js";

const CreateDiskInput = z.strictObject({ project: ProjectName, image: ImageName, disk: DiskName });
export type CreateDiskInput = z.input<typeof CreateDiskInput>;

export async function toDisk(ctx: BmiContext, image: Image): Promise<Disk> {
  const record = await ctx.store.exports.get(image.id);
  const node = (await ctx.store.provisionings.getByDisk(image.id))?.node ?? null;
  return { ...image, kind: "disk", target: record?.target ?? null, node };
}

/** Creates a disk: a copy-on-write clone of an image's S snapshot, exported as an iSCSI target. */
export function createDisk(ctx: BmiContext, input: CreateDiskInput): Promise<Disk> {
  const args = parseInput(CreateDiskInput, input, "input");
  // The source image is not locked: many disks may be cloned from one image at once, and Ceph
  // refuses to unprotect a snapshot that has clones, so removeImage cannot pull it away.
  return operation(ctx, "create disk", { ...args }, [imageLock(args.project, args.disk)], async (saga) => {
    const project = await requireProject(ctx, args.project);
    return createDiskSteps(ctx, saga, project, args.image, args.disk);
  });
}

/** The steps of createDisk, shared with provision-from-image. The caller holds the locks. */
export async function createDiskSteps(
  ctx: BmiContext,
  saga: Saga,
  project: Project,
  imageName: string,
  diskName: string,
): Promise<Disk> {
  const source = await requireImage(ctx, project, imageName);
  // Disks carry no S snapshot, so a disk can never be a clone source (spec §2.3).
  requireKind(source, ["golden", "snapshot"], project, "create disk");
  if (await ctx.store.images.get(project.id, diskName)) {
    throw new BmiError("already_exists", `disk ${diskName} already exists in project ${project.name}`, {
      subsystem: "store",
    });
  }
  const row = await insertImageStep(ctx, saga, {
    name: diskName,
    projectId: project.id,
    parentId: source.id,
    isPublic: false,
    isSnapshot: false,
    cephName: (id) => cephNameOf(ctx.settings.uid, id),
  });
  await cloneStep(ctx, saga, await cloneSource(ctx, source), row.cephName);
  const target = await exportSteps(ctx, saga, row);
  return { ...row, kind: "disk", target, node: null };
}

const DeleteDiskInput = z.strictObject({
  project: ProjectName,
  disk: DiskName,
  /** Remove the target even with initiators logged in. */
  force: z.boolean().optional(),
  /**
   * A disk that boots a node: deprovision the node first (network, boot files, record), then
   * delete, all in one saga under the node's and the disk's locks, as the original forced it.
   * Without it that is refused with `busy`.
   */
  deprovision: z.boolean().optional(),
});
export type DeleteDiskInput = z.input<typeof DeleteDiskInput>;

export async function deleteDisk(ctx: BmiContext, input: DeleteDiskInput): Promise<void> {
  const args = parseInput(DeleteDiskInput, input, "input");
  const locks = [imageLock(args.project, args.disk)];
  const booting = args.deprovision ? await bootingNode(ctx, args.project, args.disk) : null;
  if (booting) locks.push(nodeLock(booting));
  return operation(ctx, "delete disk", { project: args.project, disk: args.disk }, locks, async (saga) => {
    const project = await requireProject(ctx, args.project);
    const row = await ctx.store.images.get(project.id, args.disk);
    const record = row && args.deprovision ? await ctx.store.provisionings.getByDisk(row.id) : null;
    if (record) {
      // Another node than the one locked (it changed since): refuse rather than act unlocked.
      if (record.node !== booting) {
        throw new BmiError("conflict", `disk ${args.disk} changed node while being deleted; retry`, {
          subsystem: "store",
          retryable: true,
        });
      }
      await deprovisionSteps(ctx, saga, record, false);
    }
    await deleteDiskSteps(ctx, saga, project, args.disk, args.force ?? false, record?.node);
  });
}

/** The node a disk boots, if any (read before the locks are taken, to know which to take). */
async function bootingNode(ctx: BmiContext, projectName: string, diskName: string): Promise<string | null> {
  const project = await ctx.store.projects.get(projectName);
  const row = project ? await ctx.store.images.get(project.id, diskName) : undefined;
  return row ? ((await ctx.store.provisionings.getByDisk(row.id))?.node ?? null) : null;
}

/** The steps of deleteDisk, shared with deprovision. The caller holds the locks. */
export async function deleteDiskSteps(
  ctx: BmiContext,
  saga: Saga,
  project: Project,
  diskName: string,
  force: boolean,
  servingNode?: string,
): Promise<void> {
  const disk = await requireImage(ctx, project, diskName, "disk");
  requireKind(disk, ["disk"], project, "delete disk");
  const user = await ctx.store.provisionings.getByDisk(disk.id);
  if (user && user.node !== servingNode) {
    throw new BmiError("busy", `disk ${diskName} boots node ${user.node}; deprovision the node first`, {
      subsystem: "store",
      details: { node: user.node },
    });
  }
  // Snapshot images still sharing data with this disk are flattened first (snapshotDisk's "later").
  // They have the disk's parent as theirs, so without such a row no `rbd snap ls` is needed.
  const mayHaveSnapshots = (await ctx.store.images.list(project.id)).some(
    (i) => i.kind === "snapshot" && i.parentId === disk.parentId,
  );
  if (mayHaveSnapshots) await settleDiskSnapshotsSteps(ctx, saga, disk);
  await unexportSteps(ctx, saga, disk, force);
  await deleteImageRowStep(ctx, saga, disk);
  // Removing the clone cannot be undone, so it is the very last step: any failure before it
  // puts everything back; a crash right before it leaves an orphan that reconcile() removes.
  // A clone already gone counts as removed (no `rbd info` first: one process less per delete).
  await removeImageLastStep(ctx, saga, "remove clone", disk.cephName);
}

export async function listDisks(ctx: BmiContext, input: { project: string }): Promise<Disk[]> {
  const { project } = parseInput(z.strictObject({ project: ProjectName }), input, "input");
  const rows = await ctx.store.images.list((await requireProject(ctx, project)).id);
  return Promise.all(rows.filter((i) => i.kind === "disk").map((i) => toDisk(ctx, i)));
}
