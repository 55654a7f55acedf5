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

export type JournalFilter = { operationId?: string | undefined; since?: number | undefined };

/** The original `project` table. */
export interface ProjectRepository {
  create(name: string, id?: number): Promise<Project>;
  get(name: string): Promise<Project | undefined>;
  getById(id: number): Promise<Project | undefined>;
  list(): Promise<Project[]>;
  /** Deletes a project row; refused (`busy`) while it has images or nodes (COR-8); unknown ids are ignored. */
  delete(id: number): Promise<void>;
}

/** The original `image` table, with each image's origin (COR-10). */
export interface ImageRepository {
  insert(image: NewImage): Promise<Image>;
  get(projectId: number, name: string): Promise<Image | undefined>;
  getById(id: number): Promise<Image | undefined>;
  /** All images, or one project's, by id. */
  list(projectId?: number): Promise<Image[]>;
  /** The images whose parent is `imageId` (disks cloned from it, snapshots taken of its disks). */
  listChildren(imageId: number): Promise<Image[]>;
  update(id: number, patch: ImagePatch): Promise<Image>;
  /** Idempotent; refused (`busy`) while the image has clones, an export or a node booting it. */
  delete(id: number): Promise<void>;
  /**
   * The uid, S and RBD name the image was created with (COR-10): use its `snapshotName`, not the
   * configured one, when cloning from it.
   */
  origin(imageId: number): Promise<ImageOrigin | undefined>;
  /**
   * The highest image id this database ever allocated. An RBD image `<uid>img<N>` with N above it
   * was not made through this database (another database, or this one restored from a backup).
   */
  idHighWater(): Promise<number>;
}

/** The iSCSI export of each disk or mounted image. */
export interface ExportRepository {
  /** Inserts or replaces the image's export; a target name serves one image. */
  put(record: ExportRecord): Promise<void>;
  get(imageId: number): Promise<ExportRecord | undefined>;
  list(): Promise<ExportRecord[]>;
  delete(imageId: number): Promise<void>;
}

/** Which node boots which disk (OPS-1); a disk serves one node (CON-2). */
export interface ProvisioningRepository {
  /** Inserts or replaces the node's record. */
  put(record: Provisioning): Promise<void>;
  get(node: string): Promise<Provisioning | undefined>;
  getByDisk(diskId: number): Promise<Provisioning | undefined>;
  list(): Promise<Provisioning[]>;
  delete(node: string): Promise<void>;
}

/** The operations journal, append-only. */
export interface JournalRepository {
  append(entry: NewJournalEntry): Promise<JournalEntry>;
  /** Journal lines, oldest first; optionally one operation's, or only those after an id. */
  list(filter?: JournalFilter): Promise<JournalEntry[]>;
}

/** Named leases shared by every process on the store. */
export interface LockRepository {
  /**
   * Takes a named lock for `owner` or resolves false if someone else holds it. A lock whose
   * holder process is gone (pid on this host no longer alive) or whose lease expired is taken
   * over, so a killed holder never blocks forever.
   */
  tryLock(key: string, owner: LockOwner, leaseMs: number): Promise<boolean>;
  unlock(key: string, owner: LockOwner): Promise<void>;
  /** Extends `owner`'s lease; false when the lease already ended or another owner took the lock. */
  renew(key: string, owner: LockOwner, leaseMs: number): Promise<boolean>;
  /** Whether `owner` holds `key` with a lease that has not ended (the fence for its writes). */
  holds(key: string, owner: LockOwner): Promise<boolean>;
  /** Every lock row, with whether its holder is gone (lease ended, or a dead process on this host). */
  list(): Promise<LockInfo[]>;
  /** Removes a lock row of `ownerId` (reconcile, for a dead holder). */
  break(key: string, ownerId: string): Promise<void>;
}

/** The store's repositories, one per concern. */
export interface StoreRepositories {
  readonly projects: ProjectRepository;
  readonly images: ImageRepository;
  readonly exports: ExportRepository;
  readonly provisionings: ProvisioningRepository;
  readonly journal: JournalRepository;
  readonly locks: LockRepository;
}

/** The repositories inside one transaction; `transaction` nests (a savepoint). */
export interface StoreTransaction extends StoreRepositories {
  /**
   * Runs `fn(tx)` in one transaction: committed when its promise resolves, rolled back when it
   * rejects. Use `tx`, not the outer store, inside `fn`; no other caller's store call runs
   * until it ends, so keep it short (no driver calls inside).
   */
  transaction<T>(fn: (tx: StoreTransaction) => Promise<T>): Promise<T>;
}

/**
 * Persistent state: the original `project` and `image` tables, plus exports, provisionings,
 * the operations journal and locks. Locks and the journal live here (not in process memory) so
 * several BMI processes can share one store. Every method is async, so a store may live in
 * another process or host; each method on its own is atomic. A new store proves itself by
 * passing `testStore` (`@bmi/core/testing/contracts`).
 */
export interface Store extends StoreTransaction {
  /** Waits for a running transaction, then closes; idempotent. */
  close(): Promise<void>;
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
