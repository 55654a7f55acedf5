import { z } from "zod";
import type { Project } from "../domain/model.js";
import { ProjectName } from "../domain/names.js";
import { parseInput } from "../domain/validate.js";
import { BmiError } from "../errors/index.js";
import { type BmiContext, operation, requireProject } from "./context.js";
import { projectLock } from "./locks.js";

const CreateProjectInput = z.strictObject({
  name: ProjectName,
  /** Explicit ids only for admin tools restoring an old deployment (the original's `--id`). */
  id: z.number().int().positive().optional(),
});
export type CreateProjectInput = z.input<typeof CreateProjectInput>;

export function createProject(ctx: BmiContext, input: CreateProjectInput): Promise<Project> {
  const { name, id } = parseInput(CreateProjectInput, input, "input");
  return operation(ctx, "create project", { project: name }, [projectLock(name)], async (saga) => {
    if (await ctx.store.projects.get(name)) {
      throw new BmiError("already_exists", `project ${name} already exists`, { subsystem: "store" });
    }
    if (id !== undefined && (await ctx.store.projects.getById(id))) {
      throw new BmiError("already_exists", `project id ${id} is already taken`, { subsystem: "store" });
    }
    return saga.step(
      "insert project row",
      () => ctx.store.projects.create(name, id),
      (project) => ctx.store.projects.delete(project.id),
    );
  });
}

export function listProjects(ctx: BmiContext): Promise<Project[]> {
  return ctx.store.projects.list();
}

/**
 * Deletes an empty project. The original cascaded to image rows and left their RBD images,
 * targets and boot files behind (COR-8); we refuse until the project is empty.
 */
export function deleteProject(ctx: BmiContext, input: { name: string }): Promise<void> {
  const { name } = parseInput(z.strictObject({ name: ProjectName }), input, "input");
  return operation(ctx, "delete project", { project: name }, [projectLock(name)], async (saga) => {
    const project = await requireProject(ctx, name);
    const images = await ctx.store.images.list(project.id);
    const nodes = (await ctx.store.provisionings.list()).filter((p) => p.project === name);
    if (images.length > 0 || nodes.length > 0) {
      throw new BmiError(
        "busy",
        `project ${name} still has ${images.length} image(s) (${images
          .map((i) => i.name)
          .slice(0, 5)
          .join(", ")}) and ${nodes.length} provisioned node(s); remove them first`,
        {
          subsystem: "store",
          details: { images: images.map((i) => i.name), nodes: nodes.map((n) => n.node) },
        },
      );
    }
    await saga.step("delete project row", () => ctx.store.projects.delete(project.id));
  });
}
