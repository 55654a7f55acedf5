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
 *
 * Failures are {@link BmiError}s, always through the returned promise (never a synchronous
 * throw); each method's `@throws` lines list the codes it can end with and why. A multi-step
 * operation that rejects has undone its steps first. Besides those, any operation can end in
 * `busy` (subsystem `store`) when another process kept the database locked for more than 5 s,
 * and in `internal` on a failure BMI did not expect (a bug, or a daemon's unknown answer).
 */
export interface Bmi extends AsyncDisposable {
  /**
   * The settings the facade was built with (`[bmi] uid`, `[iscsi]`, the provisioning network...).
   * @example
   * ```ts
   * console.log(bmi.settings.uid, bmi.settings.provisioningNetwork);
   * ```
   */
  readonly settings: BmiSettings;
  /**
   * Closes the store and the drivers that hold connections (e.g. the librbd back end's cluster
   * connection); `await using bmi = createBmi(...)` does it too. The facade owns what it was built
   * on: call it once no operation runs (the CLI and `bmi serve` drain first). Idempotent.
   * @returns Resolves once every driver and the store are closed; a second call resolves with the
   * first one's outcome.
   * @throws the first error a driver's or the store's own `close()` raised, as it was raised, after
   * every other resource was closed (the bundled drivers and the SQLite store do not fail to close).
   * @example
   * ```ts
   * const bmi = createBmi({ storage, export: exporter, boot, isolation, store });
   * try {
   *   await bmi.listProjects();
   * } finally {
   *   await bmi.close();
   * }
   * ```
   */
  close(): Promise<void>;
  /**
   * Subscribes to progress events (operations and their steps started, finished, failed, undone;
   * boot stages seen by `waitForBoot`). A listener that throws is ignored, never the operation's
   * failure.
   * @param listener Called synchronously with each event.
   * @returns The function that unsubscribes.
   * @example
   * ```ts
   * const off = bmi.on((event) => {
   *   if (event.type === "step:finished") console.log(event.operation, event.step, event.durationMs);
   * });
   * await bmi.provision({ project: "tenant-a", node: "node-01", disk: "node-01-disk", image: "debian12" });
   * off();
   * ```
   */
  on(listener: BmiEventListener): () => void;

  /**
   * Creates a project: the tenant that owns images, disks and (in HIL) nodes.
   * @param input `name`; `id` only to restore an old deployment's ids (the original's `--id`).
   * @returns The new project.
   * @throws `invalid_input` the name is not a valid project name, or `id` is not a positive integer
   * @throws `already_exists` a project with this name or id exists
   * @throws `conflict` another operation is creating or deleting this project
   * @throws `cancelled` the signal fired before the row was written
   * @example
   * ```ts
   * const project = await bmi.createProject({ name: "tenant-a" });
   * ```
   */
  createProject(input: projects.CreateProjectInput, options?: OperationOptions): Promise<Project>;
  /**
   * Every project, the admin project included.
   * @returns The projects, by id.
   * @throws `unavailable` the database file cannot be read (I/O error)
   * @example
   * ```ts
   * const names = (await bmi.listProjects()).map((p) => p.name);
   * ```
   */
  listProjects(): Promise<Project[]>;
  /**
   * Deletes an empty project. Unlike the original, a project that still has images, disks or
   * provisioned nodes is refused rather than cascaded (which left RBD images and targets behind).
   * @throws `invalid_input` the name is not a valid project name
   * @throws `not_found` no such project
   * @throws `busy` the project still has images or provisioned nodes (`details.images`, `details.nodes`)
   * @throws `conflict` another operation is changing this project
   * @throws `cancelled` the signal fired before the row was deleted
   * @example
   * ```ts
   * await bmi.deleteProject({ name: "tenant-a" });
   * ```
   */
  deleteProject(input: { name: string }, options?: OperationOptions): Promise<void>;

  /**
   * Adopts an RBD image of the pool (or one of its snapshots) as a golden image: a flattened copy
   * named `<uid>img<id>` with its protected clone-source snapshot. The source stays unchanged.
   * @param input `source` the RBD image; `name` the BMI name (default: the source's);
   * `snapshot` to import an existing snapshot; `protect` to protect that snapshot.
   * @returns The new golden image.
   * @throws `invalid_input` a name is not valid (without `name`, the source's name must be a valid image name)
   * @throws `not_found` the project, the RBD image `source`, its `snapshot` or the pool does not exist
   * @throws `already_exists` the project has an image of that name
   * @throws `conflict` another operation is changing an image of that name
   * @throws `permission_denied` Ceph refused BMI's client key, or no keyring was found
   * @throws `timeout` the Ceph cluster did not answer in time
   * @throws `unavailable` the Ceph cluster cannot be reached
   * @throws `cancelled` the signal fired; what was made is undone
   * @example
   * ```ts
   * const golden = await bmi.importImage({ project: "tenant-a", source: "debian12", name: "debian12-golden" });
   * ```
   */
  importImage(input: images.ImportImageInput, options?: OperationOptions): Promise<Image>;
  /**
   * Uploads a raw or qcow2 disk image file of this host as a new golden image in one step
   * (checksummed, checked against `sha256` if given; qcow2 converted by qemu-img; undone on failure).
   * @param input `file` an absolute path; `format` (default: read from the file); `sha256` to check.
   * @returns The golden image, with the file's `format` and `sha256`.
   * @throws `invalid_input` bad input, not a regular file, a checksum mismatch, or a qcow2 file qemu-img cannot convert
   * @throws `not_found` the project or the file does not exist
   * @throws `already_exists` the project has an image of that name
   * @throws `unsupported` the storage driver cannot import files
   * @throws `conflict` another operation is changing an image of that name
   * @throws `permission_denied` Ceph refused BMI's client key
   * @throws `timeout` Ceph or qemu-img did not finish in time
   * @throws `unavailable` the Ceph cluster cannot be reached, or qemu-img cannot be run
   * @throws `cancelled` the signal fired; what was made is undone
   * @example
   * ```ts
   * await bmi.uploadImage({ project: "p", file: "/srv/images/debian.qcow2", name: "debian" });
   * ```
   */
  uploadImage(input: upload.UploadImageInput, options?: OperationOptions): Promise<upload.UploadedImage>;
  /**
   * The project's golden images (no disks, no snapshot images), as the original's `list_images`.
   * @returns The images.
   * @throws `invalid_input` the project name is not valid
   * @throws `not_found` no such project
   * @example
   * ```ts
   * const images = await bmi.listImages({ project: "tenant-a" });
   * ```
   */
  listImages(input: { project: string }): Promise<Image[]>;
  /**
   * Every image row of every project: golden images, snapshot images and disks (the original's
   * admin `db ls`).
   * @returns The images.
   * @throws `unavailable` the database file cannot be read (I/O error)
   * @example
   * ```ts
   * const disks = (await bmi.listAllImages()).filter((image) => image.kind === "disk");
   * ```
   */
  listAllImages(): Promise<Image[]>;
  /**
   * Removes a golden image or a snapshot image, its RBD image and its clone-source snapshot.
   * Disks are removed with `deleteDisk`.
   * @throws `invalid_input` a name is not valid, or the image is a disk
   * @throws `not_found` no such project or image
   * @throws `busy` disks are cloned from the image, it is mounted, or Ceph says it is in use (watchers, clones)
   * @throws `conflict` another operation is changing this image
   * @throws `permission_denied` Ceph refused BMI's client key
   * @throws `timeout` the Ceph cluster did not answer in time
   * @throws `unavailable` the Ceph cluster cannot be reached
   * @throws `cancelled` the signal fired before the RBD image was removed; what was done is undone
   * @example
   * ```ts
   * await bmi.removeImage({ project: "tenant-a", image: "debian12-old" });
   * ```
   */
  removeImage(input: { project: string; image: string }, options?: OperationOptions): Promise<void>;
  /**
   * Copies a golden or snapshot image, within its project or to another, as an independent image
   * (a flattened clone with its own clone-source snapshot).
   * @param input `destProject`, and `destName` (default: the source's name).
   * @returns The copy.
   * @throws `invalid_input` a name is not valid, or the source is a disk
   * @throws `not_found` either project, or the source image, does not exist
   * @throws `already_exists` the destination project has an image named `destName`
   * @throws `conflict` another operation is changing an image named `destName` there
   * @throws `permission_denied` Ceph refused BMI's client key
   * @throws `timeout` the Ceph cluster did not answer in time
   * @throws `unavailable` the Ceph cluster cannot be reached
   * @throws `cancelled` the signal fired; what was made is undone
   * @example
   * ```ts
   * await bmi.copyImage({ project: "tenant-a", image: "debian12-golden", destProject: "tenant-b" });
   * ```
   */
  copyImage(input: images.CopyImageInput, options?: OperationOptions): Promise<Image>;
  /**
   * Moves (and optionally renames) an image to another project, or renames it in its own. The
   * database changes, the RBD image keeps its name. Moving to where it is returns it unchanged.
   * @returns The image as it is now.
   * @throws `invalid_input` a name is not valid, or a disk would leave its project
   * @throws `not_found` either project, or the image, does not exist
   * @throws `already_exists` the destination project has an image named `destName`
   * @throws `conflict` another operation is changing the image or an image named `destName` there
   * @throws `cancelled` the signal fired before the row changed
   * @example
   * ```ts
   * await bmi.moveImage({ project: "tenant-a", image: "debian12-golden", destProject: "tenant-b", destName: "debian12" });
   * ```
   */
  moveImage(input: images.CopyImageInput, options?: OperationOptions): Promise<Image>;
  /**
   * Copies an image out of BMI's management to a free RBD name of the pool (flattened; no row).
   * @param input `rbdName` the new RBD image's name.
   * @throws `invalid_input` a name is not valid, or the image is a disk
   * @throws `not_found` no such project or image
   * @throws `already_exists` the pool has an RBD image named `rbdName`
   * @throws `conflict` another operation is changing this image
   * @throws `permission_denied` Ceph refused BMI's client key
   * @throws `timeout` the Ceph cluster did not answer in time
   * @throws `unavailable` the Ceph cluster cannot be reached
   * @throws `cancelled` the signal fired before the copy was flattened; the copy is removed
   * @example
   * ```ts
   * await bmi.exportImage({ project: "tenant-a", image: "debian12-golden", rbdName: "debian12-export" });
   * ```
   */
  exportImage(
    input: { project: string; image: string; rbdName: string },
    options?: OperationOptions,
  ): Promise<void>;

  /**
   * Creates a disk: a copy-on-write clone of a golden or snapshot image, exported as an iSCSI
   * target. `provision` with `image` does this itself.
   * @returns The disk, with its target.
   * @throws `invalid_input` a name is not valid, or the source image is a disk
   * @throws `not_found` no such project or image
   * @throws `already_exists` the project has an image or disk of that name, or the target server has its target
   * @throws `conflict` another operation is changing an image of the disk's name
   * @throws `permission_denied` Ceph refused BMI's client key, or tgtadm is not allowed (not root)
   * @throws `timeout` Ceph or the target server did not answer in time
   * @throws `unavailable` Ceph or the target server (tgtd) cannot be reached
   * @throws `cancelled` the signal fired; what was made is undone
   * @example
   * ```ts
   * const disk = await bmi.createDisk({ project: "tenant-a", image: "debian12-golden", disk: "node-01-disk" });
   * console.log(disk.target?.name);
   * ```
   */
  createDisk(input: disks.CreateDiskInput, options?: OperationOptions): Promise<Disk>;
  /**
   * Deletes a disk: its target, its row and its clone (snapshot images still sharing its data are
   * flattened first). A disk that boots a node is refused unless `deprovision` is set, which
   * deprovisions the node first in the same saga; `force` removes a target with initiators logged in.
   * @throws `invalid_input` a name is not valid, or the image is not a disk
   * @throws `not_found` no such project or disk; with `deprovision`, HIL does not know the node
   * @throws `busy` the disk boots a node (without `deprovision`), initiators are logged in (without `force`), Ceph says it is in use, or HIL has a networking action pending
   * @throws `conflict` another operation is changing the disk or its node, or the disk changed node meanwhile
   * @throws `forbidden` with `deprovision`: HIL says the project no longer owns the node
   * @throws `unauthenticated` with `deprovision`: HIL refused BMI's credentials
   * @throws `permission_denied` Ceph refused BMI's client key, tgtadm is not allowed, or the boot files cannot be removed
   * @throws `timeout` Ceph, the target server or HIL did not answer in time
   * @throws `unavailable` Ceph, the target server or HIL cannot be reached
   * @throws `cancelled` the signal fired before the clone was removed; what was done is undone
   * @example
   * ```ts
   * await bmi.deleteDisk({ project: "tenant-a", disk: "node-01-disk", deprovision: true });
   * ```
   */
  deleteDisk(input: disks.DeleteDiskInput, options?: OperationOptions): Promise<void>;
  /**
   * The project's disks, each with its target and the node it boots (if any).
   * @returns The disks.
   * @throws `invalid_input` the project name is not valid
   * @throws `not_found` no such project
   * @example
   * ```ts
   * const idle = (await bmi.listDisks({ project: "tenant-a" })).filter((disk) => disk.node === null);
   * ```
   */
  listDisks(input: { project: string }): Promise<Disk[]>;

  /**
   * Makes a node boot from a disk; with `power` (and `wait`) also powers it through its BMC and
   * waits until it has booted (the result's `boot` lists the stages seen).
   *
   * Checks in HIL that the project owns the node, creates the disk from `image` if asked, exports
   * it, writes the node's boot files and attaches its NIC to the provisioning network. Provisioning
   * a node again with its current disk succeeds without change; `switchDisk` moves a node to
   * another disk of the project. Once provisioned, the provisioning is kept whatever the power
   * action or the wait do.
   * @returns The provisioning record, with `boot` when `wait` was asked.
   * @throws `invalid_input` bad input, `wait` without `power`, or `disk` names an image that is not a disk
   * @throws `not_found` the project, the disk (without `image`), the image, the node in HIL, or the NIC does not exist
   * @throws `forbidden` HIL says the node is not the project's
   * @throws `conflict` the node is provisioned with another disk or by another project, boots from another NIC, has boot files without a record, or its OBM is disabled; another operation holds the node or the disk; the boot wait saw the node power off (node provisioned, `details.boot`)
   * @throws `busy` the disk already boots another node, or HIL has a networking action pending
   * @throws `unsupported` `power` without a power driver
   * @throws `unauthenticated` HIL refused BMI's credentials
   * @throws `permission_denied` Ceph refused BMI's client key, tgtadm is not allowed, or the TFTP root is not writable
   * @throws `timeout` a daemon did not answer in time, or the node did not boot within `timeoutMs` (node provisioned, `details.boot`)
   * @throws `unavailable` Ceph, the target server, HIL or the node's BMC cannot be reached
   * @throws `cancelled` the signal fired: before the provisioning was recorded it is undone; during the wait it is kept
   * @example
   * ```ts
   * const node = await bmi.provision({
   *   project: "tenant-a",
   *   node: "node-01",
   *   disk: "node-01-disk",
   *   image: "debian12-golden",
   *   power: "cycle",
   *   wait: true,
   * });
   * console.log(node.target.name, node.boot?.stages);
   * ```
   */
  provision(
    input: provisionBoot.ProvisionBootInput,
    options?: OperationOptions,
  ): Promise<provisionBoot.ProvisionResult>;
  /**
   * Provisions (and powers) many nodes, at most `concurrency` (default 4, 1 to 256) at once, each
   * on its own: one node's failure neither stops nor undoes the others.
   * @returns One result per input, in order: `{ ok: true, value }` or `{ ok: false, error }` with
   * the codes `provision` documents.
   * @throws `invalid_input` `inputs` is not an array or `concurrency` is out of range (items are checked one by one, in the results)
   * @example
   * ```ts
   * const results = await bmi.provisionMany(
   *   ["node-01", "node-02"].map((node) => ({ project: "tenant-a", node, disk: `${node}-disk`, image: "debian12-golden" })),
   *   { concurrency: 2 },
   * );
   * for (const r of results) if (!r.ok) console.error(r.node, r.error.code);
   * ```
   */
  provisionMany(
    inputs: provisionBoot.ProvisionBootInput[],
    options?: { concurrency?: number } & OperationOptions,
  ): Promise<nodes.BatchResult<provisionBoot.ProvisionResult>[]>;
  /**
   * Undoes `provision`: detaches the NIC from the provisioning network, removes the boot files and
   * the record; with `powerOff` powers the node off first, with `deleteDisk` deletes its disk too.
   * `force` skips the ownership check in HIL; `missingOk` makes a node that is not provisioned a success.
   * @throws `invalid_input` bad input, or `nic` is not the NIC the node was provisioned through
   * @throws `not_found` the node is not provisioned (without `missingOk`), or HIL or its BMC does not know it
   * @throws `forbidden` another project provisioned the node, or HIL says the project no longer owns it (without `force`)
   * @throws `conflict` another operation holds the node or its disk, or the node's OBM is disabled (`powerOff`)
   * @throws `busy` HIL has a networking action pending, or (`deleteDisk`) Ceph says the disk is in use
   * @throws `unsupported` `powerOff` without a power driver
   * @throws `unauthenticated` HIL refused BMI's credentials
   * @throws `permission_denied` the boot files cannot be removed, or (`deleteDisk`) Ceph or tgtadm refused
   * @throws `timeout` HIL, the BMC, Ceph or the target server did not answer in time
   * @throws `unavailable` HIL, the BMC, Ceph or the target server cannot be reached
   * @throws `cancelled` the signal fired; what was done is undone (a power-off stays)
   * @example
   * ```ts
   * await bmi.deprovision({ project: "tenant-a", node: "node-01", powerOff: true, deleteDisk: true });
   * ```
   */
  deprovision(input: provisionBoot.DeprovisionPowerInput, options?: OperationOptions): Promise<void>;
  /**
   * The provisioned nodes, of one project or of all.
   * @returns The provisioning records.
   * @throws `invalid_input` the project name is not valid
   * @example
   * ```ts
   * const nodes = await bmi.listProvisionings({ project: "tenant-a" });
   * ```
   */
  listProvisionings(input?: { project?: string }): Promise<Provisioning[]>;

  /**
   * Saves a disk's content as a new golden image marked as a snapshot. By default it is a clone of
   * a snapshot of the disk, usable at once and flattened later (`flattenPending`, or when the disk
   * is deleted); `flatten: "now"` flattens before returning. A disk that boots a node must be
   * powered off (asked of its BMC), unless `force`.
   * @returns The snapshot image.
   * @throws `invalid_input` a name is not valid, or the image is not a disk
   * @throws `not_found` no such project or disk
   * @throws `already_exists` the project has an image named `snapshot`
   * @throws `busy` the disk boots a node that is on, or whose power state BMI cannot read (without `force`)
   * @throws `conflict` another operation is changing the disk or an image named `snapshot`
   * @throws `permission_denied` Ceph refused BMI's client key
   * @throws `timeout` the Ceph cluster did not answer in time
   * @throws `unavailable` the Ceph cluster cannot be reached
   * @throws `cancelled` the signal fired; what was made is undone
   * @example
   * ```ts
   * await bmi.snapshotDisk({ project: "tenant-a", disk: "node-01-disk", snapshot: "node-01-v2" });
   * ```
   */
  snapshotDisk(input: snapshots.SnapshotDiskInput, options?: OperationOptions): Promise<Image>;
  /**
   * The project's snapshot images, each with its parent image's name (the original's `list_snapshots`).
   * @returns The snapshot images.
   * @throws `invalid_input` the project name is not valid
   * @throws `not_found` no such project
   * @example
   * ```ts
   * for (const { image, parent } of await bmi.listSnapshots({ project: "tenant-a" })) console.log(image.name, parent);
   * ```
   */
  listSnapshots(input: { project: string }): Promise<{ image: Image; parent: string | null }[]>;
  /**
   * Flattens the snapshot images `snapshotDisk` left sharing data with their disks, one disk at a
   * time under its lock, and drops the disks' temporary snapshots.
   * @returns How many images it flattened.
   * @throws `conflict` another operation is changing one of the disks (the disks before it are done)
   * @throws `permission_denied` Ceph refused BMI's client key
   * @throws `timeout` the Ceph cluster did not answer in time
   * @throws `unavailable` the Ceph cluster cannot be reached
   * @throws `cancelled` the signal fired (images already flattened stay flattened)
   * @example
   * ```ts
   * const flattened = await bmi.flattenPending();
   * ```
   */
  flattenPending(options?: OperationOptions): Promise<number>;

  /**
   * Exports an image as an iSCSI target (e.g. to inspect or fix it from a host). An image already
   * mounted returns its target.
   * @returns The target.
   * @throws `invalid_input` a name is not valid
   * @throws `not_found` no such project or image
   * @throws `already_exists` the target server already has a target of that name that BMI did not record
   * @throws `conflict` another operation is changing this image
   * @throws `permission_denied` tgtadm is not allowed (not root)
   * @throws `timeout` the target server did not answer in time
   * @throws `unavailable` the target server (tgtd) cannot be reached
   * @throws `cancelled` the signal fired; the target is removed
   * @example
   * ```ts
   * const target = await bmi.mountImage({ project: "tenant-a", image: "debian12-golden" });
   * console.log(`iscsiadm -m discovery -t st -p ${target.portal}:${target.port}`);
   * ```
   */
  mountImage(input: { project: string; image: string }, options?: OperationOptions): Promise<TargetInfo>;
  /**
   * Removes the target of a mounted image; `force` even with initiators logged in. A disk's
   * target goes with `deleteDisk`.
   * @throws `invalid_input` a name is not valid, or the image is a disk
   * @throws `not_found` no such project or image, or the image is not mounted
   * @throws `busy` initiators are logged in to the target (without `force`)
   * @throws `conflict` another operation is changing this image
   * @throws `permission_denied` tgtadm is not allowed (not root)
   * @throws `timeout` the target server did not answer in time
   * @throws `unavailable` the target server (tgtd) cannot be reached
   * @throws `cancelled` the signal fired before the target was removed
   * @example
   * ```ts
   * await bmi.unmountImage({ project: "tenant-a", image: "debian12-golden", force: true });
   * ```
   */
  unmountImage(
    input: { project: string; image: string; force?: boolean },
    options?: OperationOptions,
  ): Promise<void>;
  /**
   * The project's mounted images and disks with their targets (the original's `show_mounted`).
   * @returns One entry per exported image or disk.
   * @throws `invalid_input` the project name is not valid
   * @throws `not_found` no such project
   * @example
   * ```ts
   * for (const { image, target } of await bmi.listMounts({ project: "tenant-a" })) console.log(image, target.name);
   * ```
   */
  listMounts(input: { project: string }): Promise<{ image: string; target: TargetInfo }[]>;
  /**
   * Re-creates every target the store knows that the target server lost (e.g. after tgtd restarted).
   * @returns The names of the targets it re-created.
   * @throws `permission_denied` tgtadm is not allowed (not root)
   * @throws `timeout` the target server did not answer in time
   * @throws `unavailable` the target server (tgtd) cannot be reached
   * @throws `cancelled` the signal fired (targets already re-created stay)
   * @example
   * ```ts
   * const restored = await bmi.restoreTargets();
   * ```
   */
  restoreTargets(options?: OperationOptions): Promise<string[]>;

  /**
   * Powers a node the project owns through its BMC (needs a power driver); resolves with its state.
   * Ownership is checked in HIL before any BMC call; `bootDevice` is set first. A power action has
   * no undo.
   * @returns The power state the BMC reports afterwards.
   * @throws `invalid_input` bad input (e.g. an unknown `action`)
   * @throws `unsupported` no power driver, or it cannot set the boot device
   * @throws `not_found` HIL or the BMC service does not know the node
   * @throws `forbidden` HIL says the node is not the project's
   * @throws `conflict` another operation holds the node, or its OBM is disabled in HIL
   * @throws `unauthenticated` HIL refused BMI's credentials
   * @throws `timeout` HIL or the BMC did not answer in time
   * @throws `unavailable` HIL or the BMC cannot be reached, or the BMC failed
   * @throws `cancelled` the signal fired before the power action
   * @example
   * ```ts
   * const state = await bmi.power({ project: "tenant-a", node: "node-01", action: "cycle", bootDevice: "pxe" });
   * ```
   */
  power(input: power.PowerInput, options?: OperationOptions): Promise<PowerState>;
  /**
   * The node's power state as its BMC reports it, for a project that owns the node (checked in HIL).
   * @returns `on`, `off` or `unknown`.
   * @throws `invalid_input` a name is not valid
   * @throws `unsupported` no power driver
   * @throws `not_found` HIL or the BMC service does not know the node
   * @throws `forbidden` HIL says the node is not the project's
   * @throws `conflict` the node's OBM is disabled in HIL
   * @throws `unauthenticated` HIL refused BMI's credentials
   * @throws `timeout` HIL or the BMC did not answer in time
   * @throws `unavailable` HIL or the BMC cannot be reached
   * @throws `cancelled` the signal fired
   * @example
   * ```ts
   * if ((await bmi.powerStatus({ project: "tenant-a", node: "node-01" })) === "off") console.log("node-01 is off");
   * ```
   */
  powerStatus(input: { project: string; node: string }, options?: OperationOptions): Promise<PowerState>;
  /**
   * Waits until a provisioned node has booted from its disk (stages: powered on, firmware login,
   * OS login), with no agent on the node. Resolves with SUCCESS, FAILURE, TIMEOUT or ABORTED.
   * Sessions open when the wait begins are ignored, so start it right after powering the node
   * (`provision({ power, wait })` does both).
   * @returns The outcome, with the stages seen; a boot that fails is a state, not a rejection.
   * @throws `invalid_input` bad input or options
   * @throws `not_found` the node is not provisioned, or HIL does not know it
   * @throws `forbidden` another project provisioned the node, or HIL says it is not the project's
   * @throws `unsupported` the export driver cannot list initiator sessions
   * @throws `conflict` the node's OBM is disabled in HIL
   * @throws `unauthenticated` HIL refused BMI's credentials
   * @throws `timeout` HIL or the target server did not answer in time
   * @throws `unavailable` HIL or the target server cannot be reached
   * @throws `cancelled` the signal fired before the watch began (later, the result is ABORTED)
   * @example
   * ```ts
   * const result = await bmi.waitForBoot({ project: "tenant-a", node: "node-01" }, { timeoutMs: 600_000 });
   * if (result.state !== "SUCCESS") console.error(result.reason);
   * ```
   */
  waitForBoot(
    input: bootWait.WaitForBootInput,
    options?: bootWait.WaitForBootOptions,
  ): Promise<bootWait.BootWaitResult>;

  /**
   * Compares the store with storage, targets, boot files, HIL attachments and node owners, and
   * reports drift; with `repair`, re-creates what the records say must exist and removes only what
   * this database's journal proves an unfinished operation left (`remove` names `unknown` drift to
   * remove all the same). A repair that fails is reported in `failed`, not thrown.
   * @returns The drift found, what was repaired and what could not be.
   * @throws `invalid_input` bad options
   * @throws `conflict` another reconcile is running, or (`repair`) the database looks new or restored from a backup
   * @throws `permission_denied` Ceph refused BMI's client key, or tgtadm is not allowed
   * @throws `timeout` Ceph, the target server or HIL did not answer in time
   * @throws `unavailable` Ceph, the target server or HIL cannot be reached
   * @throws `cancelled` the signal fired
   * @example
   * ```ts
   * const report = await bmi.reconcile({ repair: true });
   * for (const { drift, error, retryable } of report.failed) {
   *   console.error(drift.kind, drift.subject, error, retryable ? "(run again later)" : "(needs a human)");
   * }
   * ```
   */
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
