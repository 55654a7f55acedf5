import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { hostname } from "node:os";
import { dirname } from "node:path";
import type Database from "better-sqlite3";
import { z } from "zod";
import type { Firmware, Image, ImageKind, Project, Provisioning } from "../domain/model.js";
import { type MacAddress, ProjectName, RbdSnapshotName, Uid } from "../domain/names.js";
import { parseInput } from "../domain/validate.js";
import { BmiError, type ErrorCode } from "../errors/index.js";
import { type Logger, silentLogger } from "../log/index.js";
import type { ExportAccess } from "../ports/export.js";
import { migrate } from "./schema.js";
import type {
  ExportRecord,
  ImageOrigin,
  ImagePatch,
  JournalEntry,
  LockOwner,
  NewJournalEntry,
  Store,
} from "./types.js";

export interface SqliteStoreOptions {
  /** The database file, or `":memory:"`. */
  path: string;
  /**
   * Create the file (and its directory) if it is missing: only `bmi db init` and labs should.
   * Default false: a mistyped `[db] path` must fail, naming the path, and never give an empty
   * database that makes every image in the pool look like an orphan.
   */
  create?: boolean | undefined;
  /** `[bmi] uid`: recorded with each new image, and given to the original's rows on migration. */
  uid: string;
  /** `[bmi] snapshot` (S): recorded like `uid`. */
  snapshotName: string;
  logger?: Logger;
  /**
   * How long SQLite itself waits, blocking the event loop, for another process's transaction
   * (`busy_timeout`); default 20 ms. Longer waits are async retries by the operations.
   */
  busyTimeoutMs?: number;
  /** This host's name for lock ownership; default `os.hostname()`. */
  hostname?: string;
}

/** The SQLite store: the {@link Store} contract plus what opening it found. */
export interface SqliteStore extends Store {
  readonly path: string;
  /** Problems found while opening (migrated dangling rows, uid/snapshot changed since creation). */
  readonly warnings: readonly string[];
  imageOrigin(imageId: number): ImageOrigin | undefined;
}

const Options = z.object({
  path: z.string().min(1, { error: "must be a file path or :memory:" }),
  uid: Uid,
  snapshotName: RbdSnapshotName,
  create: z.boolean().optional(),
  busyTimeoutMs: z.number().int().min(0).max(600_000).optional(),
  hostname: z.string().min(1).optional(),
});

interface ImageRow {
  id: number;
  name: string;
  is_public: number;
  is_snapshot: number;
  project_id: number;
  parent_id: number | null;
  ceph_name: string | null;
}

interface ExportRow {
  image_id: number;
  target_name: string;
  portal: string;
  port: number;
  lun: number;
  initiators: string;
  chap_user: string | null;
}

interface ProvisioningRow {
  node: string;
  project: string;
  disk: string;
  disk_id: number;
  nic: string;
  mac: string;
  firmware: string;
  target_name: string;
  portal: string;
  port: number;
  lun: number;
  network: string | null;
  created_at: string;
}

interface LockRow {
  key: string;
  owner_id: string;
  pid: number;
  host: string;
  expires_at: number;
}

interface JournalRow {
  id: number;
  operation_id: string;
  operation: string;
  step: string | null;
  status: string;
  data: string;
  at: string;
}

/** §2.3: golden = no parent; disk = parent and not a snapshot; snapshot = is_snapshot. */
export function imageKind(parentId: number | null, isSnapshot: boolean): ImageKind {
  if (isSnapshot) return "snapshot";
  return parentId === null ? "golden" : "disk";
}

const storeError = (
  code: ErrorCode,
  message: string,
  details: Record<string, unknown> = {},
  cause?: unknown,
) => new BmiError(code, message, { subsystem: "store", details, cause });

/** Whether `pid` is a live process on this host (a zombie counts as dead: it holds nothing). */
export function isPidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (error) {
    // EPERM: it exists but belongs to another user.
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return true; // no procfs: trust kill(0)
  }
}

/**
 * The native addon loads when the first store opens, not when `@bmi/core` is imported: code that
 * only needs `BmiError`, the config loader or an HTTP driver never loads it.
 */
let betterSqlite: typeof Database | undefined;
function loadBetterSqlite(): typeof Database {
  betterSqlite ??= createRequire(import.meta.url)("better-sqlite3") as typeof Database;
  return betterSqlite;
}

