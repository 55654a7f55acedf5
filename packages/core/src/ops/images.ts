import { z } from "zod";
import type { Image } from "../domain/model.js";
import { cephNameOf, ImageName, ProjectName, RbdImageName, RbdSnapshotName } from "../domain/names.js";
import { parseInput } from "../domain/validate.js";
import { BmiError } from "../errors/index.js";
import { type BmiContext, operation, requireImage, requireKind, requireProject } from "./context.js";
import { imageLock } from "./locks.js";
import {
  cloneSource,
  cloneStep,
  deleteImageRowStep,
  insertImageStep,
  makeGoldenSteps,
  protectedSnapshotSteps,
  removeImageLastStep,
  tempSnapshotName,
} from "./steps/index.js";

const ImportImageInput = z.strictObject({
  project: ProjectName,
  /** The RBD image to adopt; it stays in the pool unchanged. */
  source: RbdImageName,
  /** The BMI name; defaults to the source's name, as in the original. */
  name: ImageName.optional(),
  /** Import from this existing snapshot of the source instead of a temporary one. */
  snapshot: RbdSnapshotName.optional(),
  /** Protect the source snapshot (and leave it protected), as the original's `--protect`. */
  protect: z.boolean().optional(),
  isPublic: z.boolean().optional(),
});
export type ImportImageInput = z.input<typeof ImportImageInput>;

/**
 * Adopts an RBD image (or one of its snapshots) as a golden image: a flattened copy named
 * `<uid>img<id>` carrying the protected clone-source snapshot S.
 */
export function importImage(ctx: BmiContext, input: ImportImageInput): Promise<Image> {
  const args = parseInput(ImportImageInput, input, "input");
  const name = args.name ?? parseInput(ImageName, args.source, "input.source");
  const { storage } = ctx.drivers;
  return operation(
    ctx,
    "import image",
    { project: args.project, image: name },
    [imageLock(args.project, name)],
    async (saga) => {
      const project = await requireProject(ctx, args.project);
      if (await ctx.store.images.get(project.id, name)) {
        throw new BmiError("already_exists", `image ${name} already exists in project ${project.name}`, {
          subsystem: "store",
        });
      }
      if (!(await storage.exists(args.source))) {
        throw new BmiError("not_found", `RBD image ${args.source} not found`, { subsystem: "storage" });
      }
      let parent: { image: string; snapshot: string };
      let temporary = false;
      if (args.snapshot) {
        parent = { image: args.source, snapshot: args.snapshot };
        const snap = (await storage.listSnapshots(args.source)).find((s) => s.name === args.snapshot);
        if (!snap)
          throw new BmiError("not_found", `snapshot ${args.source}@${args.snapshot} not found`, {
            subsystem: "storage",
          });
        const mustProtect = args.protect === true || !storage.capabilities.cloneUnprotected;
        if (mustProtect && !snap.protected) {
          const ref = parent;
          await saga.step(
            "protect source snapshot",
            () => storage.protectSnapshot(ref),
            // The original leaves a --protect'ed snapshot protected; on failure we restore its state.
            () => storage.unprotectSnapshot(ref),
          );
        }
      } else {
        parent = { image: args.source, snapshot: tempSnapshotName(ctx, saga.operationId) };
        temporary = true;
        await protectedSnapshotSteps(ctx, saga, parent, {
          create: "snapshot source",
          protect: "protect source snapshot",
        });
      }
      const image = await insertImageStep(ctx, saga, {
        name,
        projectId: project.id,
        parentId: null,
        isPublic: args.isPublic ?? false,
        isSnapshot: false,
        cephName: (id) => cephNameOf(ctx.settings.uid, id),
      });
      await cloneStep(ctx, saga, parent, image.cephName);
      await makeGoldenSteps(ctx, saga, image);
      if (temporary) {
        await saga.cleanup("unprotect source snapshot", () => storage.unprotectSnapshot(parent));
        await saga.cleanup("remove source snapshot", () => storage.removeSnapshot(parent));
      }
      return image;
    },
  );
}

