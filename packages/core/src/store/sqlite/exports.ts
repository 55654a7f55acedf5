import type { ExportAccess } from "../../ports/export.js";
import type { ExportRecord, ExportRepository } from "../types.js";
import { storeError } from "./errors.js";
import type { SqliteContext, SyncOf } from "./repository.js";

export const EXPORT_WRITES = ["put", "delete"] as const;

interface ExportRow {
  image_id: number;
  target_name: string;
  portal: string;
  port: number;
  lun: number;
  initiators: string;
  chap_user: string | null;
}

const toExport = (row: ExportRow): ExportRecord => {
  const access: ExportRecord["access"] = {
    initiators: JSON.parse(row.initiators) as ExportAccess["initiators"],
  };
  if (row.chap_user !== null) access.chapUser = row.chap_user;
  return {
    imageId: row.image_id,
    target: { name: row.target_name, portal: row.portal, port: row.port, lun: row.lun },
    access,
  };
};

export function sqliteExports({ db, now }: SqliteContext): SyncOf<ExportRepository> {
  const s = {
    put: db.prepare(
      `INSERT INTO "export" (image_id, target_name, portal, port, lun, initiators, chap_user, created_at)
       VALUES (@imageId, @targetName, @portal, @port, @lun, @initiators, @chapUser, @createdAt)
       ON CONFLICT (image_id) DO UPDATE SET target_name = excluded.target_name, portal = excluded.portal,
         port = excluded.port, lun = excluded.lun, initiators = excluded.initiators, chap_user = excluded.chap_user`,
    ),
    get: db.prepare(`SELECT * FROM "export" WHERE image_id = ?`),
    byTarget: db.prepare(`SELECT image_id FROM "export" WHERE target_name = ?`),
    all: db.prepare(`SELECT * FROM "export" ORDER BY image_id`),
    delete: db.prepare(`DELETE FROM "export" WHERE image_id = ?`),
    image: db.prepare("SELECT id FROM image WHERE id = ?"),
  };
  return {
    put(record) {
      if (!s.image.get(record.imageId)) {
        throw storeError("not_found", `image ${record.imageId} does not exist`, { imageId: record.imageId });
      }
      const other = s.byTarget.get(record.target.name) as { image_id: number } | undefined;
      if (other && other.image_id !== record.imageId) {
        throw storeError(
          "already_exists",
          `target ${record.target.name} already serves image ${other.image_id}`,
          {
            target: record.target.name,
          },
        );
      }
      s.put.run({
        imageId: record.imageId,
        targetName: record.target.name,
        portal: record.target.portal,
        port: record.target.port,
        lun: record.target.lun,
        // Only the initiators and the CHAP user: the secret stays in the config.
        initiators: JSON.stringify(record.access.initiators),
        chapUser: record.access.chapUser ?? null,
        createdAt: now(),
      });
    },
    get(imageId) {
      const row = s.get.get(imageId) as ExportRow | undefined;
      return row && toExport(row);
    },
    list: () => (s.all.all() as ExportRow[]).map(toExport),
    delete(imageId) {
      s.delete.run(imageId);
    },
  };
}
