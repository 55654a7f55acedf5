import { z } from "zod";
import type { Image } from "../domain/model.js";
import { cephNameOf, DiskName, ProjectName, SnapshotName } from "../domain/names.js";
import { parseInput } from "../domain/validate.js";
import { BmiError } from "../errors/index.js";
import {
  type BmiContext,
  cloneStep,
  insertImageStep,
  makeGoldenSteps,
  operation,
  requireImage,
  requireKind,
  requireProject,
  tempSnapshotName,
} from "./context.js";
import { imageLock } from "./locks.js";

const SnapshotInput = z.strictObject({
  project: ProjectName,
  disk: DiskName,
  snapshot: SnapshotName,
  /** Snapshot a disk that is booting a node (its content may be inconsistent; CON-2). */
  force: z.boolean().optional(),
});
export type SnapshotDiskInput = z.input<typeof SnapshotInput>;

/**
 * Saves a disk's content as a new golden image marked as a snapshot: snapshot the disk under a
 * temporary name, clone it, flatten the clone, give it S, drop the temporary snapshot.
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
      const project = requireProject(ctx, args.project);
      const disk = requireImage(ctx, project, args.disk, "disk");
      requireKind(disk, ["disk"], project, "snapshot disk");
      const user = ctx.store.getProvisioningByDisk(disk.id);
      if (user && !args.force) {
        throw new BmiError(
          "busy",
          `disk ${disk.name} boots node ${user.node}; power the node off and pass force, or deprovision it`,
          {
            subsystem: "storage",
            details: { node: user.node },
          },
        );
      }
      if (ctx.store.getImage(project.id, args.snapshot)) {
        throw new BmiError(
          "already_exists",
          `image ${args.snapshot} already exists in project ${project.name}`,
          { subsystem: "store" },
        );
      }
      const temp = { image: disk.cephName, snapshot: tempSnapshotName(ctx, saga.operationId) };
      await saga.step(
        "snapshot disk",
        () => storage.createSnapshot(temp),
        () => storage.removeSnapshot(temp),
      );
      await saga.step(
        "protect disk snapshot",
        () => storage.protectSnapshot(temp),
        () => storage.unprotectSnapshot(temp),
      );
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
      await makeGoldenSteps(ctx, saga, image);
      await saga.cleanup("unprotect disk snapshot", () => storage.unprotectSnapshot(temp));
      await saga.cleanup("remove disk snapshot", () => storage.removeSnapshot(temp));
      return image;
    },
  );
}

/** The project's snapshot images with their parents' names (the original's list_snapshots). */
export function listSnapshots(
  ctx: BmiContext,
  input: { project: string },
): { image: Image; parent: string | null }[] {
  const { project } = parseInput(z.strictObject({ project: ProjectName }), input, "input");
  const rows = ctx.store.listImages(requireProject(ctx, project).id).filter((i) => i.kind === "snapshot");
  return rows.map((image) => ({
    image,
    parent: image.parentId === null ? null : (ctx.store.getImageById(image.parentId)?.name ?? null),
  }));
}
