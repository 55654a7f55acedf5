import type { BmiSettings } from "../config/settings.js";
import { defaultSettings } from "../config/settings.js";
import type { Disk, Image, Project, Provisioning, TargetInfo } from "../domain/model.js";
import { BmiError } from "../errors/index.js";
import { type Logger, silentLogger } from "../log/index.js";
import type { PowerState } from "../ports/index.js";
import type { Store } from "../store/index.js";
import * as bootWait from "./boot-wait.js";
import { bindCallContext, type OperationOptions, withCallContext } from "./call-context.js";
import { closerFor } from "./close.js";
import type { BmiContext, Drivers } from "./context.js";
import * as disks from "./disks.js";
import { type BmiEventListener, createEventHub } from "./events.js";
import * as images from "./images.js";
import { fenceStore } from "./locks.js";
import * as mounts from "./mounts.js";
import * as nodes from "./nodes.js";
import * as power from "./power.js";
import * as projects from "./projects.js";
import * as provisionBoot from "./provision-boot.js";
import * as reconcileOps from "./reconcile.js";
import type { StepHook } from "./saga.js";
import * as snapshots from "./snapshots.js";
import * as upload from "./upload.js";

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
export interface Bmi extends AsyncDisposable {
  readonly settings: BmiSettings;
  /**
   * Closes the store and the drivers that hold connections (e.g. the librbd back end's cluster
   * connection); `await using bmi = createBmi(...)` does it too. The facade owns what it was built
   * on: call it once no operation runs (the CLI and `bmi serve` drain first). Idempotent.
   */
  close(): Promise<void>;
  /** Subscribe to progress events; returns the unsubscribe function. */
  on(listener: BmiEventListener): () => void;

  createProject(input: projects.CreateProjectInput, options?: OperationOptions): Promise<Project>;
  listProjects(): Promise<Project[]>;
  deleteProject(input: { name: string }, options?: OperationOptions): Promise<void>;

  importImage(input: images.ImportImageInput, options?: OperationOptions): Promise<Image>;
  /**
   * Uploads a raw or qcow2 disk image file of this host as a new golden image in one step
   * (checksummed, checked against `sha256` if given; qcow2 converted by qemu-img; undone on failure).
   * @throws invalid_input (bad input, checksum mismatch, unreadable qcow2), not_found (project, file),
   * already_exists, unsupported (no file import in the storage driver), timeout, unavailable, cancelled
   * @example await bmi.uploadImage({ project: "p", file: "/srv/images/debian.qcow2", name: "debian" })
   */
  uploadImage(input: upload.UploadImageInput, options?: OperationOptions): Promise<upload.UploadedImage>;
  listImages(input: { project: string }): Promise<Image[]>;
  listAllImages(): Promise<Image[]>;
  removeImage(input: { project: string; image: string }, options?: OperationOptions): Promise<void>;
  copyImage(input: images.CopyImageInput, options?: OperationOptions): Promise<Image>;
  moveImage(input: images.CopyImageInput, options?: OperationOptions): Promise<Image>;
  exportImage(
    input: { project: string; image: string; rbdName: string },
    options?: OperationOptions,
  ): Promise<void>;

  createDisk(input: disks.CreateDiskInput, options?: OperationOptions): Promise<Disk>;
  deleteDisk(input: disks.DeleteDiskInput, options?: OperationOptions): Promise<void>;
  listDisks(input: { project: string }): Promise<Disk[]>;

  /**
   * Makes a node boot from a disk; with `power` (and `wait`) also powers it through its BMC and
   * waits until it has booted (the result's `boot` lists the stages seen).
   */
  provision(
    input: provisionBoot.ProvisionBootInput,
    options?: OperationOptions,
  ): Promise<provisionBoot.ProvisionResult>;
  provisionMany(
    inputs: provisionBoot.ProvisionBootInput[],
    options?: { concurrency?: number } & OperationOptions,
  ): Promise<nodes.BatchResult<provisionBoot.ProvisionResult>[]>;
  deprovision(input: provisionBoot.DeprovisionPowerInput, options?: OperationOptions): Promise<void>;
  listProvisionings(input?: { project?: string }): Promise<Provisioning[]>;

  snapshotDisk(input: snapshots.SnapshotDiskInput, options?: OperationOptions): Promise<Image>;
  listSnapshots(input: { project: string }): Promise<{ image: Image; parent: string | null }[]>;
  /** Flattens the snapshot images `snapshotDisk` left sharing data with their disks; returns how many. */
  flattenPending(options?: OperationOptions): Promise<number>;

