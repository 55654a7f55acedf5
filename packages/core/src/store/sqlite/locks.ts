import { readFileSync } from "node:fs";
import type { LockRepository } from "../types.js";
import { storeError } from "./errors.js";
import type { SqliteContext, SyncOf } from "./repository.js";

export const LOCK_WRITES = ["tryLock", "unlock", "renew", "break"] as const;

interface LockRow {
  key: string;
  owner_id: string;
  pid: number;
  host: string;
  expires_at: number;
}

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

function checkLease(leaseMs: number): void {
  if (!Number.isFinite(leaseMs) || leaseMs <= 0) {
    throw storeError("invalid_input", "invalid leaseMs: must be a positive number of milliseconds");
  }
}

export function sqliteLocks({ db, host, logger }: SqliteContext): SyncOf<LockRepository> {
  const s = {
    get: db.prepare(`SELECT * FROM "lock" WHERE key = ?`),
    put: db.prepare(
      `INSERT INTO "lock" (key, owner_id, pid, host, acquired_at, expires_at) VALUES (@key, @ownerId, @pid, @host, @now, @expiresAt)
       ON CONFLICT (key) DO UPDATE SET owner_id = excluded.owner_id, pid = excluded.pid, host = excluded.host,
         acquired_at = excluded.acquired_at, expires_at = excluded.expires_at`,
    ),
    delete: db.prepare(`DELETE FROM "lock" WHERE key = ? AND owner_id = ?`),
    renew: db.prepare(`UPDATE "lock" SET expires_at = ? WHERE key = ? AND owner_id = ? AND expires_at > ?`),
    all: db.prepare(`SELECT * FROM "lock" ORDER BY key`),
  };
  const deadHere = (row: LockRow) => row.host === host && !isPidAlive(row.pid);
  return {
    tryLock(key, owner, leaseMs) {
      checkLease(leaseMs);
      const now = Date.now();
      const row = s.get.get(key) as LockRow | undefined;
      if (row && row.owner_id !== owner.id) {
        const expired = row.expires_at <= now;
        if (!expired && !deadHere(row)) return false;
        logger.warn(
          { key, previous: { owner: row.owner_id, pid: row.pid, host: row.host }, owner: owner.id },
          expired ? "taking over an expired lock" : "taking over the lock of a dead process",
        );
      }
      s.put.run({ key, ownerId: owner.id, pid: owner.pid, host: owner.host, now, expiresAt: now + leaseMs });
      return true;
    },
    unlock(key, owner) {
      s.delete.run(key, owner.id);
    },
    renew(key, owner, leaseMs) {
      checkLease(leaseMs);
      const now = Date.now();
      return s.renew.run(now + leaseMs, key, owner.id, now).changes === 1;
    },
    holds(key, owner) {
      const row = s.get.get(key) as LockRow | undefined;
      return row !== undefined && row.owner_id === owner.id && row.expires_at > Date.now();
    },
    list() {
      const now = Date.now();
      return (s.all.all() as LockRow[]).map((row) => ({
        key: row.key,
        owner: { id: row.owner_id, pid: row.pid, host: row.host },
        expiresAt: row.expires_at,
        stale: row.expires_at <= now || deadHere(row),
      }));
    },
    break(key, ownerId) {
      s.delete.run(key, ownerId);
    },
  };
}
