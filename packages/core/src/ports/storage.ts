import type { CallOptions } from "./common.js";

/** What a storage back end can do; the core checks these once, at wiring time. */
export interface StorageCapabilities {
  /** Clones are copy-on-write and metadata-only (RBD layering). */
  cowClone: boolean;
  /** A snapshot of an image in use (exported, booted) is consistent enough to clone. */
  liveSnapshot: boolean;
  /** Clones of unprotected snapshots are allowed (RBD clone v2). When false, protect first. */
  cloneUnprotected: boolean;
}

/**
 * What an export driver needs to serve an image. `rbd`: tgt's rbd backing store;
 * `file`: a plain file (labs without Ceph); `memory`: the in-memory storage driver (unit tests).
 */
export type Backing =
  | { kind: "rbd"; pool: string; image: string; conf?: string; clientId?: string }
  | { kind: "file"; path: string }
  | { kind: "memory"; image: string };

export type BackingKind = Backing["kind"];

export interface SnapshotRef {
  image: string;
  snapshot: string;
}

export interface ImageDetails {
  name: string;
  sizeBytes: number;
  /** The snapshot this image was cloned from, until it is flattened. */
  parent: SnapshotRef | null;
}

export interface SnapshotDetails {
  name: string;
  protected: boolean;
}

/**
 * A pool of block images with snapshots and clones (Ceph RBD in production).
 * Image and snapshot names are validated by the caller (RbdImageName, RbdSnapshotName).
 * Errors: `not_found`, `already_exists`, `busy` (children, watchers, protected), `invalid_input`,
 * `permission_denied`, `timeout`, `unavailable`, all with subsystem `storage`.
 */
export interface StorageDriver {
  readonly name: string;
  readonly capabilities: StorageCapabilities;

  exists(image: string, options?: CallOptions): Promise<boolean>;
  list(options?: CallOptions): Promise<string[]>;
  /** Throws `not_found`. */
  info(image: string, options?: CallOptions): Promise<ImageDetails>;
  /** A new empty image. Throws `already_exists`. */
  create(image: string, sizeBytes: number, options?: CallOptions): Promise<void>;
  /** Removes an image. Throws `busy` (snapshots, children, watchers) or `not_found`. */
  remove(image: string, options?: CallOptions): Promise<void>;

  /** A copy-on-write clone of `parent` named `child`. Throws `not_found`, `already_exists`, `busy`. */
  clone(parent: SnapshotRef, child: string, options?: CallOptions): Promise<void>;
  /** Copies the parent's data into the clone and cuts the link. */
  flatten(image: string, options?: CallOptions): Promise<void>;
  /** A full, independent copy of `source` (an image or `image@snapshot`) named `target`. */
  copy(source: string | SnapshotRef, target: string, options?: CallOptions): Promise<void>;

  createSnapshot(ref: SnapshotRef, options?: CallOptions): Promise<void>;
  listSnapshots(image: string, options?: CallOptions): Promise<SnapshotDetails[]>;
  /** Throws `busy` when protected. */
  removeSnapshot(ref: SnapshotRef, options?: CallOptions): Promise<void>;
  /** Idempotent. */
  protectSnapshot(ref: SnapshotRef, options?: CallOptions): Promise<void>;
  /** Idempotent. Throws `busy` while clones exist. */
  unprotectSnapshot(ref: SnapshotRef, options?: CallOptions): Promise<void>;
  /** The images cloned from a snapshot. */
  children(ref: SnapshotRef, options?: CallOptions): Promise<string[]>;

  /** What an export driver needs to serve `image` (no I/O). */
  backingFor(image: string): Backing;

  /** Copies a local raw file into a new image (labs, golden-image import). Optional. */
  importFile?(path: string, image: string, options?: CallOptions): Promise<void>;
  /** Copies an image to a local raw file. Optional. */
  exportFile?(image: string, path: string, options?: CallOptions): Promise<void>;
}
