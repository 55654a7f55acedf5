import { existsSync, mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname } from "node:path";
import type Database from "better-sqlite3";
import { BmiError } from "../../errors/index.js";
import { sqliteReason, storeError } from "./errors.js";
import { type MigrationContext, migrate } from "./schema.js";

export interface ConnectionOptions {
  path: string;
  create?: boolean | undefined;
  busyTimeoutMs?: number | undefined;
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
 * Opens the database file (or `:memory:`) and brings it to the current schema: WAL, a busy
 * timeout, foreign keys on, `PRAGMA user_version` migrations. A missing file is `not_found`
 * unless `create`.
 */
export function openConnection(opts: ConnectionOptions, migration: MigrationContext): Database.Database {
  const onDisk = opts.path !== ":memory:";
  if (onDisk && !opts.create && !existsSync(opts.path)) {
    throw storeError(
      "not_found",
      `the database ${opts.path} does not exist; check [db] path, or create it with \`bmi db init\``,
      { path: opts.path },
    );
  }
  let db: Database.Database;
  try {
    if (onDisk) ensureDir(dirname(opts.path));
    db = new (loadBetterSqlite())(opts.path, { fileMustExist: onDisk && !opts.create });
  } catch (error) {
    throw storeError("unavailable", `cannot open the database ${opts.path}`, { path: opts.path }, error);
  }
  try {
    db.pragma(`busy_timeout = ${opts.busyTimeoutMs ?? 20}`);
    if (onDisk) db.pragma("journal_mode = WAL");
    // With WAL, NORMAL syncs at checkpoints, not per commit: a commit survives a crash of the
    // process (what we need: a SIGKILLed batch leaves a consistent journal), only a power loss
    // may roll back the last ones. FULL would fsync every per-step journal row.
    db.pragma("synchronous = NORMAL");
    migrate(db, migration);
    db.pragma("foreign_keys = ON");
    return db;
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
}

/** Warns when `[bmi] uid` or S differ from what the database was created with (COR-10). */
export function checkCreatedWith(
  db: Database.Database,
  configured: { uid: string; snapshotName: string },
  warn: MigrationContext["warn"],
): void {
  const meta = db.prepare("SELECT value FROM bmi_meta WHERE key = ?");
  for (const [key, now, what] of [
    ["uid", configured.uid, "[bmi] uid"],
    ["snapshot_name", configured.snapshotName, "[bmi] snapshot"],
  ] as const) {
    const then = (meta.get(key) as { value: string } | undefined)?.value;
    if (then !== undefined && then !== now) {
      warn(
        `${what} is ${now}, but this database was created with ${then}; existing images keep the names they were created with`,
        { key, created: then, configured: now },
      );
    }
  }
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
