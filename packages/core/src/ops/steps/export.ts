import { targetNameFor } from "../../config/settings.js";
import type { Image, TargetInfo } from "../../domain/model.js";
import { toBmiError } from "../../errors/index.js";
import type { ExportRequest } from "../../ports/index.js";
import type { ExportRecord } from "../../store/index.js";
import type { BmiContext } from "../context.js";
import type { Saga } from "../saga.js";

export function targetInfoFor(ctx: BmiContext, image: Image): TargetInfo {
  const { iscsi } = ctx.settings;
  return {
    name: targetNameFor(image.cephName, iscsi.naming),
    portal: iscsi.portal,
    port: iscsi.port,
    lun: iscsi.lun,
  };
}

/**
 * The request that exports an image. `record`: its export record, whose initiators win over the
 * configured ones (a provisioned node's target admits that node only, under per-node access).
 */
export function exportRequestFor(ctx: BmiContext, image: Image, record?: ExportRecord): ExportRequest {
  const { access } = ctx.settings.iscsi;
  return {
    target: targetNameFor(image.cephName, ctx.settings.iscsi.naming),
    backing: ctx.drivers.storage.backingFor(image.cephName),
    access: record ? { ...access, initiators: record.access.initiators } : access,
  };
}

/** The saga steps that export an image and record it; both undone on failure. */
export async function exportSteps(ctx: BmiContext, saga: Saga, image: Image): Promise<TargetInfo> {
  const request = exportRequestFor(ctx, image);
  if (request.access.initiators === "ALL") {
    ctx.logger.warn(
      { target: request.target },
      "target open to ALL initiators (set [iscsi] initiators to restrict)",
    );
  }
  const exported = await saga.step(
    "export target",
    () => ctx.drivers.export.export(request),
    () => ctx.drivers.export.unexport(request.target, { force: true }),
    { resources: [`target:${request.target}`] },
  );
  // Where the daemon says the target is (one truth), not a second guess from the settings.
  const target: TargetInfo = {
    name: exported.target,
    portal: exported.portal,
    port: exported.port,
    lun: exported.lun,
  };
  const { chap, ...access } = request.access;
  const record: ExportRecord = {
    imageId: image.id,
    target,
    access: chap ? { ...access, chapUser: chap.user } : access,
  };
  await saga.step(
    "record export",
    () => ctx.store.exports.put(record),
    () => ctx.store.exports.delete(image.id),
  );
  return target;
}

/**
 * The saga steps that remove an image's export. A target already gone from the server is fine
 * (COR-3: a disk whose target vanished can still be deleted).
 */
export async function unexportSteps(
  ctx: BmiContext,
  saga: Saga,
  image: Image,
  force: boolean,
): Promise<void> {
  const record = await ctx.store.exports.get(image.id);
  const request = exportRequestFor(ctx, image, record);
  // Unexport straight away rather than listing every target first (O(targets) per delete).
  // The undo re-exports unless the target was already gone: also when the unexport's reply was
  // lost (it may have happened), since export() of an existing identical target changes nothing.
  let wasAbsent = false;
  await saga.step(
    "unexport target",
    async () => {
      try {
        await ctx.drivers.export.unexport(request.target, { force });
      } catch (error) {
        if (toBmiError(error).code !== "not_found") throw error;
        wasAbsent = true;
      }
    },
    async () => {
      if (!wasAbsent) await ctx.drivers.export.export(request);
    },
    { resources: [`target:${request.target}`] },
  );
  if (record) {
    await saga.step(
      "forget export",
      () => ctx.store.exports.delete(image.id),
      () => ctx.store.exports.put(record),
    );
  }
}
