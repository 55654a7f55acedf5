import type { JournalEntry, JournalRepository } from "../types.js";
import type { SqliteContext, SyncOf } from "./repository.js";

export const JOURNAL_WRITES = ["append"] as const;

interface JournalRow {
  id: number;
  operation_id: string;
  operation: string;
  step: string | null;
  status: string;
  data: string;
  at: string;
}

const toEntry = (row: JournalRow): JournalEntry => ({
  id: row.id,
  operationId: row.operation_id,
  operation: row.operation,
  step: row.step,
  status: row.status,
  data: JSON.parse(row.data) as Record<string, unknown>,
  at: row.at,
});

export function sqliteJournal({ db, now }: SqliteContext): SyncOf<JournalRepository> {
  const s = {
    append: db.prepare(
      "INSERT INTO journal (operation_id, operation, step, status, data, at) VALUES (@operationId, @operation, @step, @status, @data, @at)",
    ),
    list: db.prepare(
      `SELECT * FROM journal WHERE (@operationId IS NULL OR operation_id = @operationId) AND id > @since ORDER BY id`,
    ),
  };
  return {
    append(entry) {
      const at = now();
      const data = JSON.stringify(entry.data ?? {});
      const info = s.append.run({
        operationId: entry.operationId,
        operation: entry.operation,
        step: entry.step,
        status: entry.status,
        data,
        at,
      });
      return {
        ...entry,
        data: JSON.parse(data) as Record<string, unknown>,
        id: Number(info.lastInsertRowid),
        at,
      };
    },
    list(filter = {}) {
      const rows = s.list.all({
        operationId: filter.operationId ?? null,
        since: filter.since ?? 0,
      }) as JournalRow[];
      return rows.map(toEntry);
    },
  };
}
