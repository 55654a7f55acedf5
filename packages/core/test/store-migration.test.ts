import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, describe, expect, it } from "vitest";
import { BmiError, openSqliteStore, type SqliteStore } from "../src/index.js";

const temp = mkdtempSync(join(tmpdir(), "bmi-store-migration-"));
afterAll(() => rmSync(temp, { recursive: true, force: true }));

// The original BMI's schema, as SQLAlchemy 1.x created it for ims/database (spec §5), written out
// by hand here so the test does not trust the store's own copy.
const ORIGINAL_SCHEMA = `
CREATE TABLE project (
	id INTEGER NOT NULL, 
	name VARCHAR NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (name)
);
CREATE TABLE image (
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
);`;

// Before Aug 2018 the project table also had provision_network.
const PRE_2018_PROJECT = `
CREATE TABLE project (
	id INTEGER NOT NULL, 
	name VARCHAR NOT NULL, 
	provision_network VARCHAR NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (name)
);`;

type ImageRow = [
  id: number,
  name: string,
  isPublic: 0 | 1,
  isSnapshot: 0 | 1,
  projectId: number,
  parentId: number | null,
];

const IMAGES: ImageRow[] = [
  [3, "centos7", 0, 0, 1, null], // golden
  [4, "ubuntu", 1, 0, 5, null], // golden, public
  [7, "disk-a", 0, 0, 1, 3], // disk of centos7
  [9, "snap-a", 0, 1, 1, 3], // snapshot of disk-a (parent = the disk's source)
  [12, "lost-disk", 0, 0, 5, 99], // dangling parent: image 99 was deleted by hand
  [15, "lost-snap", 0, 1, 1, 98], // dangling parent on a snapshot
];

/** Writes an original bmi.db with explicit ids, and returns its path. */
function originalDb(name: string, options: { provisionNetwork?: boolean } = {}): string {
  const path = join(temp, name);
  const db = new Database(path);
  // better-sqlite3 enforces foreign keys by default; Python's sqlite3 (the original) did not.
  db.pragma("foreign_keys = OFF");
  if (options.provisionNetwork) {
    db.exec(PRE_2018_PROJECT);
    db.exec(ORIGINAL_SCHEMA.slice(ORIGINAL_SCHEMA.indexOf("CREATE TABLE image")));
    db.prepare("INSERT INTO project (id, name, provision_network) VALUES (?, ?, ?)").run(
      1,
      "bmi_infra",
      "bmi_prov",
    );
    db.prepare("INSERT INTO project (id, name, provision_network) VALUES (?, ?, ?)").run(5, "p2", "net5");
  } else {
    db.exec(ORIGINAL_SCHEMA);
    db.prepare("INSERT INTO project (id, name) VALUES (?, ?)").run(1, "bmi_infra");
    db.prepare("INSERT INTO project (id, name) VALUES (?, ?)").run(5, "p2");
  }
  const insert = db.prepare(
    "INSERT INTO image (id, name, is_public, is_snapshot, project_id, parent_id) VALUES (?, ?, ?, ?, ?, ?)",
  );
  for (const row of IMAGES) insert.run(...row);
  db.close();
  return path;
}

function dump(path: string) {
  const db = new Database(path, { readonly: true });
  try {
    return {
      schema: db.prepare("SELECT type, name, sql FROM sqlite_master ORDER BY name").all(),
      version: db.pragma("user_version", { simple: true }),
      project: db.prepare("SELECT * FROM project ORDER BY id").all(),
      image: db.prepare("SELECT * FROM image ORDER BY id").all(),
      origin: db
        .prepare("SELECT image_id, uid, snapshot_name, ceph_name FROM image_origin ORDER BY image_id")
        .all(),
      journal: db.prepare("SELECT * FROM journal ORDER BY id").all(),
      meta: db.prepare("SELECT * FROM bmi_meta ORDER BY key").all(),
    };
  } finally {
    db.close();
  }
}

const open = (path: string, uid = "1", snapshotName = "bmi_created_snapshot"): SqliteStore =>
  openSqliteStore({ create: true, path, uid, snapshotName });

