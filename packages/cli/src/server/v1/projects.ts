import type { FastifyInstance } from "fastify";
import { z } from "zod";
import type { ServerContext } from "../context.js";
import { v1Route } from "./route.js";
import { Image, Project, ProjectParams, Reconcile } from "./schemas.js";

/** Projects and the operator's operations over every project: HIL administrators only. */
export function projectRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const { bmi } = ctx;
  const tag = "projects";
  v1Route(app, ctx, {
    method: "GET",
    url: "/projects",
    tag,
    summary: "List every project",
    access: "admin",
    response: z.array(Project),
    run: async () => bmi.listProjects(),
  });
  v1Route(app, ctx, {
    method: "POST",
    url: "/projects",
    tag,
    summary: "Create a project",
    access: "admin",
    body: z.object({ name: z.string(), id: z.number().int().positive().optional() }),
    response: Project,
    status: 201,
    run: ({ body }, { signal }) => bmi.createProject(body, { signal }),
  });
  v1Route(app, ctx, {
    method: "DELETE",
    url: "/projects/:project",
    tag,
    summary: "Delete an empty project",
    access: "admin",
    params: ProjectParams,
    status: 204,
    run: ({ params }, { signal }) => bmi.deleteProject({ name: params.project }, { signal }),
  });
  v1Route(app, ctx, {
    method: "GET",
    url: "/images",
    tag: "admin",
    summary: "List the images of every project",
    access: "admin",
    response: z.array(Image),
    run: async () => bmi.listAllImages(),
  });
  v1Route(app, ctx, {
    method: "POST",
    url: "/reconcile",
    tag: "admin",
    summary: "Compare the database, storage, targets and boot files; repair on request",
    access: "admin",
    body: z.object({ repair: z.boolean().optional(), remove: z.array(z.string()).optional() }),
    response: Reconcile,
    run: ({ body }, { signal }) => bmi.reconcile(body, { signal }),
  });
  v1Route(app, ctx, {
    method: "POST",
    url: "/restore-targets",
    tag: "admin",
    summary: "Re-create every known iSCSI target (after tgtd restarted)",
    access: "admin",
    response: z.object({ restored: z.array(z.string()) }),
    run: async (_input, { signal }) => ({ restored: await bmi.restoreTargets({ signal }) }),
  });
  v1Route(app, ctx, {
    method: "POST",
    url: "/flatten-pending",
    tag: "admin",
    summary: "Flatten the snapshot images still sharing data with their disks",
    access: "admin",
    response: z.object({ flattened: z.number().int() }),
    run: async (_input, { signal }) => ({ flattened: await bmi.flattenPending({ signal }) }),
  });
}
