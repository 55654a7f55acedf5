import { z } from "zod";
import type { TargetInfo } from "../domain/model.js";
import { ImageName, ProjectName } from "../domain/names.js";
import { parseInput } from "../domain/validate.js";
import { BmiError } from "../errors/index.js";
import { type BmiContext, operation, requireImage, requireProject } from "./context.js";
import { imageLock } from "./locks.js";
import { exportRequestFor, exportSteps, unexportSteps } from "./steps/index.js";

const MountInput = z.strictObject({ project: ProjectName, image: ImageName });

/** Exports a golden or snapshot image as an iSCSI target (e.g. to inspect or fix it from a host). */
export function mountImage(ctx: BmiContext, input: { project: string; image: string }): Promise<TargetInfo> {
  const args = parseInput(MountInput, input, "input");
  return operation(ctx, "mount image", { ...args }, [imageLock(args.project, args.image)], async (saga) => {
    const project = await requireProject(ctx, args.project);
    const image = await requireImage(ctx, project, args.image);
    const existing = await ctx.store.exports.get(image.id);
    if (existing) return existing.target;
    return exportSteps(ctx, saga, image);
  });
}

export function unmountImage(
  ctx: BmiContext,
  input: { project: string; image: string; force?: boolean },
): Promise<void> {
  const args = parseInput(MountInput.extend({ force: z.boolean().optional() }), input, "input");
  return operation(
    ctx,
    "unmount image",
    { project: args.project, image: args.image },
    [imageLock(args.project, args.image)],
    async (saga) => {
      const project = await requireProject(ctx, args.project);
      const image = await requireImage(ctx, project, args.image);
      if (image.kind === "disk") {
        throw new BmiError("invalid_input", `${image.name} is a disk; its target goes with deleteDisk`);
      }
      if (!(await ctx.store.exports.get(image.id)))
        throw new BmiError("not_found", `image ${image.name} is not mounted`, { subsystem: "export" });
      await unexportSteps(ctx, saga, image, args.force ?? false);
    },
  );
}

/** The project's mounted images and disks with their targets (the original's show_mounted). */
export async function listMounts(
  ctx: BmiContext,
  input: { project: string },
): Promise<{ image: string; target: TargetInfo }[]> {
  const { project } = parseInput(z.strictObject({ project: ProjectName }), input, "input");
  const p = await requireProject(ctx, project);
  const records = await ctx.store.exports.list();
  const withImages = await Promise.all(
    records.map(async (record) => ({ record, image: await ctx.store.images.getById(record.imageId) })),
  );
  return withImages
    .filter(({ image }) => image?.projectId === p.id)
    .map(({ record, image }) => ({ image: image?.name ?? "", target: record.target }));
}

/** Re-creates every target the store knows after the target daemon restarted. Returns the re-created names. */
export async function restoreTargets(ctx: BmiContext): Promise<string[]> {
  const requests = [];
  for (const record of await ctx.store.exports.list()) {
    const image = await ctx.store.images.getById(record.imageId);
    if (image) requests.push(exportRequestFor(ctx, image));
  }
  const restored = await ctx.drivers.export.restore(requests);
  ctx.logger.info({ restored: restored.length, known: requests.length }, "targets restored");
  return restored;
}
