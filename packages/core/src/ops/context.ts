import type { BmiSettings } from "../config/settings.js";
import { targetNameFor } from "../config/settings.js";
import type { Image, Project, Provisioning, TargetInfo } from "../domain/model.js";
import { BmiError, toBmiError } from "../errors/index.js";
import type { Logger } from "../log/index.js";
import type {
  BootDriver,
  BootSpec,
  ExportDriver,
  ExportRequest,
  IsolationDriver,
  PowerDriver,
  StorageDriver,
} from "../ports/index.js";
import type { ExportRecord, Store } from "../store/index.js";
import type { EventHub } from "./events.js";
import { withLocks } from "./locks.js";
import { outcomeUnknown, runSaga, type Saga, type StepHook } from "./saga.js";

export interface Drivers {
  storage: StorageDriver;
  export: ExportDriver;
  boot: BootDriver;
  isolation: IsolationDriver;
  /** Optional: nodes' power through their BMCs (HIL's OBM). Without it BMI never powers a node. */
  power?: PowerDriver;
}

/** Everything an operation needs; built once by `createBmi`. */
export interface BmiContext {
  drivers: Drivers;
  store: Store;
  settings: BmiSettings;
  logger: Logger;
  events: EventHub;
  beforeStep?: StepHook;
}

/** Runs `body` as a saga while holding `locks`. */
export function operation<T>(
  ctx: BmiContext,
  name: string,
  subject: Record<string, unknown>,
  locks: string[],
  body: (saga: Saga) => Promise<T>,
): Promise<T> {
  return withLocks(ctx.store, locks, ctx.settings.lockLeaseMs, () =>
    runSaga(
      { store: ctx.store, logger: ctx.logger, events: ctx.events, beforeStep: ctx.beforeStep },
      name,
      subject,
      body,
    ),
  );
}

export function requireProject(ctx: BmiContext, name: string): Project {
  const project = ctx.store.getProject(name);
  if (!project)
    throw new BmiError("not_found", `project ${name} not found`, {
      subsystem: "store",
      details: { project: name },
    });
  return project;
}

export function requireImage(ctx: BmiContext, project: Project, name: string, what = "image"): Image {
  const image = ctx.store.getImage(project.id, name);
  if (!image) {
    throw new BmiError("not_found", `${what} ${name} not found in project ${project.name}`, {
      subsystem: "store",
      details: { project: project.name, [what]: name },
    });
  }
  return image;
}

export function requireKind(image: Image, kinds: Image["kind"][], project: Project, operation: string): void {
  if (!kinds.includes(image.kind)) {
    throw new BmiError(
      "invalid_input",
      `${image.name} in project ${project.name} is a ${image.kind}; ${operation} needs a ${kinds.join(" or ")}`,
      { details: { image: image.name, kind: image.kind } },
    );
  }
}

export function targetInfoFor(ctx: BmiContext, image: Image): TargetInfo {
  const { iscsi } = ctx.settings;
  return {
    name: targetNameFor(image.cephName, iscsi.naming),
    portal: iscsi.portal,
    port: iscsi.port,
    lun: iscsi.lun,
  };
}

export function exportRequestFor(ctx: BmiContext, image: Image): ExportRequest {
  return {
    target: targetNameFor(image.cephName, ctx.settings.iscsi.naming),
    backing: ctx.drivers.storage.backingFor(image.cephName),
    access: ctx.settings.iscsi.access,
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
    () => ctx.store.putExport(record),
    () => ctx.store.deleteExport(image.id),
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
  const record = ctx.store.getExport(image.id);
  const request = exportRequestFor(ctx, image);
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
      () => ctx.store.deleteExport(image.id),
      () => ctx.store.putExport(record),
    );
  }
}

/** Inserts an image row in a step whose undo deletes it. */
export function insertImageStep(
  ctx: BmiContext,
  saga: Saga,
  row: Parameters<Store["insertImage"]>[0],
): Promise<Image> {
  return saga.step(
    "insert image row",
    () => ctx.store.insertImage(row),
    (image) => ctx.store.deleteImage(image.id),
    { resources: [`row:${row.projectId}/${row.name}`] },
  );
}

/**
 * Deletes an image row in a step whose undo puts it back with the same id (and re-attaches the
 * snapshot rows that the deletion detached), so the irreversible storage removal can come last.
 */
export function deleteImageRowStep(ctx: BmiContext, saga: Saga, image: Image): Promise<void> {
  const detached = ctx.store.listChildren(image.id).filter((i) => i.isSnapshot);
  return saga.step(
    "delete image row",
    () => ctx.store.deleteImage(image.id),
    () =>
      ctx.store.transaction(() => {
        ctx.store.insertImage({ ...image, cephName: image.cephName });
        for (const child of detached)
          ctx.store.updateImage(child.id, { parentId: image.id, isSnapshot: true });
      }),
    { resources: [`image:${image.cephName}`] },
  );
}

/**
 * `<image>@<S>` of an image, with the S it was created with (COR-10): changing `[bmi] snapshot`
 * later must not orphan older images.
 */
export const cloneSource = (ctx: BmiContext, image: Image) => ({
  image: image.cephName,
  snapshot: ctx.store.imageOrigin?.(image.id)?.snapshotName ?? ctx.settings.snapshotName,
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
  const { storage } = ctx.drivers;
  const source = cloneSource(ctx, image);
  await saga.step(
    "create clone-source snapshot",
    () => storage.createSnapshot(source),
    () => storage.removeSnapshot(source),
  );
  await saga.step(
    "protect clone-source snapshot",
    () => storage.protectSnapshot(source),
    () => storage.unprotectSnapshot(source),
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

/** The boot files a provisioning record stands for (to write them again or undo their removal). */
export const bootSpecOf = (record: Provisioning): BootSpec => ({
  node: record.node,
  macs: [record.mac],
  target: record.target,
  firmware: record.firmware,
  label: record.disk,
});

/** A short unique suffix for temporary snapshots, so a leftover never blocks a retry (COR-4). */
export const tempSnapshotName = (ctx: BmiContext, operationId: string) =>
  `${ctx.settings.snapshotName}-tmp-${operationId.slice(0, 8)}`;

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
