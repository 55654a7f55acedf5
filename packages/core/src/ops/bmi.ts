import type { BmiSettings } from "../config/settings.js";
import { defaultSettings } from "../config/settings.js";
import type { Disk, Image, Project, Provisioning, TargetInfo } from "../domain/model.js";
import { BmiError } from "../errors/index.js";
import { type Logger, silentLogger } from "../log/index.js";
import type { Store } from "../store/index.js";
import type { BmiContext, Drivers } from "./context.js";
import * as disks from "./disks.js";
import { type BmiEventListener, createEventHub } from "./events.js";
import * as images from "./images.js";
import { fenceStore } from "./locks.js";
import * as mounts from "./mounts.js";
import * as nodes from "./nodes.js";
import * as projects from "./projects.js";
import * as reconcileOps from "./reconcile.js";
import type { StepHook } from "./saga.js";
import * as snapshots from "./snapshots.js";

export interface CreateBmiOptions extends Drivers {
  store: Store;
  /** Defaults to `defaultSettings()`; usually `settingsFromConfig(loadConfig().config)`. */
  settings?: BmiSettings;
  logger?: Logger;
  /** Test hook run before every saga step; throw from it to inject a failure at that step. */
  beforeStep?: StepHook;
}

/**
 * The operations facade: every BMI operation over four drivers and a store. Each method validates
 * its input first, takes its locks, and runs as a saga (all or nothing).
 */
export interface Bmi {
  readonly settings: BmiSettings;
  /** Subscribe to progress events; returns the unsubscribe function. */
  on(listener: BmiEventListener): () => void;

  createProject(input: projects.CreateProjectInput): Promise<Project>;
  listProjects(): Project[];
  deleteProject(input: { name: string }): Promise<void>;

  importImage(input: images.ImportImageInput): Promise<Image>;
  listImages(input: { project: string }): Image[];
  listAllImages(): Image[];
  removeImage(input: { project: string; image: string }): Promise<void>;
  copyImage(input: images.CopyImageInput): Promise<Image>;
  moveImage(input: images.CopyImageInput): Promise<Image>;
  exportImage(input: { project: string; image: string; rbdName: string }): Promise<void>;

  createDisk(input: disks.CreateDiskInput): Promise<Disk>;
  deleteDisk(input: disks.DeleteDiskInput): Promise<void>;
  listDisks(input: { project: string }): Disk[];

  provision(input: nodes.ProvisionInput): Promise<Provisioning>;
  provisionMany(
    inputs: nodes.ProvisionInput[],
    options?: { concurrency?: number },
  ): Promise<nodes.BatchResult<Provisioning>[]>;
  deprovision(input: nodes.DeprovisionInput): Promise<void>;
  listProvisionings(input?: { project?: string }): Provisioning[];

  snapshotDisk(input: snapshots.SnapshotDiskInput): Promise<Image>;
  listSnapshots(input: { project: string }): { image: Image; parent: string | null }[];
  /** Flattens the snapshot images `snapshotDisk` left sharing data with their disks; returns how many. */
  flattenPending(): Promise<number>;

  mountImage(input: { project: string; image: string }): Promise<TargetInfo>;
  unmountImage(input: { project: string; image: string; force?: boolean }): Promise<void>;
  listMounts(input: { project: string }): { image: string; target: TargetInfo }[];
  restoreTargets(): Promise<string[]>;

  reconcile(options?: reconcileOps.ReconcileOptions): Promise<reconcileOps.ReconcileReport>;
}

/** Builds the facade from driver objects (no container needed). Checks capabilities once, here. */
export function createBmi(options: CreateBmiOptions): Bmi {
  const settings = options.settings ?? defaultSettings();
  checkCapabilities(options, settings);
  const events = createEventHub();
  const ctx: BmiContext = {
    drivers: {
      storage: options.storage,
      export: options.export,
      boot: options.boot,
      isolation: options.isolation,
    },
    // Data writes inside an operation are fenced by its locks (a lost lease refuses them).
    store: fenceStore(options.store),
    settings,
    logger: (options.logger ?? silentLogger).child({ component: "bmi" }),
    events,
    beforeStep: options.beforeStep,
  };
  // `async` wrappers: bad input rejects the returned promise instead of throwing synchronously,
  // so `.catch()` and `Promise.allSettled(inputs.map(...))` see every failure.
  return {
    settings,
    on: (listener) => events.on(listener),
    createProject: async (input) => projects.createProject(ctx, input),
    listProjects: () => projects.listProjects(ctx),
    deleteProject: async (input) => projects.deleteProject(ctx, input),
    importImage: async (input) => images.importImage(ctx, input),
    listImages: (input) => images.listImages(ctx, input),
    listAllImages: () => images.listAllImages(ctx),
    removeImage: async (input) => images.removeImage(ctx, input),
    copyImage: async (input) => images.copyImage(ctx, input),
    moveImage: async (input) => images.moveImage(ctx, input),
    exportImage: async (input) => images.exportImage(ctx, input),
    createDisk: async (input) => disks.createDisk(ctx, input),
    deleteDisk: async (input) => disks.deleteDisk(ctx, input),
    listDisks: (input) => disks.listDisks(ctx, input),
    provision: async (input) => nodes.provision(ctx, input),
    provisionMany: async (inputs, opts) => nodes.provisionMany(ctx, inputs, opts),
    deprovision: async (input) => nodes.deprovision(ctx, input),
    listProvisionings: (input) => nodes.listProvisionings(ctx, input),
    snapshotDisk: async (input) => snapshots.snapshotDisk(ctx, input),
    listSnapshots: (input) => snapshots.listSnapshots(ctx, input),
    flattenPending: async () => snapshots.flattenPending(ctx),
    mountImage: async (input) => mounts.mountImage(ctx, input),
    unmountImage: async (input) => mounts.unmountImage(ctx, input),
    listMounts: (input) => mounts.listMounts(ctx, input),
    restoreTargets: async () => mounts.restoreTargets(ctx),
    reconcile: async (opts) => reconcileOps.reconcile(ctx, opts),
  };
}

/** Wiring-time checks, so a mismatch fails at start-up rather than at the first provision. */
function checkCapabilities(drivers: Drivers, settings: BmiSettings): void {
  const probe = drivers.storage.backingFor(`${settings.uid}img1`);
  if (!drivers.export.capabilities.backings.includes(probe.kind)) {
    throw new BmiError(
      "unsupported",
      `export driver ${drivers.export.name} cannot serve ${probe.kind} backings from storage driver ${drivers.storage.name}`,
      { subsystem: "config" },
    );
  }
  const { access } = settings.iscsi;
  if (access.chap && !drivers.export.capabilities.chap) {
    throw new BmiError("unsupported", `export driver ${drivers.export.name} does not support CHAP`, {
      subsystem: "config",
    });
  }
  if (access.initiators !== "ALL" && !drivers.export.capabilities.acl) {
    throw new BmiError(
      "unsupported",
      `export driver ${drivers.export.name} does not support initiator ACLs`,
      { subsystem: "config" },
    );
  }
  if (!drivers.boot.capabilities.firmware.includes(settings.defaultFirmware)) {
    throw new BmiError(
      "unsupported",
      `boot driver ${drivers.boot.name} cannot boot ${settings.defaultFirmware} nodes`,
      {
        subsystem: "config",
      },
    );
  }
  if (settings.provisioningNetwork && !drivers.isolation.capabilities.networks) {
    throw new BmiError("unsupported", `isolation driver ${drivers.isolation.name} cannot attach networks`, {
      subsystem: "config",
    });
  }
}