/**
 * Opens (creating or migrating) a BMI database on better-sqlite3: WAL, a busy timeout, foreign
 * keys on, prepared statements, and `PRAGMA user_version` migrations. An original BMI `bmi.db`
 * opens and is migrated forward keeping every row (COR-12).
 */
export function openSqliteStore(options: SqliteStoreOptions): SqliteStore {
  const opts = parseInput(Options, options, "options", "store");
  const logger = (options.logger ?? silentLogger).child({ component: "store" });
  const host = opts.hostname ?? hostname();
  const warnings: string[] = [];
  const warn = (message: string, data: Record<string, unknown> = {}) => {
    warnings.push(message);
    logger.warn(data, message);
  };
  const nowIso = () => new Date().toISOString();

  let db: Database.Database;
  const onDisk = opts.path !== ":memory:";
  if (onDisk && !opts.create && !existsSync(opts.path)) {
    throw storeError(
      "not_found",
      `the database ${opts.path} does not exist; check [db] path, or create it with \`bmi db init\``,
      { path: opts.path },
    );
  }
  try {
    if (onDisk) ensureDir(dirname(opts.path));
    db = new (loadBetterSqlite())(opts.path, { fileMustExist: onDisk && !opts.create });
  } catch (error) {
    throw storeError("unavailable", `cannot open the database ${opts.path}`, { path: opts.path }, error);
  }
  try {
    db.pragma(`busy_timeout = ${opts.busyTimeoutMs ?? 20}`);
    if (opts.path !== ":memory:") db.pragma("journal_mode = WAL");
    // With WAL, NORMAL syncs at checkpoints, not per commit: a commit survives a crash of the
    // process (what we need: a SIGKILLed batch leaves a consistent journal), only a power loss
    // may roll back the last ones. FULL would fsync every per-step journal row.
    db.pragma("synchronous = NORMAL");
    migrate(db, { uid: opts.uid, snapshotName: opts.snapshotName, now: nowIso, warn });
    db.pragma("foreign_keys = ON");
  } catch (error) {
    db.close();
    if (error instanceof BmiError) throw error;
    throw storeError(
      "unavailable",
      `cannot open the database ${opts.path}: ${sqliteReason(error)}`,
      {},
      error,
    );
  }

  const meta = (key: string) =>
    (db.prepare("SELECT value FROM bmi_meta WHERE key = ?").get(key) as { value: string } | undefined)?.value;
  for (const [key, now, what] of [
    ["uid", opts.uid, "[bmi] uid"],
    ["snapshot_name", opts.snapshotName, "[bmi] snapshot"],
  ] as const) {
    const then = meta(key);
    if (then !== undefined && then !== now) {
      warn(
        `${what} is ${now}, but this database was created with ${then}; existing images keep the names they were created with`,
        { key, created: then, configured: now },
      );
    }
  }

  const s = {
    insertProject: db.prepare("INSERT INTO project (id, name) VALUES (?, ?)"),
    projectByName: db.prepare("SELECT id, name FROM project WHERE name = ?"),
    projectById: db.prepare("SELECT id, name FROM project WHERE id = ?"),
    projects: db.prepare("SELECT id, name FROM project ORDER BY id"),
    deleteProject: db.prepare("DELETE FROM project WHERE id = ?"),
    imagesInProject: db.prepare("SELECT COUNT(*) AS n FROM image WHERE project_id = ?"),
    insertImage: db.prepare(
      "INSERT INTO image (id, name, is_public, is_snapshot, project_id, parent_id) VALUES (@id, @name, @isPublic, @isSnapshot, @projectId, @parentId)",
    ),
    insertOrigin: db.prepare(
      "INSERT INTO image_origin (image_id, uid, snapshot_name, ceph_name, created_at) VALUES (?, ?, ?, ?, ?)",
    ),
    origin: db.prepare(
      "SELECT uid, snapshot_name AS snapshotName, ceph_name AS cephName FROM image_origin WHERE image_id = ?",
    ),
    imageById: db.prepare(
      "SELECT i.*, o.ceph_name FROM image i LEFT JOIN image_origin o ON o.image_id = i.id WHERE i.id = ?",
    ),
    imageByName: db.prepare(
      "SELECT i.*, o.ceph_name FROM image i LEFT JOIN image_origin o ON o.image_id = i.id WHERE i.project_id = ? AND i.name = ?",
    ),
    images: db.prepare(
      "SELECT i.*, o.ceph_name FROM image i LEFT JOIN image_origin o ON o.image_id = i.id ORDER BY i.id",
    ),
    imagesOf: db.prepare(
      "SELECT i.*, o.ceph_name FROM image i LEFT JOIN image_origin o ON o.image_id = i.id WHERE i.project_id = ? ORDER BY i.id",
    ),
    children: db.prepare("SELECT id, name, is_snapshot FROM image WHERE parent_id = ? ORDER BY id"),
    childRows: db.prepare(
      "SELECT i.*, o.ceph_name FROM image i LEFT JOIN image_origin o ON o.image_id = i.id WHERE i.parent_id = ? ORDER BY i.id",
    ),
    detachChildren: db.prepare("UPDATE image SET parent_id = NULL, is_snapshot = 0 WHERE parent_id = ?"),
    deleteImage: db.prepare("DELETE FROM image WHERE id = ?"),
    updateImage: db.prepare(
      "UPDATE image SET name = ?, project_id = ?, parent_id = ?, is_public = ?, is_snapshot = ? WHERE id = ?",
    ),
    maxImageId: db.prepare("SELECT COALESCE(MAX(id), 0) AS m FROM image"),
    getMeta: db.prepare("SELECT value FROM bmi_meta WHERE key = ?"),
    setMeta: db.prepare(
      "INSERT INTO bmi_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    ),
    putExport: db.prepare(
      `INSERT INTO "export" (image_id, target_name, portal, port, lun, initiators, chap_user, created_at)
       VALUES (@imageId, @targetName, @portal, @port, @lun, @initiators, @chapUser, @createdAt)
       ON CONFLICT (image_id) DO UPDATE SET target_name = excluded.target_name, portal = excluded.portal,
         port = excluded.port, lun = excluded.lun, initiators = excluded.initiators, chap_user = excluded.chap_user`,
    ),
    export: db.prepare(`SELECT * FROM "export" WHERE image_id = ?`),
    exportByTarget: db.prepare(`SELECT image_id FROM "export" WHERE target_name = ?`),
    exports: db.prepare(`SELECT * FROM "export" ORDER BY image_id`),
    deleteExport: db.prepare(`DELETE FROM "export" WHERE image_id = ?`),
    putProvisioning: db.prepare(
      `INSERT INTO provisioning (node, project, disk, disk_id, nic, mac, firmware, target_name, portal, port, lun, network, created_at)
       VALUES (@node, @project, @disk, @diskId, @nic, @mac, @firmware, @targetName, @portal, @port, @lun, @network, @createdAt)
       ON CONFLICT (node) DO UPDATE SET project = excluded.project, disk = excluded.disk, disk_id = excluded.disk_id,
         nic = excluded.nic, mac = excluded.mac, firmware = excluded.firmware, target_name = excluded.target_name,
         portal = excluded.portal, port = excluded.port, lun = excluded.lun, network = excluded.network,
         created_at = excluded.created_at`,
    ),
    provisioning: db.prepare("SELECT * FROM provisioning WHERE node = ?"),
    provisioningByDisk: db.prepare("SELECT * FROM provisioning WHERE disk_id = ?"),
    provisionings: db.prepare("SELECT * FROM provisioning ORDER BY node"),
    provisioningsOfProject: db.prepare("SELECT COUNT(*) AS n FROM provisioning WHERE project = ?"),
    deleteProvisioning: db.prepare("DELETE FROM provisioning WHERE node = ?"),
    appendJournal: db.prepare(
      "INSERT INTO journal (operation_id, operation, step, status, data, at) VALUES (@operationId, @operation, @step, @status, @data, @at)",
    ),
    journal: db.prepare(
      `SELECT * FROM journal WHERE (@operationId IS NULL OR operation_id = @operationId) AND id > @since ORDER BY id`,
    ),
    lock: db.prepare(`SELECT * FROM "lock" WHERE key = ?`),
    putLock: db.prepare(
      `INSERT INTO "lock" (key, owner_id, pid, host, acquired_at, expires_at) VALUES (@key, @ownerId, @pid, @host, @now, @expiresAt)
       ON CONFLICT (key) DO UPDATE SET owner_id = excluded.owner_id, pid = excluded.pid, host = excluded.host,
         acquired_at = excluded.acquired_at, expires_at = excluded.expires_at`,
    ),
    unlock: db.prepare(`DELETE FROM "lock" WHERE key = ? AND owner_id = ?`),
    renewLock: db.prepare(
      `UPDATE "lock" SET expires_at = ? WHERE key = ? AND owner_id = ? AND expires_at > ?`,
    ),
    locks: db.prepare(`SELECT * FROM "lock" ORDER BY key`),
  };

  /** Runs `fn` in a transaction: IMMEDIATE at the top (no lock upgrade deadlock), a savepoint when nested. */
  const tx = <T>(fn: () => T): T => {
    try {
      return db.transaction(fn).immediate();
    } catch (error) {
      throw mapSqliteError(error);
    }
  };

  const toImage = (row: ImageRow): Image => {
    const isSnapshot = row.is_snapshot === 1;
    return {
      id: row.id,
      name: row.name,
      projectId: row.project_id,
      parentId: row.parent_id,
      isPublic: row.is_public === 1,
      isSnapshot,
      // A row without origin was written by another program after migration: assume today's uid.
      cephName: row.ceph_name ?? `${opts.uid}img${row.id}`,
      kind: imageKind(row.parent_id, isSnapshot),
    };
  };

  const toExport = (row: ExportRow): ExportRecord => {
    const access: ExportRecord["access"] = {
      initiators: JSON.parse(row.initiators) as ExportAccess["initiators"],
    };
    if (row.chap_user !== null) access.chapUser = row.chap_user;
    return {
      imageId: row.image_id,
      target: { name: row.target_name, portal: row.portal, port: row.port, lun: row.lun },
      access,
    };
  };

  const toProvisioning = (row: ProvisioningRow): Provisioning => ({
    node: row.node,
    project: row.project,
    disk: row.disk,
    diskId: row.disk_id,
    nic: row.nic,
    mac: row.mac as MacAddress,
    firmware: row.firmware as Firmware,
    target: { name: row.target_name, portal: row.portal, port: row.port, lun: row.lun },
    network: row.network,
    createdAt: row.created_at,
  });

  const requireImage = (id: number): ImageRow => {
    const row = s.imageById.get(id) as ImageRow | undefined;
    if (!row) throw storeError("not_found", `image ${id} does not exist`, { imageId: id });
    return row;
  };

  const highWater = (): number =>
    Number((s.getMeta.get("image_id_high_water") as { value: string } | undefined)?.value ?? 0);

  let closed = false;

  const store: SqliteStore = {
    path: opts.path,
    warnings,

    createProject(name, id) {
      const valid = parseInput(ProjectName, name, "project", "store");
      return tx(() => {
        if (s.projectByName.get(valid)) {
          throw storeError("already_exists", `project ${valid} already exists`, { project: valid });
        }
        if (id !== undefined && s.projectById.get(id)) {
          throw storeError("already_exists", `project id ${id} is taken`, { projectId: id });
        }
        const info = s.insertProject.run(id ?? null, valid);
        return { id: Number(info.lastInsertRowid), name: valid };
      });
    },
    getProject: (name) => s.projectByName.get(name) as Project | undefined,
    getProjectById: (id) => s.projectById.get(id) as Project | undefined,
    listProjects: () => s.projects.all() as Project[],
    deleteProject(id) {
      tx(() => {
        const project = s.projectById.get(id) as Project | undefined;
        if (!project) return;
        const images = (s.imagesInProject.get(id) as { n: number }).n;
        const nodes = (s.provisioningsOfProject.get(project.name) as { n: number }).n;
        if (images > 0 || nodes > 0) {
          throw storeError(
            "busy",
            `project ${project.name} still has ${images} image(s) and ${nodes} provisioned node(s); remove them first`,
            { project: project.name, images, nodes },
          );
        }
        s.deleteProject.run(id);
      });
    },

    insertImage(image) {
      return tx(() => {
        if (!s.projectById.get(image.projectId)) {
          throw storeError("not_found", `project ${image.projectId} does not exist`, {
            projectId: image.projectId,
          });
        }
        if (image.parentId !== null && !s.imageById.get(image.parentId)) {
          throw storeError("not_found", `parent image ${image.parentId} does not exist`, {
            parentId: image.parentId,
          });
        }
        if (s.imageByName.get(image.projectId, image.name)) {
          throw storeError("already_exists", `image ${image.name} already exists in the project`, {
            image: image.name,
            projectId: image.projectId,
          });
        }
        // Ids are never reused, even after the highest is deleted, so a new image can never take
        // the RBD name of an old one that is still in the pool (the original reused them).
        let id = image.id;
        if (id === undefined) id = Math.max((s.maxImageId.get() as { m: number }).m, highWater()) + 1;
        else if (s.imageById.get(id))
          throw storeError("already_exists", `image id ${id} is taken`, { imageId: id });
        s.insertImage.run({
          id,
          name: image.name,
          isPublic: image.isPublic ? 1 : 0,
          isSnapshot: image.isSnapshot ? 1 : 0,
          projectId: image.projectId,
          parentId: image.parentId,
        });
        const cephName = typeof image.cephName === "function" ? image.cephName(id) : image.cephName;
        s.insertOrigin.run(id, opts.uid, opts.snapshotName, cephName, nowIso());
        s.setMeta.run("image_id_high_water", String(Math.max(id, highWater())));
        return toImage(requireImage(id));
      });
    },
    getImage(projectId, name) {
      const row = s.imageByName.get(projectId, name) as ImageRow | undefined;
      return row && toImage(row);
    },
    getImageById(id) {
      const row = s.imageById.get(id) as ImageRow | undefined;
      return row && toImage(row);
    },
    listImages(projectId) {
      const rows = (projectId === undefined ? s.images.all() : s.imagesOf.all(projectId)) as ImageRow[];
      return rows.map(toImage);
    },
    listChildren(imageId) {
      return (s.childRows.all(imageId) as ImageRow[]).map(toImage);
    },
    updateImage(id, patch: ImagePatch) {
      return tx(() => {
        const row = requireImage(id);
        const next = {
          name: patch.name ?? row.name,
          projectId: patch.projectId ?? row.project_id,
          parentId: patch.parentId === undefined ? row.parent_id : patch.parentId,
          isPublic: patch.isPublic ?? row.is_public === 1,
          isSnapshot: patch.isSnapshot ?? row.is_snapshot === 1,
        };
        if (!s.projectById.get(next.projectId)) {
          throw storeError("not_found", `project ${next.projectId} does not exist`, {
            projectId: next.projectId,
          });
        }
        if (next.parentId !== null && (next.parentId === id || !s.imageById.get(next.parentId))) {
          throw storeError("invalid_input", `image ${next.parentId} cannot be the parent of image ${id}`, {
            parentId: next.parentId,
          });
        }
        const clash = s.imageByName.get(next.projectId, next.name) as ImageRow | undefined;
        if (clash && clash.id !== id) {
          throw storeError("already_exists", `image ${next.name} already exists in the project`, {
            image: next.name,
          });
        }
        s.updateImage.run(
          next.name,
          next.projectId,
          next.parentId,
          next.isPublic ? 1 : 0,
          next.isSnapshot ? 1 : 0,
          id,
        );
        return toImage(requireImage(id));
      });
    },
    deleteImage(id) {
      tx(() => {
        const row = s.imageById.get(id) as ImageRow | undefined;
        if (!row) return; // idempotent, so an undo may run twice
        const children = s.children.all(id) as { id: number; name: string; is_snapshot: number }[];
        const clones = children.filter((c) => c.is_snapshot !== 1);
        if (clones.length > 0) {
          throw storeError(
            "busy",
            `image ${row.name} has clones (${clones.map((c) => c.name).join(", ")}); delete them first`,
            { image: row.name, clones: clones.map((c) => c.name) },
          );
        }
        const exported = s.export.get(id) as ExportRow | undefined;
        if (exported) {
          throw storeError(
            "busy",
            `image ${row.name} is exported as ${exported.target_name}; unexport it first`,
            {
              image: row.name,
              target: exported.target_name,
            },
          );
        }
        const user = s.provisioningByDisk.get(id) as ProvisioningRow | undefined;
        if (user) {
          throw storeError("busy", `image ${row.name} boots node ${user.node}; deprovision it first`, {
            image: row.name,
            node: user.node,
          });
        }
        // The original's rule: snapshot children become independent base images.
        s.detachChildren.run(id);
        s.deleteImage.run(id);
      });
    },
    imageOrigin: (imageId) => s.origin.get(imageId) as ImageOrigin | undefined,

    putExport(record) {
      tx(() => {
        requireImage(record.imageId);
        const other = s.exportByTarget.get(record.target.name) as { image_id: number } | undefined;
        if (other && other.image_id !== record.imageId) {
          throw storeError(
            "already_exists",
            `target ${record.target.name} already serves image ${other.image_id}`,
            {
              target: record.target.name,
            },
          );
        }
        s.putExport.run({
          imageId: record.imageId,
          targetName: record.target.name,
          portal: record.target.portal,
          port: record.target.port,
          lun: record.target.lun,
          // Only the initiators and the CHAP user: the secret stays in the config.
          initiators: JSON.stringify(record.access.initiators),
          chapUser: record.access.chapUser ?? null,
          createdAt: nowIso(),
        });
      });
    },
    getExport(imageId) {
      const row = s.export.get(imageId) as ExportRow | undefined;
      return row && toExport(row);
    },
    listExports: () => (s.exports.all() as ExportRow[]).map(toExport),
    deleteExport(imageId) {
      tx(() => s.deleteExport.run(imageId));
    },

    putProvisioning(record) {
      tx(() => {
        requireImage(record.diskId);
        const other = s.provisioningByDisk.get(record.diskId) as ProvisioningRow | undefined;
        if (other && other.node !== record.node) {
          throw storeError("conflict", `disk ${record.disk} already boots node ${other.node}`, {
            disk: record.disk,
            node: other.node,
          });
        }
        s.putProvisioning.run({
          node: record.node,
          project: record.project,
          disk: record.disk,
          diskId: record.diskId,
          nic: record.nic,
          mac: record.mac,
          firmware: record.firmware,
          targetName: record.target.name,
          portal: record.target.portal,
          port: record.target.port,
          lun: record.target.lun,
          network: record.network,
          createdAt: record.createdAt,
        });
      });
    },
    getProvisioning(node) {
      const row = s.provisioning.get(node) as ProvisioningRow | undefined;
      return row && toProvisioning(row);
    },
    getProvisioningByDisk(diskId) {
      const row = s.provisioningByDisk.get(diskId) as ProvisioningRow | undefined;
      return row && toProvisioning(row);
    },
    listProvisionings: () => (s.provisionings.all() as ProvisioningRow[]).map(toProvisioning),
    deleteProvisioning(node) {
      tx(() => s.deleteProvisioning.run(node));
    },

    appendJournal(entry: NewJournalEntry) {
      const at = nowIso();
      const data = JSON.stringify(entry.data ?? {});
      const info = tx(() =>
        s.appendJournal.run({
          operationId: entry.operationId,
          operation: entry.operation,
          step: entry.step,
          status: entry.status,
          data,
          at,
        }),
      );
      return {
        ...entry,
        data: JSON.parse(data) as Record<string, unknown>,
        id: Number(info.lastInsertRowid),
        at,
      };
    },
    listJournal(filter = {}) {
      const rows = s.journal.all({
        operationId: filter.operationId ?? null,
        since: filter.since ?? 0,
      }) as JournalRow[];
      return rows.map(
        (row): JournalEntry => ({
          id: row.id,
          operationId: row.operation_id,
          operation: row.operation,
          step: row.step,
          status: row.status,
          data: JSON.parse(row.data) as Record<string, unknown>,
          at: row.at,
        }),
      );
    },

    tryLock(key, owner: LockOwner, leaseMs) {
      if (!Number.isFinite(leaseMs) || leaseMs <= 0) {
        throw storeError("invalid_input", "invalid leaseMs: must be a positive number of milliseconds");
      }
      return tx(() => {
        const now = Date.now();
        const row = s.lock.get(key) as LockRow | undefined;
        if (row && row.owner_id !== owner.id) {
          const expired = row.expires_at <= now;
          const deadHere = row.host === host && !isPidAlive(row.pid);
          if (!expired && !deadHere) return false;
          logger.warn(
            { key, previous: { owner: row.owner_id, pid: row.pid, host: row.host }, owner: owner.id },
            expired ? "taking over an expired lock" : "taking over the lock of a dead process",
          );
        }
        s.putLock.run({
          key,
          ownerId: owner.id,
          pid: owner.pid,
          host: owner.host,
          now,
          expiresAt: now + leaseMs,
        });
        return true;
      });
    },
    unlock(key, owner) {
      tx(() => s.unlock.run(key, owner.id));
    },
    renewLock(key, owner, leaseMs) {
      const now = Date.now();
      return tx(() => s.renewLock.run(now + leaseMs, key, owner.id, now).changes === 1);
    },
    holdsLock(key, owner) {
      const row = s.lock.get(key) as LockRow | undefined;
      return row !== undefined && row.owner_id === owner.id && row.expires_at > Date.now();
    },
    listLocks() {
      const now = Date.now();
      return (s.locks.all() as LockRow[]).map((row) => ({
        key: row.key,
        owner: { id: row.owner_id, pid: row.pid, host: row.host },
        expiresAt: row.expires_at,
        stale: row.expires_at <= now || (row.host === host && !isPidAlive(row.pid)),
      }));
    },
    breakLock(key, ownerId) {
      tx(() => s.unlock.run(key, ownerId));
    },
    imageIdHighWater() {
      return Math.max((s.maxImageId.get() as { m: number }).m, highWater());
    },

    transaction<T>(fn: () => T): T {
      return tx(fn);
    },
    close() {
      if (closed) return;
      closed = true;
      db.close();
    },
  };
  return store;
}

/**
 * `mkdir -p` one level at a time: Node 20's `mkdirSync(…, { recursive: true })` never returns
 * for a path under /proc, which would hang BMI on a mistyped `[db] path`.
 */
function ensureDir(dir: string): void {
  if (existsSync(dir)) return;
  const parent = dirname(dir);
  if (parent !== dir) ensureDir(parent);
  mkdirSync(dir);
}

/** What an operator can do about an SQLite failure at open: the sentence from SQLITE_FAILURES, else the code. */
function sqliteReason(error: unknown): string {
  const code = (error as { code?: unknown }).code;
  if (typeof code !== "string") return "unexpected error";
  const known = SQLITE_FAILURES.find(([prefix]) => code === prefix || code.startsWith(`${prefix}_`));
  return known ? `${known[2]} (${code})` : code;
}

/** SQLite failures an operator can act on, with what to tell them. */
const SQLITE_FAILURES: [string, ErrorCode, string][] = [
  ["SQLITE_FULL", "unavailable", "the database's disk is full; free space and retry"],
  ["SQLITE_READONLY", "permission_denied", "the database file or its directory is read-only for BMI"],
  ["SQLITE_CORRUPT", "internal", "the database file is corrupt; restore it from a backup"],
  ["SQLITE_NOTADB", "internal", "the database path points at a file that is not an SQLite database"],
  ["SQLITE_IOERR", "unavailable", "the database file could not be read or written (I/O error)"],
  ["SQLITE_CANTOPEN", "unavailable", "the database file cannot be opened"],
];

/** Maps better-sqlite3 errors to BmiErrors; anything else thrown inside a transaction passes through. */
function mapSqliteError(error: unknown): unknown {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === "string" && code.startsWith("SQLITE_")) {
    if (code === "SQLITE_BUSY" || code.startsWith("SQLITE_BUSY_") || code === "SQLITE_LOCKED") {
      // Nothing was written: the caller may run it again (ops retry asynchronously).
      return new BmiError("busy", "the database is locked by another process", {
        subsystem: "store",
        fault: "server",
        details: { sqlite: code, storeLocked: true },
        cause: error,
      });
    }
    if (code === "SQLITE_CONSTRAINT_UNIQUE" || code === "SQLITE_CONSTRAINT_PRIMARYKEY") {
      return storeError("already_exists", "a row with the same key already exists", { sqlite: code }, error);
    }
    if (code === "SQLITE_CONSTRAINT_FOREIGNKEY") {
      return storeError(
        "conflict",
        "the change would leave a row pointing at nothing",
        { sqlite: code },
        error,
      );
    }
    if (code.startsWith("SQLITE_CONSTRAINT")) {
      return storeError("invalid_input", "the row breaks a database constraint", { sqlite: code }, error);
    }
    const known = SQLITE_FAILURES.find(([prefix]) => code.startsWith(prefix));
    if (known) return storeError(known[1], known[2], { sqlite: code }, error);
    return storeError("internal", `database error ${code}`, { sqlite: code }, error);
  }
  if (error instanceof TypeError && /cannot return a promise/i.test(error.message)) {
    return storeError(
      "internal",
      "a store transaction callback must be synchronous (it returned a promise)",
      {},
      error,
    );
  }
  return error;
}
