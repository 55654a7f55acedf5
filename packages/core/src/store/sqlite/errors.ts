import { BmiError, type ErrorCode } from "../../errors/index.js";

export const storeError = (
  code: ErrorCode,
  message: string,
  details: Record<string, unknown> = {},
  cause?: unknown,
) => new BmiError(code, message, { subsystem: "store", details, cause });

/** What an operator can do about an SQLite failure at open: the sentence from SQLITE_FAILURES, else the code. */
export function sqliteReason(error: unknown): string {
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

const isBusy = (code: string) =>
  code === "SQLITE_BUSY" || code.startsWith("SQLITE_BUSY_") || code === "SQLITE_LOCKED";

/** Maps better-sqlite3 errors to BmiErrors; anything else thrown inside a transaction passes through. */
export function mapSqliteError(error: unknown): unknown {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code !== "string" || !code.startsWith("SQLITE_")) return error;
  if (isBusy(code)) {
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
