import type { Database } from "better-sqlite3";
import { BmiError } from "../../errors/index.js";

/**
 * The original BMI's tables, exactly as SQLAlchemy created them (spec §5), so an original `bmi.db`
 * and a new one have the same `project` and `image`, and an old BMI could still read them.
 */
export const ORIGINAL_PROJECT_DDL = `CREATE TABLE project (
	id INTEGER NOT NULL, 
	name VARCHAR NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (name)
)`;

export const ORIGINAL_IMAGE_DDL = `CREATE TABLE image (
	id INTEGER NOT NULL, 
	name VARCHAR NOT NULL, 
	is_public BOOLEAN NOT NULL, 
	is_snapshot BOOLEAN NOT NULL, 
	project_id INTEGER NOT NULL, 
	parent_id INTEGER, 
	PRIMARY KEY (id), 
	CONSTRAINT _project_id_image_name_unique_constraint UNIQUE (project_id, name), 
	CHECK (is_public IN (0, 1)), 
	CHECK (is_snapshot IN (0, 1)), 
	FOREIGN KEY(project_id) REFERENCES project (id), 
	FOREIGN KEY(parent_id) REFERENCES image (id)
)`;

/** Tables the original did not have. Added beside, never inside, the original two (compatibility). */
const NEW_TABLES_V1 = [
  // Key/value facts about the store: the uid and S it was created with, the image id high-water mark.
  `CREATE TABLE bmi_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)`,
  // COR-10: the uid, S and RBD name each image was created with, so changing [bmi] uid or
  // snapshot in the config cannot silently orphan existing images.
  `CREATE TABLE image_origin (
    image_id INTEGER PRIMARY KEY REFERENCES image (id) ON DELETE CASCADE,
    uid TEXT NOT NULL,
    snapshot_name TEXT NOT NULL,
    ceph_name TEXT NOT NULL,
    created_at TEXT NOT NULL
  )`,
  // A disk's (or mounted image's) iSCSI target; access rules without the CHAP secret.
  `CREATE TABLE "export" (
    image_id INTEGER PRIMARY KEY REFERENCES image (id),
    target_name TEXT NOT NULL UNIQUE,
    portal TEXT NOT NULL,
    port INTEGER NOT NULL,
    lun INTEGER NOT NULL,
    initiators TEXT NOT NULL,
    chap_user TEXT,
    created_at TEXT NOT NULL
  )`,
  // OPS-1: which node boots which disk; UNIQUE(disk_id) is CON-2 (a disk serves one node).
  `CREATE TABLE provisioning (
    node TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    disk TEXT NOT NULL,
    disk_id INTEGER NOT NULL UNIQUE REFERENCES image (id),
    nic TEXT NOT NULL,
    mac TEXT NOT NULL,
    firmware TEXT NOT NULL CHECK (firmware IN ('bios', 'uefi')),
    target_name TEXT NOT NULL,
    portal TEXT NOT NULL,
    port INTEGER NOT NULL,
    lun INTEGER NOT NULL,
    network TEXT,
    created_at TEXT NOT NULL
  )`,
  `CREATE TABLE journal (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    operation_id TEXT NOT NULL,
    operation TEXT NOT NULL,
    step TEXT,
    status TEXT NOT NULL,
    data TEXT NOT NULL,
    at TEXT NOT NULL
  )`,
  `CREATE INDEX journal_operation_id ON journal (operation_id)`,
  // Leases shared by every process on this database file (times in ms since the epoch).
  `CREATE TABLE "lock" (
    key TEXT PRIMARY KEY,
    owner_id TEXT NOT NULL,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    acquired_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
  )`,
];

export const SCHEMA_VERSION = 1;

export interface MigrationContext {
  uid: string;
  snapshotName: string;
  now: () => string;
  warn: (message: string, data?: Record<string, unknown>) => void;
}

const tableNames = (db: Database): Set<string> =>
  new Set(
    (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as { name: string }[]).map(
      (r) => r.name,
    ),
  );

const columnsOf = (db: Database, table: string): Set<string> =>
  new Set((db.pragma(`table_info(${table})`) as { name: string }[]).map((c) => c.name));

/**
 * Brings the database to {@link SCHEMA_VERSION} (`PRAGMA user_version`; the original never set it,
 * so an original `bmi.db` is version 0). Runs in one IMMEDIATE transaction with foreign keys off
 * (SQLite cannot toggle them inside one), re-reads the version inside it so two processes opening
 * one file migrate once, and ends with `PRAGMA foreign_key_check`, so enforcement (COR-12) starts
 * from a consistent database.
 */