describe("opening an original bmi.db", () => {
  it("migrates it forward keeping every row, and keeps the original tables' DDL", async () => {
    const path = originalDb("original.db");
    const before = new Database(path, { readonly: true });
    const originalSql = before
      .prepare("SELECT name, sql FROM sqlite_master WHERE type = 'table' ORDER BY name")
      .all();
    before.close();

    const store = open(path);
    try {
      expect(await store.projects.list()).toEqual([
        { id: 1, name: "bmi_infra" },
        { id: 5, name: "p2" },
      ]);
      const images = await store.images.list();
      expect(
        images.map((i) => [i.id, i.name, i.isPublic ? 1 : 0, i.isSnapshot ? 1 : 0, i.projectId]),
      ).toEqual(IMAGES.map((row) => row.slice(0, 5)));
      expect(images.map((i) => [i.name, i.kind, i.cephName])).toEqual([
        ["centos7", "golden", "1img3"],
        ["ubuntu", "golden", "1img4"],
        ["disk-a", "disk", "1img7"],
        ["snap-a", "snapshot", "1img9"],
        ["lost-disk", "golden", "1img12"],
        ["lost-snap", "snapshot", "1img15"],
      ]);
      expect((await store.images.get(1, "disk-a"))?.parentId).toBe(3);
      expect(await store.images.origin(7)).toEqual({
        uid: "1",
        snapshotName: "bmi_created_snapshot",
        cephName: "1img7",
      });
    } finally {
      await store.close();
    }

    const after = dump(path);
    // The original two tables are untouched (an old BMI could still read them).
    for (const table of originalSql)
      expect(after.schema).toContainEqual({ type: "table", ...(table as object) });
    expect(JSON.stringify(after.schema)).toContain(
      "CONSTRAINT _project_id_image_name_unique_constraint UNIQUE (project_id, name)",
    );
    expect(after.version).toBe(1);
  });

  it("nulls dangling parent ids with a warning and records the old values in the journal", async () => {
    const path = originalDb("dangling.db");
    const store = open(path);
    try {
      expect((await store.images.getById(12))?.parentId).toBeNull();
      expect((await store.images.getById(15))?.parentId).toBeNull();
      expect((await store.images.getById(7))?.parentId).toBe(3); // healthy rows keep theirs
      expect(
        store.warnings.some((w) => w.startsWith("2 image row(s) pointed at a parent that no longer exists")),
      ).toBe(true);
      const fix = await store.journal.list({ operationId: "migrate-v1" });
      expect(fix).toHaveLength(1);
      expect(fix[0]).toMatchObject({
        operation: "migrate",
        step: "null dangling image.parent_id",
        status: "finished",
      });
      expect(fix[0]?.data.images).toEqual([
        { id: 12, name: "lost-disk", parentId: 99 },
        { id: 15, name: "lost-snap", parentId: 98 },
      ]);
    } finally {
      await store.close();
    }
  });

  it("is usable afterwards, with foreign keys enforced and ids continuing after the highest", async () => {
    const path = originalDb("usable.db");
    const store = open(path);
    try {
      const disk = await store.images.insert({
        name: "disk-b",
        projectId: 1,
        parentId: 3,
        isPublic: false,
        isSnapshot: false,
        cephName: (id) => `1img${id}`,
      });
      expect(disk).toMatchObject({ id: 16, cephName: "1img16", kind: "disk" });
      // the unique constraint of the original still holds
      await expect(
        store.images.insert({
          name: "disk-a",
          projectId: 1,
          parentId: 3,
          isPublic: false,
          isSnapshot: false,
          cephName: "x",
        }),
      ).rejects.toThrow(expect.objectContaining({ code: "already_exists" }));
      await expect(store.projects.delete(1)).rejects.toThrow(expect.objectContaining({ code: "busy" }));
      // COR-12: FK enforcement is on for the connection the store uses.
      const db = new Database(path);
      db.pragma("foreign_keys = ON");
      expect(() =>
        db
          .prepare(
            "INSERT INTO image (id, name, is_public, is_snapshot, project_id, parent_id) VALUES (50, 'x', 0, 0, 1, 777)",
          )
          .run(),
      ).toThrow(/FOREIGN KEY/);
      db.close();
    } finally {
      await store.close();
    }
  });

  it("does nothing when migrated twice", async () => {
    const path = originalDb("twice.db");
    await open(path).close();
    const first = dump(path);
    const second = open(path);
    expect(second.warnings).toEqual([]);
    await second.close();
    expect(dump(path)).toEqual(first);
  });

  it("drops the pre-2018 provision_network column, keeping the rows and the values in the journal", async () => {
    const path = originalDb("pre2018.db", { provisionNetwork: true });
    const store = open(path);
    try {
      expect(await store.projects.list()).toEqual([
        { id: 1, name: "bmi_infra" },
        { id: 5, name: "p2" },
      ]);
      expect(await store.images.list()).toHaveLength(IMAGES.length);
      // the documented bootstrap fails on the old table; a plain two-column insert works now
      expect(await store.projects.create("p3")).toEqual({ id: 6, name: "p3" });
      const entry = (await store.journal.list()).find((e) => e.step === "drop project.provision_network");
      expect(entry?.data.projects).toEqual([
        { id: 1, name: "bmi_infra", provision_network: "bmi_prov" },
        { id: 5, name: "p2", provision_network: "net5" },
      ]);
    } finally {
      await store.close();
    }
    expect(JSON.stringify(dump(path).schema)).not.toContain("provision_network");
  });

  it("keeps images of a project deleted by hand under a placeholder project", async () => {
    const path = originalDb("orphans.db");
    const db = new Database(path);
    db.pragma("foreign_keys = OFF");
    db.prepare("DELETE FROM project WHERE id = 5").run();
    db.close();
    const store = open(path);
    try {
      expect(await store.projects.getById(5)).toEqual({ id: 5, name: "_orphaned_project_5" });
      expect((await store.images.list(5)).map((i) => i.name)).toEqual(["ubuntu", "lost-disk"]);
    } finally {
      await store.close();
    }
  });

  it("keeps each image's uid and snapshot when the config changes them (COR-10)", async () => {
    const path = originalDb("uid-change.db");
    await open(path, "1", "bmi_created_snapshot").close();
    const store = open(path, "7", "bmi-created-snapshot");
    try {
      expect(store.warnings).toHaveLength(2);
      expect(store.warnings[0]).toContain("[bmi] uid is 7, but this database was created with 1");
      expect((await store.images.getById(3))?.cephName).toBe("1img3");
      expect(await store.images.origin(3)).toEqual({
        uid: "1",
        snapshotName: "bmi_created_snapshot",
        cephName: "1img3",
      });
      const fresh = await store.images.insert({
        name: "new",
        projectId: 1,
        parentId: null,
        isPublic: false,
        isSnapshot: false,
        cephName: (id) => `7img${id}`,
      });
      expect(await store.images.origin(fresh.id)).toEqual({
        uid: "7",
        snapshotName: "bmi-created-snapshot",
        cephName: "7img16",
      });
    } finally {
      await store.close();
    }
  });

  it("refuses a database from a newer BMI, and a file that is not a BMI database", () => {
    const newer = join(temp, "newer.db");
    const db = new Database(newer);
    db.pragma("user_version = 99");
    db.close();
    expect(() => open(newer)).toThrow(expect.objectContaining({ code: "unsupported", subsystem: "store" }));

    const foreign = join(temp, "foreign.db");
    const other = new Database(foreign);
    other.exec("CREATE TABLE image (id INTEGER PRIMARY KEY, url TEXT)");
    other.close();
    expect(() => open(foreign)).toThrow(/image table has no name column/);
  });

  it("creates a new database with the original DDL for project and image", async () => {
    const path = join(temp, "new", "bmi.db");
    await open(path).close();
    const { schema } = dump(path);
    const sqlOf = (name: string) =>
      (schema.find((t) => (t as { name: string }).name === name) as { sql: string } | undefined)?.sql;
    const original = new Database(":memory:");
    original.exec(ORIGINAL_SCHEMA);
    const expected = original.prepare("SELECT name, sql FROM sqlite_master WHERE type = 'table'").all() as {
      name: string;
      sql: string;
    }[];
    original.close();
    for (const { name, sql } of expected) expect(sqlOf(name)).toBe(sql);
  });

  it("reports a file it cannot open as a store error naming the path", () => {
    const notADir = join(temp, "plain-file");
    writeFileSync(notADir, "");
    const path = join(notADir, "bmi.db");
    try {
      open(path);
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(BmiError);
      expect((error as BmiError).subsystem).toBe("store");
      expect((error as BmiError).message).toBe(`cannot open the database ${path}`);
    }
  });
});
