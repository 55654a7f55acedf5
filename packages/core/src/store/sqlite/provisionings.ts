import type { Firmware, Provisioning } from "../../domain/model.js";
import type { MacAddress } from "../../domain/names.js";
import type { ProvisioningRepository } from "../types.js";
import { storeError } from "./errors.js";
import type { SqliteContext, SyncOf } from "./repository.js";

export const PROVISIONING_WRITES = ["put", "delete"] as const;

interface ProvisioningRow {
  node: string;
  project: string;
  disk: string;
  disk_id: number;
  nic: string;
  mac: string;
  firmware: string;
  target_name: string;
  portal: string;
  port: number;
  lun: number;
  network: string | null;
  created_at: string;
}

const toProvisioning = (row: ProvisioningRow): Provisioning => ({
  node: row.node,
  project: row.project,
  disk: row.disk,
  diskId: row.disk_id,
  nic: row.nic,
  mac: row.mac as MacAddress,
  firmware: row.firmware as Firmware,
  target: { name: row.target_name, portal: row.portal, port: row.port, lun: row.lun },
  network: row.network,
  createdAt: row.created_at,
});

export function sqliteProvisionings({ db }: SqliteContext): SyncOf<ProvisioningRepository> {
  const s = {
    put: db.prepare(
      `INSERT INTO provisioning (node, project, disk, disk_id, nic, mac, firmware, target_name, portal, port, lun, network, created_at)
       VALUES (@node, @project, @disk, @diskId, @nic, @mac, @firmware, @targetName, @portal, @port, @lun, @network, @createdAt)
       ON CONFLICT (node) DO UPDATE SET project = excluded.project, disk = excluded.disk, disk_id = excluded.disk_id,
         nic = excluded.nic, mac = excluded.mac, firmware = excluded.firmware, target_name = excluded.target_name,
         portal = excluded.portal, port = excluded.port, lun = excluded.lun, network = excluded.network,
         created_at = excluded.created_at`,
    ),
    get: db.prepare("SELECT * FROM provisioning WHERE node = ?"),
    byDisk: db.prepare("SELECT * FROM provisioning WHERE disk_id = ?"),
    all: db.prepare("SELECT * FROM provisioning ORDER BY node"),
    delete: db.prepare("DELETE FROM provisioning WHERE node = ?"),
    image: db.prepare("SELECT id FROM image WHERE id = ?"),
  };
  const byDisk = (diskId: number) => s.byDisk.get(diskId) as ProvisioningRow | undefined;
  return {
    put(record) {
      if (!s.image.get(record.diskId)) {
        throw storeError("not_found", `image ${record.diskId} does not exist`, { imageId: record.diskId });
      }
      const other = byDisk(record.diskId);
      if (other && other.node !== record.node) {
        throw storeError("conflict", `disk ${record.disk} already boots node ${other.node}`, {
          disk: record.disk,
          node: other.node,
        });
      }
      s.put.run({
        node: record.node,
        project: record.project,
        disk: record.disk,
        diskId: record.diskId,
        nic: record.nic,
        mac: record.mac,
        firmware: record.firmware,
        targetName: record.target.name,
        portal: record.target.portal,
        port: record.target.port,
        lun: record.target.lun,
        network: record.network,
        createdAt: record.createdAt,
      });
    },
    get(node) {
      const row = s.get.get(node) as ProvisioningRow | undefined;
      return row && toProvisioning(row);
    },
    getByDisk(diskId) {
      const row = byDisk(diskId);
      return row && toProvisioning(row);
    },
    list: () => (s.all.all() as ProvisioningRow[]).map(toProvisioning),
    delete(node) {
      s.delete.run(node);
    },
  };
}
