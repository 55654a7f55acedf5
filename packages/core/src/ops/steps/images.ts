import type { Image } from "../../domain/model.js";
import { toBmiError } from "../../errors/index.js";
import type { NewImage } from "../../store/index.js";
import type { BmiContext } from "../context.js";
import { outcomeUnknown, type Saga } from "../saga.js";

/** Inserts an image row in a step whose undo deletes it. */
export function insertImageStep(ctx: BmiContext, saga: Saga, row: NewImage): Promise<Image> {
  return saga.step(
    "insert image row",
    () => ctx.store.images.insert(row),
    (image) => ctx.store.images.delete(image.id),
    { resources: [`row:${row.projectId}/${row.name}`] },
  );
}

/**
 * Deletes an image row in a step whose undo puts it back with the same id (and re-attaches the
 * snapshot rows that the deletion detached), so the irreversible storage removal can come last.
 */
export async function deleteImageRowStep(ctx: BmiContext, saga: Saga, image: Image): Promise<void> {
  const detached = (await ctx.store.images.listChildren(image.id)).filter((i) => i.isSnapshot);
  return saga.step(
    "delete image row",
    () => ctx.store.images.delete(image.id),
    () =>
      ctx.store.transaction(async (tx) => {
        await tx.images.insert({ ...image, cephName: image.cephName });
        for (const child of detached)
          await tx.images.update(child.id, { parentId: image.id, isSnapshot: true });
      }),
    { resources: [`image:${image.cephName}`] },
  );
}

/**
 * The irreversible last step of a deletion: removes an RBD image. If the reply is lost after the
 * removal, the image is gone and the operation is done; undoing the earlier steps then would
 * bring back rows and targets for an image that no longer exists.
 */
export function removeImageLastStep(
  ctx: BmiContext,
  saga: Saga,
  name: string,
  cephName: string,
): Promise<void> {
  const { storage } = ctx.drivers;
  return saga.step(
    name,
    async () => {
      try {
        await storage.remove(cephName);
      } catch (error) {
        if (toBmiError(error).code === "not_found") return;
        if (outcomeUnknown(toBmiError(error)) && !(await storage.exists(cephName).catch(() => true))) return;
        throw error;
      }
    },
    undefined,
    { resources: [`image:${cephName}`] },
  );
}