export function migrate(db: Database, ctx: MigrationContext): void {
  const current = db.pragma("user_version", { simple: true }) as number;
  if (current === SCHEMA_VERSION) return;
  if (current > SCHEMA_VERSION) {
    throw new BmiError(
      "unsupported",
      `the database schema is version ${current}, newer than this BMI supports (${SCHEMA_VERSION}); upgrade BMI`,
      { subsystem: "store", details: { version: current, supported: SCHEMA_VERSION } },
    );
  }
  db.pragma("foreign_keys = OFF");
  try {
    db.transaction(() => {
      const version = db.pragma("user_version", { simple: true }) as number;
      if (version === 0) migrateToV1(db, ctx);
      const violations = db.pragma("foreign_key_check") as unknown[];
      if (violations.length > 0) {
        throw new BmiError("internal", `migration left ${violations.length} foreign key violations`, {
          subsystem: "store",
          details: { violations },
        });
      }
      db.pragma(`user_version = ${SCHEMA_VERSION}`);
    }).immediate();
  } finally {
    db.pragma("foreign_keys = ON");
  }
}

function migrateToV1(db: Database, ctx: MigrationContext): void {
  const tables = tableNames(db);
  const fixes: { step: string; data: Record<string, unknown> }[] = [];

  if (!tables.has("project")) db.exec(ORIGINAL_PROJECT_DDL);
  else {
    const columns = columnsOf(db, "project");
    for (const required of ["id", "name"]) requireColumn(columns, "project", required);
    if (columns.has("provision_network")) {
      // The pre-Aug-2018 column (NOT NULL) would make every insert fail; its values are kept in
      // the journal, since nothing reads them any more.
      const values = db.prepare("SELECT id, name, provision_network FROM project ORDER BY id").all();
      db.exec("ALTER TABLE project DROP COLUMN provision_network");
      fixes.push({ step: "drop project.provision_network", data: { projects: values } });
      ctx.warn("dropped the obsolete project.provision_network column; its values are in the journal", {
        projects: values.length,
      });
    }
  }
  if (!tables.has("image")) db.exec(ORIGINAL_IMAGE_DDL);
  else {
    const columns = columnsOf(db, "image");
    for (const required of ["id", "name", "is_public", "is_snapshot", "project_id", "parent_id"]) {
      requireColumn(columns, "image", required);
    }
  }
  for (const ddl of NEW_TABLES_V1) db.exec(ddl);

  // The original never enforced foreign keys, so old databases can point at deleted rows. A
  // parent that is gone cannot be a clone source any more; nulling it (recorded in the journal)
  // is what the original itself did to children of a deleted image, and it lets enforcement start
  // clean, instead of deferring checks that any later write to the row would trip over.
  const danglingParents = db
    .prepare(
      "SELECT id, name, parent_id AS parentId FROM image WHERE parent_id IS NOT NULL AND parent_id NOT IN (SELECT id FROM image) ORDER BY id",
    )
    .all() as { id: number; name: string; parentId: number }[];
  if (danglingParents.length > 0) {
    db.prepare(
      "UPDATE image SET parent_id = NULL WHERE parent_id IS NOT NULL AND parent_id NOT IN (SELECT id FROM image)",
    ).run();
    fixes.push({ step: "null dangling image.parent_id", data: { images: danglingParents } });
    ctx.warn(
      `${danglingParents.length} image row(s) pointed at a parent that no longer exists; their parent_id is now NULL (old values in the journal)`,
      { images: danglingParents.map((i) => i.id) },
    );
  }
  // Images of a project row deleted by hand: keep them, under a placeholder project.
  const danglingProjects = db
    .prepare("SELECT DISTINCT project_id AS id FROM image WHERE project_id NOT IN (SELECT id FROM project)")
    .all() as { id: number }[];
  for (const { id } of danglingProjects) {
    const name = `_orphaned_project_${id}`;
    db.prepare("INSERT INTO project (id, name) VALUES (?, ?)").run(id, name);
    fixes.push({ step: "recreate missing project", data: { projectId: id, name } });
    ctx.warn(`images referred to a missing project ${id}; recreated it as ${name}`, { projectId: id });
  }

  // COR-10: rows from the original get the uid and S this store is opened with.
  const now = ctx.now();
  db.prepare(
    `INSERT INTO image_origin (image_id, uid, snapshot_name, ceph_name, created_at)
     SELECT id, @uid, @snapshot, @uid || 'img' || id, @now FROM image`,
  ).run({ uid: ctx.uid, snapshot: ctx.snapshotName, now });
  const maxId = (db.prepare("SELECT COALESCE(MAX(id), 0) AS m FROM image").get() as { m: number }).m;
  const meta = db.prepare("INSERT INTO bmi_meta (key, value) VALUES (?, ?)");
  meta.run("uid", ctx.uid);
  meta.run("snapshot_name", ctx.snapshotName);
  meta.run("image_id_high_water", String(maxId));
  meta.run("created_at", now);

  const journal = db.prepare(
    "INSERT INTO journal (operation_id, operation, step, status, data, at) VALUES (?, 'migrate', ?, 'finished', ?, ?)",
  );
  for (const fix of fixes) journal.run("migrate-v1", fix.step, JSON.stringify(fix.data), now);
}

function requireColumn(columns: Set<string>, table: string, column: string): void {
  if (!columns.has(column)) {
    throw new BmiError(
      "unsupported",
      `the database's ${table} table has no ${column} column; it is not a BMI database`,
      {
        subsystem: "store",
        details: { table, column },
      },
    );
  }
}
