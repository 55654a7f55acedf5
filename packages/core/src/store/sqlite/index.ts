import { hostname } from "node:os";
import { z } from "zod";
import { RbdSnapshotName, Uid } from "../../domain/names.js";
import { parseInput } from "../../domain/validate.js";
import { type Logger, silentLogger } from "../../log/index.js";
import type { Store, StoreTransaction } from "../types.js";
import { checkCreatedWith, openConnection } from "./connection.js";
import { EXPORT_WRITES, sqliteExports } from "./exports.js";
import { IMAGE_WRITES, sqliteImages } from "./images.js";
import { JOURNAL_WRITES, sqliteJournal } from "./journal.js";
import { LOCK_WRITES, sqliteLocks } from "./locks.js";
import { PROJECT_WRITES, sqliteProjects } from "./projects.js";
import { PROVISIONING_WRITES, sqliteProvisionings } from "./provisionings.js";
import { bindRepository, type SqliteContext } from "./repository.js";
import { createTransactions, type Level, type Transactions } from "./transactions.js";

export { imageKind } from "./images.js";
export { isPidAlive } from "./locks.js";

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
  logger?: Logger | undefined;
  /**
   * How long SQLite itself waits, blocking the event loop, for another process's transaction
   * (`busy_timeout`); default 20 ms. Longer waits are async retries by the operations.
   */
  busyTimeoutMs?: number | undefined;
  /** This host's name for lock ownership; default `os.hostname()`. */
  hostname?: string | undefined;
}

/** The SQLite store: the {@link Store} contract plus what opening it found. */
export interface SqliteStore extends Store {
  readonly path: string;
  /** Problems found while opening (migrated dangling rows, uid/snapshot changed since creation). */
  readonly warnings: readonly string[];
}

const Options = z.object({
  path: z.string().min(1, { error: "must be a file path or :memory:" }),
  uid: Uid,
  snapshotName: RbdSnapshotName,
  create: z.boolean().optional(),
  busyTimeoutMs: z.number().int().min(0).max(600_000).optional(),
  hostname: z.string().min(1).optional(),
});

/**
 * Opens (creating or migrating) a BMI database on better-sqlite3, one module per repository
 * over one connection. An original BMI `bmi.db` opens and is migrated forward keeping every row
 * (COR-12). Opening is synchronous (it fails fast, naming the path); every store call is async.
 */
export function openSqliteStore(options: SqliteStoreOptions): SqliteStore {
  const opts = parseInput(Options, options, "options", "store");
  const logger = (options.logger ?? silentLogger).child({ component: "store" });
  const warnings: string[] = [];
  const warn = (message: string, data: Record<string, unknown> = {}) => {
    warnings.push(message);
    logger.warn(data, message);
  };
  const now = () => new Date().toISOString();
  const db = openConnection(opts, { uid: opts.uid, snapshotName: opts.snapshotName, now, warn });
  checkCreatedWith(db, opts, warn);
  const ctx: SqliteContext = {
    db,
    uid: opts.uid,
    snapshotName: opts.snapshotName,
    host: opts.hostname ?? hostname(),
    logger,
    now,
  };
  const transactions = createTransactions(db);
  const root = handleAt(transactions, syncRepositories(ctx), transactions.root);
  return {
    ...root,
    path: opts.path,
    warnings,
    close: () => transactions.closeWith(() => db.close()),
  };
}

type SyncRepositories = ReturnType<typeof syncRepositories>;

/** Prepared once per connection; every transaction's handle runs the same statements. */
function syncRepositories(ctx: SqliteContext) {
  return {
    projects: sqliteProjects(ctx),
    images: sqliteImages(ctx),
    exports: sqliteExports(ctx),
    provisionings: sqliteProvisionings(ctx),
    journal: sqliteJournal(ctx),
    locks: sqliteLocks(ctx),
  };
}

/** The repositories bound to one level: the connection, or an open transaction. */
function handleAt(transactions: Transactions, sync: SyncRepositories, level: Level): StoreTransaction {
  const exec = transactions.exec(level);
  return {
    projects: bindRepository(sync.projects, exec, PROJECT_WRITES),
    images: bindRepository(sync.images, exec, IMAGE_WRITES),
    exports: bindRepository(sync.exports, exec, EXPORT_WRITES),
    provisionings: bindRepository(sync.provisionings, exec, PROVISIONING_WRITES),
    journal: bindRepository(sync.journal, exec, JOURNAL_WRITES),
    locks: bindRepository(sync.locks, exec, LOCK_WRITES),
    transaction: (fn) => transactions.transaction(level, (inner) => fn(handleAt(transactions, sync, inner))),
  };
}
