import { AsyncLocalStorage } from "node:async_hooks";
import type Database from "better-sqlite3";
import { mapSqliteError, storeError } from "./errors.js";

/** Runs synchronous SQLite work for one repository call, as a promise. */
export interface Exec {
  /** Plain statements (one statement is atomic by itself). */
  read<T>(fn: () => T): Promise<T>;
  /** In a transaction of its own (a savepoint inside an open one), so a failure writes nothing. */
  write<T>(fn: () => T): Promise<T>;
}

/** FIFO mutual exclusion over async sections. */
interface Gate {
  readonly idle: boolean;
  exclusive<T>(fn: () => Promise<T>): Promise<T>;
}

function createGate(): Gate {
  let busy = false;
  const waiting: (() => void)[] = [];
  const release = () => {
    const next = waiting.shift();
    if (next)
      next(); // the gate passes straight to the next section: it stays busy
    else busy = false;
  };
  return {
    get idle() {
      return !busy;
    },
    async exclusive(fn) {
      if (busy) await new Promise<void>((resolve) => waiting.push(resolve));
      else busy = true;
      try {
        return await fn();
      } finally {
        release();
      }
    },
  };
}

/** The connection itself (depth 0), an open transaction (1) or a savepoint in one (2+). */
export interface Level {
  readonly parent: Level | undefined;
  readonly depth: number;
  readonly gate: Gate;
  open: boolean;
}

/**
 * Async transactions over the synchronous better-sqlite3 connection. While `fn(tx)` of one
 * transaction awaits, no other caller's statement may run on the connection (it would join the
 * open transaction): every call waits at the gate of the level it targets, except calls made
 * from inside that level's transaction (found with AsyncLocalStorage), which run in it.
 */
export interface Transactions {
  readonly root: Level;
  exec(level: Level): Exec;
  transaction<T>(level: Level, fn: (inner: Level) => Promise<T>): Promise<T>;
  /** Waits for the running transaction and queued calls, then runs `fn` (closing) last. */
  closeWith(fn: () => void): Promise<void>;
}

const within = (inner: Level, outer: Level): boolean => {
  for (let at: Level | undefined = inner; at; at = at.parent) if (at === outer) return true;
  return false;
};

export function createTransactions(db: Database.Database): Transactions {
  const scope = new AsyncLocalStorage<Level>();
  const root: Level = { parent: undefined, depth: 0, gate: createGate(), open: true };

  /** The level a call on `level`'s handle runs at: the caller's own open transaction if it is inside one. */
  const target = (level: Level): Level => {
    if (!level.open) throw ended(level);
    const current = scope.getStore();
    return current?.open && within(current, level) ? current : level;
  };

  const run = <T>(level: Level, fn: () => T): Promise<T> => {
    try {
      const at = target(level);
      if (at.gate.idle) return Promise.resolve(fn());
      return at.gate.exclusive(async () => fn());
    } catch (error) {
      return Promise.reject(error);
    }
  };

  /** Runs synchronous SQLite work; its failures as the store's errors. */
  const plain = <T>(fn: () => T): T => {
    try {
      return fn();
    } catch (error) {
      throw mapSqliteError(error);
    }
  };
  const atomically = <T>(fn: () => T): T => plain(() => db.transaction(fn).immediate());
  const sql = (statement: string) => plain(() => db.exec(statement));

  async function transaction<T>(level: Level, fn: (inner: Level) => Promise<T>): Promise<T> {
    const parent = target(level);
    return parent.gate.exclusive(async () => {
      const inner: Level = { parent, depth: parent.depth + 1, gate: createGate(), open: true };
      const savepoint = `bmi_tx_${inner.depth}`;
      sql(inner.depth === 1 ? "BEGIN IMMEDIATE" : `SAVEPOINT ${savepoint}`);
      try {
        const result = await scope.run(inner, () => fn(inner));
        // Calls the callback started but did not await still belong to it: let them finish first.
        await inner.gate.exclusive(async () => {
          inner.open = false;
        });
        sql(inner.depth === 1 ? "COMMIT" : `RELEASE ${savepoint}`);
        return result;
      } catch (error) {
        inner.open = false;
        if (db.inTransaction)
          sql(inner.depth === 1 ? "ROLLBACK" : `ROLLBACK TO ${savepoint}; RELEASE ${savepoint}`);
        throw mapSqliteError(error);
      }
    });
  }

  return {
    root,
    exec: (level) => ({
      read: (fn) => run(level, () => plain(fn)),
      write: (fn) => run(level, () => atomically(fn)),
    }),
    transaction,
    closeWith: (fn) =>
      root.gate.exclusive(async () => {
        if (!root.open) return;
        root.open = false;
        fn();
      }),
  };
}

function ended(level: Level) {
  return level.depth === 0
    ? storeError("unavailable", "the store is closed")
    : storeError("internal", "a store transaction was used after it ended; use it only inside its callback");
}
