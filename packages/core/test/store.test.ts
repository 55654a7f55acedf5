import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, afterEach, beforeEach, describe, expect, it } from "vitest";
import { type ExportRecord, type LockOwner, openSqliteStore, type SqliteStore } from "../src/index.js";

// What every store must do is the contract suite (store-contract.test.ts, on a file and on
// :memory:); these are the SQLite store's own cases: its file, its connection, other processes.

const temp = mkdtempSync(join(tmpdir(), "bmi-store-test-"));
afterAll(() => rmSync(temp, { recursive: true, force: true }));

const HOST = hostname();
const me = (id: string): LockOwner => ({ id, pid: process.pid, host: HOST });
const target = (name: string) => ({ name, portal: "127.0.0.1", port: 3260, lun: 1 });

let store: SqliteStore;
beforeEach(() => {
  store = openSqliteStore({ create: true, path: ":memory:", uid: "1", snapshotName: "bmi_created_snapshot" });
});
afterEach(() => store.close());

describe("the SQLite store", () => {
  it("stores an export's access without any CHAP secret", async () => {
    const path = join(temp, "exports.db");
    const file = openSqliteStore({ create: true, path, uid: "1", snapshotName: "s" });
    try {
      const p = await file.projects.create("p1");
      const img = await file.images.insert({
        name: "g",
        projectId: p.id,
        parentId: null,
        isPublic: false,
        isSnapshot: false,
        cephName: "1img1",
      });
      const access = {
        initiators: { addresses: ["10.0.0.5"] },
        chapUser: "bmi",
        chap: { user: "bmi", secret: "topsecret-chap" },
      };
      await file.exports.put({
        imageId: img.id,
        target: target("iqn.2026-11.org.bmi:1img1"),
        access,
      } as ExportRecord);
      expect(await file.exports.get(img.id)).toEqual({
        imageId: img.id,
        target: target("iqn.2026-11.org.bmi:1img1"),
        access: { initiators: { addresses: ["10.0.0.5"] }, chapUser: "bmi" },
      });
      expect(await file.exports.list()).toHaveLength(1);
    } finally {
      await file.close();
    }
    for (const name of readdirSync(temp).filter((n) => n.startsWith("exports.db"))) {
      expect(readFileSync(join(temp, name)).includes("topsecret-chap")).toBe(false);
    }
  });

  it("refuses a transaction handle used after its callback ended", async () => {
    const leaked = await store.transaction(async (tx) => tx);
    await expect(leaked.projects.list()).rejects.toThrow(
      expect.objectContaining({ code: "internal", subsystem: "store" }),
    );
  });

  it("is shared by two store instances on one file (two processes)", async () => {
    const path = join(temp, "shared", "bmi.db");
    const a = openSqliteStore({ create: true, path, uid: "1", snapshotName: "s" });
    const b = openSqliteStore({ create: true, path, uid: "1", snapshotName: "s" });
    try {
      expect(await a.locks.tryLock("node:n1", me("op-a"), 60_000)).toBe(true);
      expect(await b.locks.tryLock("node:n1", me("op-b"), 60_000)).toBe(false);
      await a.locks.unlock("node:n1", me("op-a"));
      expect(await b.locks.tryLock("node:n1", me("op-b"), 60_000)).toBe(true);
      expect(await a.locks.tryLock("node:n1", me("op-a"), 60_000)).toBe(false);
      // and each sees the other's rows
      await b.projects.create("p1");
      expect(await a.projects.get("p1")).toBeDefined();
      await a.journal.append({ operationId: "x", operation: "o", step: null, status: "started", data: {} });
      expect(await b.journal.list({ operationId: "x" })).toHaveLength(1);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it("gives a retryable timeout, not a raw SQLite error, when another process keeps the database locked", async () => {
    const path = join(temp, "busy", "bmi.db");
    const a = openSqliteStore({ create: true, path, uid: "1", snapshotName: "s", busyTimeoutMs: 50 });
    const other = new Database(path);
    try {
      other.exec("BEGIN IMMEDIATE");
      await expect(a.projects.create("p1")).rejects.toThrow(
        expect.objectContaining({ code: "busy", retryable: true, subsystem: "store" }),
      );
      expect(await a.projects.list()).toEqual([]); // readers are not blocked (WAL)
      other.exec("ROLLBACK");
      expect((await a.projects.create("p1")).name).toBe("p1");
    } finally {
      other.close();
      await a.close();
    }
  });
});
