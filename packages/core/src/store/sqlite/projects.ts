import type { Project } from "../../domain/model.js";
import { ProjectName } from "../../domain/names.js";
import { parseInput } from "../../domain/validate.js";
import type { ProjectRepository } from "../types.js";
import { storeError } from "./errors.js";
import type { SqliteContext, SyncOf } from "./repository.js";

export const PROJECT_WRITES = ["create", "delete"] as const;

export function sqliteProjects({ db }: SqliteContext): SyncOf<ProjectRepository> {
  const s = {
    insert: db.prepare("INSERT INTO project (id, name) VALUES (?, ?)"),
    byName: db.prepare("SELECT id, name FROM project WHERE name = ?"),
    byId: db.prepare("SELECT id, name FROM project WHERE id = ?"),
    all: db.prepare("SELECT id, name FROM project ORDER BY id"),
    delete: db.prepare("DELETE FROM project WHERE id = ?"),
    images: db.prepare("SELECT COUNT(*) AS n FROM image WHERE project_id = ?"),
    nodes: db.prepare("SELECT COUNT(*) AS n FROM provisioning WHERE project = ?"),
  };
  return {
    create(name, id) {
      const valid = parseInput(ProjectName, name, "project", "store");
      if (s.byName.get(valid)) {
        throw storeError("already_exists", `project ${valid} already exists`, { project: valid });
      }
      if (id !== undefined && s.byId.get(id)) {
        throw storeError("already_exists", `project id ${id} is taken`, { projectId: id });
      }
      const info = s.insert.run(id ?? null, valid);
      return { id: Number(info.lastInsertRowid), name: valid };
    },
    get: (name) => s.byName.get(name) as Project | undefined,
    getById: (id) => s.byId.get(id) as Project | undefined,
    list: () => s.all.all() as Project[],
    delete(id) {
      const project = s.byId.get(id) as Project | undefined;
      if (!project) return;
      const images = (s.images.get(id) as { n: number }).n;
      const nodes = (s.nodes.get(project.name) as { n: number }).n;
      if (images > 0 || nodes > 0) {
        throw storeError(
          "busy",
          `project ${project.name} still has ${images} image(s) and ${nodes} provisioned node(s); remove them first`,
          { project: project.name, images, nodes },
        );
      }
      s.delete.run(id);
    },
  };
}