const ProjectOnly = z.strictObject({ project: ProjectName });

/** The project's golden images (no disks, no snapshots), as the original's list_images. */
export async function listImages(ctx: BmiContext, input: { project: string }): Promise<Image[]> {
  const { project } = parseInput(ProjectOnly, input, "input");
  return (await ctx.store.images.list((await requireProject(ctx, project)).id)).filter(
    (i) => i.kind === "golden",
  );
}

/** Every image row of every project (the original's admin `db ls`). */
export function listAllImages(ctx: BmiContext): Promise<Image[]> {
  return ctx.store.images.list();
}

const ImageRef = z.strictObject({ project: ProjectName, image: ImageName });

/** Removes a golden image or a snapshot image. Disks are removed with `deleteDisk`. */
export function removeImage(ctx: BmiContext, input: { project: string; image: string }): Promise<void> {
  const args = parseInput(ImageRef, input, "input");
  const { storage } = ctx.drivers;
  return operation(ctx, "remove image", { ...args }, [imageLock(args.project, args.image)], async (saga) => {
    const project = await requireProject(ctx, args.project);
    const image = await requireImage(ctx, project, args.image);
    requireKind(image, ["golden", "snapshot"], project, "remove image");
    const disks = (await ctx.store.images.listChildren(image.id)).filter((i) => i.kind === "disk");
    if (disks.length > 0) {
      throw new BmiError(
        "busy",
        `image ${image.name} has disks cloned from it (${disks.map((d) => d.name).join(", ")}); delete them first`,
        {
          subsystem: "store",
        },
      );
    }
    if (await ctx.store.exports.get(image.id)) {
      throw new BmiError("busy", `image ${image.name} is mounted as an iSCSI target; unmount it first`, {
        subsystem: "export",
      });
    }
    const source = await cloneSource(ctx, image);
    const snapshots = await storage.listSnapshots(image.cephName).catch((error) => {
      if (error instanceof BmiError && error.code === "not_found") return null;
      throw error;
    });
    const s = snapshots?.find((x) => x.name === source.snapshot);
    if (s?.protected) {
      await saga.step(
        "unprotect clone-source snapshot",
        () => storage.unprotectSnapshot(source),
        () => storage.protectSnapshot(source),
      );
    }
    if (s) {
      await saga.step(
        "remove clone-source snapshot",
        () => storage.removeSnapshot(source),
        async () => {
          await storage.createSnapshot(source);
          await storage.protectSnapshot(source);
        },
      );
    }
    // A snapshot image not yet flattened (snapshotDisk's "later") is a clone of its disk's
    // temporary snapshot; once the image is gone that snapshot has no use and would keep the
    // disk from being deleted.
    const parent =
      image.kind === "snapshot" && snapshots !== null ? (await storage.info(image.cephName)).parent : null;
    await deleteImageRowStep(ctx, saga, image);
    // The point of no return comes last, so every failure before it can be undone (COR-1/3).
    if (snapshots !== null) await removeImageLastStep(ctx, saga, "remove RBD image", image.cephName);
    if (parent?.snapshot.startsWith(`${ctx.settings.snapshotName}-tmp-`)) {
      const children = await storage.children(parent);
      if (children.length === 0) {
        // After the point of no return: a failure here is journalled and reconcile() removes it.
        await saga.cleanup("unprotect disk snapshot", () => storage.unprotectSnapshot(parent));
        await saga.cleanup("remove disk snapshot", () => storage.removeSnapshot(parent));
      }
    }
  });
}

const CopyInput = z.strictObject({
  project: ProjectName,
  image: ImageName,
  destProject: ProjectName,
  /** Defaults to the source name. */
  destName: ImageName.optional(),
});
export type CopyImageInput = z.input<typeof CopyInput>;

