import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { SCHEMA_VERSION } from "@bmi/core";
import type Database from "better-sqlite3";

/**
 * Reads a BMI database without changing anything: no file is created (not the database, not its
 * `-wal`/`-shm`), nothing is migrated. Opening it as the store does would do both, and SQLite
 * creates `-wal`/`-shm` even for a read-only connection to a WAL database, so when no other
 * process has it open (no `-wal`) doctor reads an in-memory copy instead.
 */
export async function inspectDatabase(path: string, adminProject: string): Promise<string> {
  if (!existsSync(path)) throw new Error(`the database ${path} does not exist`);
  const db = await openReadOnly(path);
  try {
    const version = db.pragma("user_version", { simple: true }) as number;
    if (version > SCHEMA_VERSION) {
      throw new Error(
        `${path} has schema ${version}, newer than this BMI supports (${SCHEMA_VERSION}): upgrade BMI`,
      );
    }
    const count = (table: string) =>
      (db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;
    const admin = db.prepare("SELECT id FROM project WHERE name = ?").get(adminProject);
    if (!admin) throw new Error(`the admin project ${adminProject} does not exist`);
    const migration =
      version < SCHEMA_VERSION
        ? ` (schema ${version}: the first command that opens it, e.g. \`bmi db init\`, migrates it to ${SCHEMA_VERSION})`
        : "";
    return `${path}: ${count("project")} project(s), ${count("image")} image(s)${migration}`;
  } finally {
    db.close();
  }
}

async function openReadOnly(path: string): Promise<Database.Database> {
  // Loaded here, not at import: only doctor needs the native addon from this package.
  const Sqlite = createRequire(import.meta.url)("better-sqlite3") as typeof Database;
  const live = existsSync(`${path}-wal`);
  if (live && existsSync(`${path}-shm`)) {
    // Another process has it open: its -wal and -shm exist already, and hold the latest commits.
    return new Sqlite(path, { readonly: true, fileMustExist: true });
  }
  if (live)
    throw new Error(
      `${path}-wal is left by a process that stopped; the next command that opens the database recovers it`,
    );
  const image = await readFile(path);
  // Bytes 18-19 say "WAL mode" (2); a copy in memory cannot be in WAL mode, and with no -wal file
  // the main file holds every commit, so the copy reads as a rollback-journal database (1).
  if (image.length >= 20 && image[18] === 2 && image[19] === 2) image.fill(1, 18, 20);
  return new Sqlite(image, { readonly: true });
}
