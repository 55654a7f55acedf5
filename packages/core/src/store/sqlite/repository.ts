import type Database from "better-sqlite3";
import type { Logger } from "../../log/index.js";
import type { Exec } from "./transactions.js";

/** What every SQLite repository is built on. */
export interface SqliteContext {
  db: Database.Database;
  /** `[bmi] uid` and S, recorded with each new image. */
  uid: string;
  snapshotName: string;
  /** This host's name, for lock ownership. */
  host: string;
  logger: Logger;
  now: () => string;
}

/** A repository's methods as the synchronous functions that implement them on better-sqlite3. */
export type SyncOf<R> = {
  [K in keyof R]: R[K] extends (...args: infer A) => Promise<infer T> ? (...args: A) => T : never;
};

/**
 * The async repository over its synchronous implementation: each method through `exec`, the
 * ones in `writes` in a transaction of their own.
 */
export function bindRepository<R>(sync: SyncOf<R>, exec: Exec, writes: readonly (keyof R)[]): R {
  const bound: Record<string, unknown> = {};
  for (const [name, fn] of Object.entries(sync) as [keyof R & string, (...args: unknown[]) => unknown][]) {
    const mode = writes.includes(name) ? exec.write : exec.read;
    bound[name] = (...args: unknown[]) => mode(() => fn(...args));
  }
  return bound as R;
}