/** Copies a golden or snapshot image, within a project or to another, as an independent image. */
export function copyImage(ctx: BmiContext, input: CopyImageInput): Promise<Image> {
  const args = parseInput(CopyInput, input, "input");
  const destName = args.destName ?? args.image;
  // Only the new name is locked: copies of one source may run side by side (Ceph keeps a
  // snapshot with clones from being removed under them).
  const locks = [imageLock(args.destProject, destName)];
  return operation(ctx, "copy image", { ...args, destName }, locks, async (saga) => {
    const project = await requireProject(ctx, args.project);
    const dest = await requireProject(ctx, args.destProject);
    const source = await requireImage(ctx, project, args.image);
    requireKind(source, ["golden", "snapshot"], project, "copy image");
    if (await ctx.store.images.get(dest.id, destName)) {
      throw new BmiError("already_exists", `image ${destName} already exists in project ${dest.name}`, {
        subsystem: "store",
      });
    }
    const sameProject = dest.id === project.id;
    const copy = await insertImageStep(ctx, saga, {
      name: destName,
      projectId: dest.id,
      parentId: sameProject ? source.parentId : null,
      isPublic: source.isPublic,
      isSnapshot: sameProject ? source.isSnapshot : false,
      cephName: (id) => cephNameOf(ctx.settings.uid, id),
    });
    await cloneStep(ctx, saga, await cloneSource(ctx, source), copy.cephName);
    await makeGoldenSteps(ctx, saga, copy);
    return copy;
  });
}

/** Moves (and optionally renames) an image to another project. Database only: the RBD name stays. */
export function moveImage(ctx: BmiContext, input: CopyImageInput): Promise<Image> {
  const args = parseInput(CopyInput, input, "input");
  const destName = args.destName ?? args.image;
  const locks = [imageLock(args.project, args.image), imageLock(args.destProject, destName)];
  return operation(ctx, "move image", { ...args, destName }, locks, async (saga) => {
    const project = await requireProject(ctx, args.project);
    const dest = await requireProject(ctx, args.destProject);
    const image = await requireImage(ctx, project, args.image);
    if (dest.id === project.id && destName === image.name) return image;
    if (await ctx.store.images.get(dest.id, destName)) {
      throw new BmiError("already_exists", `image ${destName} already exists in project ${dest.name}`, {
        subsystem: "store",
      });
    }
    if (image.kind === "disk" && dest.id !== project.id) {
      throw new BmiError(
        "invalid_input",
        `${image.name} is a disk; only golden and snapshot images move between projects`,
      );
    }
    const before = {
      name: image.name,
      projectId: image.projectId,
      parentId: image.parentId,
      isSnapshot: image.isSnapshot,
    };
    const across = dest.id !== project.id;
    return saga.step(
      "update image row",
      () =>
        ctx.store.images.update(image.id, {
          name: destName,
          projectId: dest.id,
          ...(across ? { parentId: null, isSnapshot: false } : {}),
        }),
      () => ctx.store.images.update(image.id, before),
    );
  });
}

const ExportInput = z.strictObject({ project: ProjectName, image: ImageName, rbdName: RbdImageName });

/** Copies an image out of BMI's management to a free RBD name (flattened; no row). */
export function exportImage(
  ctx: BmiContext,
  input: { project: string; image: string; rbdName: string },
): Promise<void> {
  const args = parseInput(ExportInput, input, "input");
  const { storage } = ctx.drivers;
  return operation(ctx, "export image", { ...args }, [imageLock(args.project, args.image)], async (saga) => {
    const project = await requireProject(ctx, args.project);
    const image = await requireImage(ctx, project, args.image);
    requireKind(image, ["golden", "snapshot"], project, "export image");
    if (await storage.exists(args.rbdName)) {
      throw new BmiError("already_exists", `RBD image ${args.rbdName} already exists`, {
        subsystem: "storage",
      });
    }
    await cloneStep(ctx, saga, await cloneSource(ctx, image), args.rbdName);
    await saga.step("flatten", () => storage.flatten(args.rbdName));
  });
}
