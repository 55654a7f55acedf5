import type { Image, Project, Provisioning, TargetInfo } from "../domain/model.js";
import type { ExportAccess } from "../ports/export.js";

export interface NewImage {
  /** Set explicitly only by admin tools (the original `db create --id`); otherwise allocated. */
  id?: number;
  name: string;
  projectId: number;
  parentId: number | null;
  isPublic: boolean;
  isSnapshot: boolean;
  /** Computes the RBD name from the allocated id (`<uid>img<id>`), or a fixed name. */
  cephName: string | ((id: number) => string);
}

export type ImagePatch = Partial<Pick<Image, "name" | "projectId" | "parentId" | "isPublic" | "isSnapshot">>;

/** The export of a disk or mounted image, kept so `restore()` and `reconcile()` can rebuild it. */
export interface ExportRecord {
  imageId: number;
  target: TargetInfo;
  /** Access rules without the CHAP secret (that stays in config). */
  access: Omit<ExportAccess, "chap"> & { chapUser?: string };
}

/** One line of the operations journal: a step started, finished, failed or was undone. */
export interface JournalEntry {
  id: number;
  operationId: string;
  operation: string;
  step: string | null;
  /** `started` | `finished` | `failed` | `undone` | `undo_failed`. */
  status: string;
  /** JSON-safe details (names, ids); never secrets. */
  data: Record<string, unknown>;
  at: string;
}

export type NewJournalEntry = Omit<JournalEntry, "id" | "at">;

/** What an image was created with (COR-10): the uid, the clone-source snapshot S and its RBD name. */
export interface ImageOrigin {
  uid: string;
  snapshotName: string;
  cephName: string;
}

/**
 * Persistent state: the original `project` and `image` tables, plus exports, provisionings,
 * the operations journal and locks. Locks and the journal live here (not in process memory) so
 * several BMI processes can share one store.
 *
 * The interface is synchronous because the default store (better-sqlite3) is; every method runs
 * in one short transaction.
 */
export interface Store {
  createProject(name: string, id?: number): Project;
  getProject(name: string): Project | undefined;
  getProjectById(id: number): Project | undefined;
  listProjects(): Project[];
  /** Deletes a project row; the caller checks it is empty first (COR-8). */
  deleteProject(id: number): void;

  insertImage(image: NewImage): Image;
  getImage(projectId: number, name: string): Image | undefined;
  getImageById(id: number): Image | undefined;
  /** All images, or one project's. */
  listImages(projectId?: number): Image[];
  /** The images whose parent is `imageId` (disks cloned from it, snapshots taken of its disks). */
  listChildren(imageId: number): Image[];
  updateImage(id: number, patch: ImagePatch): Image;
  deleteImage(id: number): void;
  /**
   * The uid, S and RBD name the image was created with (COR-10): use its `snapshotName`, not the
   * configured one, when cloning from it. Optional so other stores stay compatible.
   */
  imageOrigin?(imageId: number): ImageOrigin | undefined;

  putExport(record: ExportRecord): void;
  getExport(imageId: number): ExportRecord | undefined;
  listExports(): ExportRecord[];
  deleteExport(imageId: number): void;

  putProvisioning(record: Provisioning): void;
  getProvisioning(node: string): Provisioning | undefined;
  getProvisioningByDisk(diskId: number): Provisioning | undefined;
  listProvisionings(): Provisioning[];
  deleteProvisioning(node: string): void;

  appendJournal(entry: NewJournalEntry): JournalEntry;
  /** Journal lines, oldest first; optionally only one operation's. */
  listJournal(filter?: { operationId?: string; since?: number }): JournalEntry[];

  /**
   * Takes a named lock for `owner` or returns false if someone else holds it. A lock whose
   * holder process is gone (pid on this host no longer alive) or whose lease expired is taken
   * over, so a killed holder never blocks forever.
   */
  tryLock(key: string, owner: LockOwner, leaseMs: number): boolean;
  unlock(key: string, owner: LockOwner): void;
  /** Extends `owner`'s lease; false when the lease already ended or another owner took the lock. */
  renewLock(key: string, owner: LockOwner, leaseMs: number): boolean;
  /** Whether `owner` holds `key` with a lease that has not ended (the fence for its writes). */
  holdsLock(key: string, owner: LockOwner): boolean;
  /** Every lock row, with whether its holder is gone (lease ended, or a dead process on this host). */
  listLocks(): LockInfo[];
  /** Removes a lock row of `ownerId` (reconcile, for a dead holder). */
  breakLock(key: string, ownerId: string): void;
  /**
   * The highest image id this database ever allocated. An RBD image `<uid>img<N>` with N above it
   * was not made through this database (another database, or this one restored from a backup).
   */
  imageIdHighWater(): number;

  /** Runs `fn` in one transaction (nested calls join the outer one). */
  transaction<T>(fn: () => T): T;
  close(): void;
}

export interface LockInfo {
  key: string;
  owner: LockOwner;
  expiresAt: number;
  stale: boolean;
}

export interface LockOwner {
  /** Unique per operation. */
  id: string;
  pid: number;
  host: string;
}
