import type { Image, ImageKind } from "../../domain/model.js";
import type { ImageOrigin, ImagePatch, ImageRepository, NewImage } from "../types.js";
import { storeError } from "./errors.js";
import type { SqliteContext, SyncOf } from "./repository.js";

export const IMAGE_WRITES = ["insert", "update", "delete"] as const;

interface ImageRow {
  id: number;
  name: string;
  is_public: number;
  is_snapshot: number;
  project_id: number;
  parent_id: number | null;
  ceph_name: string | null;
}

/** §2.3: golden = no parent; disk = parent and not a snapshot; snapshot = is_snapshot. */
export function imageKind(parentId: number | null, isSnapshot: boolean): ImageKind {
  if (isSnapshot) return "snapshot";
  return parentId === null ? "golden" : "disk";
}

const WITH_ORIGIN = "SELECT i.*, o.ceph_name FROM image i LEFT JOIN image_origin o ON o.image_id = i.id";

function prepare(db: SqliteContext["db"]) {
  return {
    insert: db.prepare(
      "INSERT INTO image (id, name, is_public, is_snapshot, project_id, parent_id) VALUES (@id, @name, @isPublic, @isSnapshot, @projectId, @parentId)",
    ),
    insertOrigin: db.prepare(
      "INSERT INTO image_origin (image_id, uid, snapshot_name, ceph_name, created_at) VALUES (?, ?, ?, ?, ?)",
    ),
    origin: db.prepare(
      "SELECT uid, snapshot_name AS snapshotName, ceph_name AS cephName FROM image_origin WHERE image_id = ?",
    ),
    byId: db.prepare(`${WITH_ORIGIN} WHERE i.id = ?`),
    byName: db.prepare(`${WITH_ORIGIN} WHERE i.project_id = ? AND i.name = ?`),
    all: db.prepare(`${WITH_ORIGIN} ORDER BY i.id`),
    ofProject: db.prepare(`${WITH_ORIGIN} WHERE i.project_id = ? ORDER BY i.id`),
    children: db.prepare(`${WITH_ORIGIN} WHERE i.parent_id = ? ORDER BY i.id`),
    detachChildren: db.prepare("UPDATE image SET parent_id = NULL, is_snapshot = 0 WHERE parent_id = ?"),
    delete: db.prepare("DELETE FROM image WHERE id = ?"),
    update: db.prepare(
      "UPDATE image SET name = ?, project_id = ?, parent_id = ?, is_public = ?, is_snapshot = ? WHERE id = ?",
    ),
    projectById: db.prepare("SELECT id FROM project WHERE id = ?"),
    maxId: db.prepare("SELECT COALESCE(MAX(id), 0) AS m FROM image"),
    highWater: db.prepare("SELECT value FROM bmi_meta WHERE key = 'image_id_high_water'"),
    setHighWater: db.prepare(
      "INSERT INTO bmi_meta (key, value) VALUES ('image_id_high_water', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    ),
    exportOf: db.prepare(`SELECT target_name FROM "export" WHERE image_id = ?`),
    nodeOf: db.prepare("SELECT node FROM provisioning WHERE disk_id = ?"),
  };
}
type Statements = ReturnType<typeof prepare>;

export function sqliteImages(ctx: SqliteContext): SyncOf<ImageRepository> {
  const s = prepare(ctx.db);
  const toImage = (row: ImageRow): Image => {
    const isSnapshot = row.is_snapshot === 1;
    return {
      id: row.id,
      name: row.name,
      projectId: row.project_id,
      parentId: row.parent_id,
      isPublic: row.is_public === 1,
      isSnapshot,
      // A row without origin was written by another program after migration: assume today's uid.
      cephName: row.ceph_name ?? `${ctx.uid}img${row.id}`,
      kind: imageKind(row.parent_id, isSnapshot),
    };
  };
  const row = (id: number) => s.byId.get(id) as ImageRow | undefined;
  const requireRow = (id: number): ImageRow => {
    const found = row(id);
    if (!found) throw storeError("not_found", `image ${id} does not exist`, { imageId: id });
    return found;
  };
  const highWater = (): number =>
    Math.max(
      (s.maxId.get() as { m: number }).m,
      Number((s.highWater.get() as { value: string } | undefined)?.value ?? 0),
    );

  return {
    insert(image) {
      checkInsert(s, image);
      // Ids are never reused, even after the highest is deleted, so a new image can never take
      // the RBD name of an old one that is still in the pool (the original reused them).
      let id = image.id;
      if (id === undefined) id = highWater() + 1;
      else if (row(id)) throw storeError("already_exists", `image id ${id} is taken`, { imageId: id });
      s.insert.run({
        id,
        name: image.name,
        isPublic: image.isPublic ? 1 : 0,
        isSnapshot: image.isSnapshot ? 1 : 0,
        projectId: image.projectId,
        parentId: image.parentId,
      });
      const cephName = typeof image.cephName === "function" ? image.cephName(id) : image.cephName;
      s.insertOrigin.run(id, ctx.uid, ctx.snapshotName, cephName, ctx.now());
      s.setHighWater.run(String(Math.max(id, highWater())));
      return toImage(requireRow(id));
    },
    get(projectId, name) {
      const found = s.byName.get(projectId, name) as ImageRow | undefined;
      return found && toImage(found);
    },
    getById(id) {
      const found = row(id);
      return found && toImage(found);
    },
    list(projectId) {
      const rows = (projectId === undefined ? s.all.all() : s.ofProject.all(projectId)) as ImageRow[];
      return rows.map(toImage);
    },
    listChildren: (imageId) => (s.children.all(imageId) as ImageRow[]).map(toImage),
    update(id, patch) {
      const current = requireRow(id);
      const next = patched(current, patch);
      checkUpdate(s, id, next);
      s.update.run(
        next.name,
        next.projectId,
        next.parentId,
        next.isPublic ? 1 : 0,
        next.isSnapshot ? 1 : 0,
        id,
      );
      return toImage(requireRow(id));
    },
    delete(id) {
      const found = row(id);
      if (!found) return; // idempotent, so an undo may run twice
      checkDelete(s, found);
      // The original's rule: snapshot children become independent base images.
      s.detachChildren.run(id);
      s.delete.run(id);
    },
    origin: (imageId) => s.origin.get(imageId) as ImageOrigin | undefined,
    idHighWater: highWater,
  };
}

function checkInsert(s: Statements, image: NewImage): void {
  if (!s.projectById.get(image.projectId)) {
    throw storeError("not_found", `project ${image.projectId} does not exist`, {
      projectId: image.projectId,
    });
  }
  if (image.parentId !== null && !s.byId.get(image.parentId)) {
    throw storeError("not_found", `parent image ${image.parentId} does not exist`, {
      parentId: image.parentId,
    });
  }
  if (s.byName.get(image.projectId, image.name)) {
    throw storeError("already_exists", `image ${image.name} already exists in the project`, {
      image: image.name,
      projectId: image.projectId,
    });
  }
}

type Fields = Required<ImagePatch>;

function patched(row: ImageRow, patch: ImagePatch): Fields {
  return {
    name: patch.name ?? row.name,
    projectId: patch.projectId ?? row.project_id,
    parentId: patch.parentId === undefined ? row.parent_id : patch.parentId,
    isPublic: patch.isPublic ?? row.is_public === 1,
    isSnapshot: patch.isSnapshot ?? row.is_snapshot === 1,
  };
}

function checkUpdate(s: Statements, id: number, next: Fields): void {
  if (!s.projectById.get(next.projectId)) {
    throw storeError("not_found", `project ${next.projectId} does not exist`, { projectId: next.projectId });
  }
  if (next.parentId !== null && (next.parentId === id || !s.byId.get(next.parentId))) {
    throw storeError("invalid_input", `image ${next.parentId} cannot be the parent of image ${id}`, {
      parentId: next.parentId,
    });
  }
  const clash = s.byName.get(next.projectId, next.name) as ImageRow | undefined;
  if (clash && clash.id !== id) {
    throw storeError("already_exists", `image ${next.name} already exists in the project`, {
      image: next.name,
    });
  }
}

function checkDelete(s: Statements, row: ImageRow): void {
  const clones = (s.children.all(row.id) as ImageRow[]).filter((c) => c.is_snapshot !== 1);
  if (clones.length > 0) {
    throw storeError(
      "busy",
      `image ${row.name} has clones (${clones.map((c) => c.name).join(", ")}); delete them first`,
      { image: row.name, clones: clones.map((c) => c.name) },
    );
  }
  const exported = s.exportOf.get(row.id) as { target_name: string } | undefined;
  if (exported) {
    throw storeError("busy", `image ${row.name} is exported as ${exported.target_name}; unexport it first`, {
      image: row.name,
      target: exported.target_name,
    });
  }
  const user = s.nodeOf.get(row.id) as { node: string } | undefined;
  if (user) {
    throw storeError("busy", `image ${row.name} boots node ${user.node}; deprovision it first`, {
      image: row.name,
      node: user.node,
    });
  }
}