  mountImage(input: { project: string; image: string }, options?: OperationOptions): Promise<TargetInfo>;
  unmountImage(
    input: { project: string; image: string; force?: boolean },
    options?: OperationOptions,
  ): Promise<void>;
  listMounts(input: { project: string }): Promise<{ image: string; target: TargetInfo }[]>;
  restoreTargets(options?: OperationOptions): Promise<string[]>;

  /** Powers a node the project owns through its BMC (needs a power driver); resolves with its state. */
  power(input: power.PowerInput, options?: OperationOptions): Promise<PowerState>;
  powerStatus(input: { project: string; node: string }, options?: OperationOptions): Promise<PowerState>;
  /**
   * Waits until a provisioned node has booted from its disk (stages: powered on, firmware login,
   * OS login), with no agent on the node. Resolves with SUCCESS, FAILURE, TIMEOUT or ABORTED.
   */
  waitForBoot(
    input: bootWait.WaitForBootInput,
    options?: bootWait.WaitForBootOptions,
  ): Promise<bootWait.BootWaitResult>;

  reconcile(
    options?: reconcileOps.ReconcileOptions,
    call?: OperationOptions,
  ): Promise<reconcileOps.ReconcileReport>;
}

/** Builds the facade from driver objects (no container needed). Checks capabilities once, here. */
export function createBmi(options: CreateBmiOptions): Bmi {
  const settings = options.settings ?? defaultSettings();
  checkCapabilities(options, settings);
  const events = createEventHub();
  const ctx: BmiContext = {
    // Every driver call carries the running operation's signal (see call-context.ts).
    drivers: bindCallContext({
      storage: options.storage,
      export: options.export,
      boot: options.boot,
      isolation: options.isolation,
      ...(options.power ? { power: options.power } : {}),
    }),
    // Data writes inside an operation are fenced by its locks (a lost lease refuses them).
    store: fenceStore(options.store),
    settings,
    logger: (options.logger ?? silentLogger).child({ component: "bmi" }),
    events,
    beforeStep: options.beforeStep,
  };
  // `async`: bad input rejects the returned promise instead of throwing synchronously, so
  // `.catch()` and `Promise.allSettled(inputs.map(...))` see every failure; the caller's signal
  // reaches every step and driver call of the operation.
  const call =
    <I, R>(op: (ctx: BmiContext, input: I) => Promise<R>) =>
    async (input: I, options?: OperationOptions): Promise<R> =>
      withCallContext(options, () => op(ctx, input));
  const close = closerFor(
    [options.storage, options.export, options.boot, options.isolation, options.power],
    options.store,
  );
  return {
    settings,
    close,
    [Symbol.asyncDispose]: close,
    on: (listener) => events.on(listener),
    createProject: call(projects.createProject),
    listProjects: async () => projects.listProjects(ctx),
    deleteProject: call(projects.deleteProject),
    importImage: call(images.importImage),
    uploadImage: call(upload.uploadImage),
    listImages: async (input) => images.listImages(ctx, input),
    listAllImages: async () => images.listAllImages(ctx),
    removeImage: call(images.removeImage),
    copyImage: call(images.copyImage),
    moveImage: call(images.moveImage),
    exportImage: call(images.exportImage),
    createDisk: call(disks.createDisk),
    deleteDisk: call(disks.deleteDisk),
    listDisks: async (input) => disks.listDisks(ctx, input),
    provision: async (input, options) =>
      withCallContext(options, () => provisionBoot.provisionAndBoot(ctx, input, options)),
    provisionMany: async (inputs, opts) =>
      withCallContext(opts, () => provisionBoot.provisionManyAndBoot(ctx, inputs, opts)),
    deprovision: call(provisionBoot.deprovisionAndPowerOff),
    listProvisionings: async (input) => nodes.listProvisionings(ctx, input),
    snapshotDisk: call(snapshots.snapshotDisk),
    listSnapshots: async (input) => snapshots.listSnapshots(ctx, input),
    flattenPending: (options) => call(snapshots.flattenPending)(undefined, options),
    mountImage: call(mounts.mountImage),
    unmountImage: call(mounts.unmountImage),
    listMounts: async (input) => mounts.listMounts(ctx, input),
    restoreTargets: (options) => call(mounts.restoreTargets)(undefined, options),
    power: call(power.powerNode),
    powerStatus: call(power.powerStatus),
    waitForBoot: async (input, options) =>
      withCallContext(options, () => bootWait.waitForBoot(ctx, input, options)),
    reconcile: async (opts, call) => withCallContext(call, () => reconcileOps.reconcile(ctx, opts)),
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
