import type { Image } from "../../domain/model.js";
import type { BmiContext } from "../context.js";
import type { Saga } from "../saga.js";

/**
 * `<image>@<S>` of an image, with the S it was created with (COR-10): changing `[bmi] snapshot`
 * later must not orphan older images.
 */
export const cloneSource = async (ctx: BmiContext, image: Image) => ({
  image: image.cephName,
  snapshot: (await ctx.store.images.origin(image.id))?.snapshotName ?? ctx.settings.snapshotName,
});

/**
 * Steps that turn a fresh clone into an independent golden image: flatten, then create and
 * protect S on it. Undo of the clone itself is the caller's.
 */
export async function makeGoldenSteps(ctx: BmiContext, saga: Saga, image: Image): Promise<void> {
  await saga.step("flatten", () => ctx.drivers.storage.flatten(image.cephName));
  await cloneSourceSteps(ctx, saga, image);
}

/** Creates and protects S on an image (clones are made from it); both undone on failure. */
export async function cloneSourceSteps(ctx: BmiContext, saga: Saga, image: Image): Promise<void> {
  await protectedSnapshotSteps(ctx, saga, await cloneSource(ctx, image), {
    create: "create clone-source snapshot",
    protect: "protect clone-source snapshot",
  });
}

/**
 * Creates a snapshot and protects it (clones are made only from protected snapshots), as two
 * named steps, each undone on failure. The names are the journal's and the fault scenarios'.
 */
export async function protectedSnapshotSteps(
  ctx: BmiContext,
  saga: Saga,
  ref: { image: string; snapshot: string },
  steps: { create: string; protect: string },
): Promise<void> {
  const { storage } = ctx.drivers;
  await saga.step(
    steps.create,
    () => storage.createSnapshot(ref),
    () => storage.removeSnapshot(ref),
  );
  await saga.step(
    steps.protect,
    () => storage.protectSnapshot(ref),
    () => storage.unprotectSnapshot(ref),
  );
}

/** Clone step with an undo that removes the clone. */
export function cloneStep(
  ctx: BmiContext,
  saga: Saga,
  parent: { image: string; snapshot: string },
  child: string,
  name = "clone",
): Promise<void> {
  const { storage } = ctx.drivers;
  return saga.step(
    name,
    () => storage.clone(parent, child),
    () => storage.remove(child),
    { resources: [`image:${child}`] },
  );
}

/** A short unique suffix for temporary snapshots, so a leftover never blocks a retry (COR-4). */
export const tempSnapshotName = (ctx: BmiContext, operationId: string) =>
  `${ctx.settings.snapshotName}-tmp-${operationId.slice(0, 8)}`;
