import type { Disk, Image, Project, Provisioning, TargetInfo } from "@bmi/core";
import { BmiError } from "@bmi/core";
import type { Column } from "../output.js";

/** The columns of each resource, shared by its list and its show. */

export const PROJECT_COLUMNS: Column<Project>[] = [
  { name: "id", get: (p) => p.id },
  { name: "name", get: (p) => p.name },
];

/** An image with its parent's name resolved (lists show names, not ids). */
export type NamedImage = Image & { parent: string | null };

export const IMAGE_COLUMNS: Column<NamedImage>[] = [
  { name: "name", get: (i) => i.name },
  { name: "id", get: (i) => i.id },
  { name: "kind", get: (i) => i.kind },
  { name: "cephName", get: (i) => i.cephName },
  { name: "parent", get: (i) => i.parent },
  { name: "isPublic", get: (i) => i.isPublic },
];

export type NamedDisk = Disk & { parent: string | null };

export const DISK_COLUMNS: Column<NamedDisk>[] = [
  { name: "name", get: (d) => d.name },
  { name: "parent", get: (d) => d.parent },
  { name: "target", get: (d) => d.target?.name ?? null },
  { name: "node", get: (d) => d.node },
  { name: "id", get: (d) => d.id },
  { name: "cephName", get: (d) => d.cephName },
];

export const NODE_COLUMNS: Column<Provisioning>[] = [
  { name: "node", get: (p) => p.node },
  { name: "project", get: (p) => p.project },
  { name: "disk", get: (p) => p.disk },
  { name: "nic", get: (p) => p.nic },
  { name: "mac", get: (p) => p.mac },
  { name: "target", get: (p) => p.target.name },
  { name: "firmware", get: (p) => p.firmware },
  { name: "network", get: (p) => p.network },
  { name: "createdAt", get: (p) => p.createdAt },
];

export const MOUNT_COLUMNS: Column<{ image: string; target: TargetInfo }>[] = [
  { name: "image", get: (m) => m.image },
  { name: "target", get: (m) => m.target.name },
  { name: "portal", get: (m) => `${m.target.portal}:${m.target.port}` },
  { name: "lun", get: (m) => m.target.lun },
];

/** Parent names from the image table, for rows that only carry `parentId`. */
export function withParents<T extends Image>(rows: T[], all: Image[]): (T & { parent: string | null })[] {
  return rows.map((row) => withParent(row, all));
}

export function withParent<T extends Image>(row: T, all: Image[]): T & { parent: string | null } {
  const parent = row.parentId === null ? null : (all.find((i) => i.id === row.parentId)?.name ?? null);
  return { ...row, parent };
}

/** The one row a show asks for, or `not_found` naming it. */
export function found<T>(row: T | undefined, what: string): T {
  if (row === undefined) throw new BmiError("not_found", `${what} not found`, { subsystem: "store" });
  return row;
}
