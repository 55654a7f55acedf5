import type { FastifyInstance } from "fastify";
import { z } from "zod";
import { checkAccess } from "../access.js";
import type { ServerContext } from "../context.js";
import { projectListRoute, v1Route } from "./route.js";
import { flag, Image, ImageParams, Mount, ProjectParams, Snapshot, Target } from "./schemas.js";

/** Golden images, snapshots of disks, and images mounted as iSCSI targets. */
export function imageRoutes(app: FastifyInstance, ctx: ServerContext): void {
  goldenImageRoutes(app, ctx);
  snapshotRoutes(app, ctx);
  mountRoutes(app, ctx);
}

/** Golden and snapshot images: list, import, remove, copy/move, export. */
function goldenImageRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const { bmi } = ctx;
  const tag = "images";
  projectListRoute(app, ctx, {
    resource: "images",
    tag,
    summary: "List the project's golden and snapshot images",
    row: Image,
    run: (project) => bmi.listImages({ project }),
  });
  v1Route(app, ctx, {
    method: "POST",
    url: "/projects/:project/images",
    tag,
    summary:
      "Import an RBD image of the pool as a golden image (administrators: it reads any image of the pool)",
    access: "admin",
    params: ProjectParams,
    body: z.object({
      source: z.string(),
      name: z.string().optional(),
      snapshot: z.string().optional(),
      protect: z.boolean().optional(),
      isPublic: z.boolean().optional(),
    }),
    response: Image,
    status: 201,
    run: ({ params, body }, { signal }) => bmi.importImage({ project: params.project, ...body }, { signal }),
  });
  v1Route(app, ctx, {
    method: "DELETE",
    url: "/projects/:project/images/:image",
    tag,
    summary: "Remove a golden or snapshot image",
    access: "project",
    params: ImageParams,
    status: 204,
    run: ({ params }, { signal }) => bmi.removeImage(params, { signal }),
  });
  for (const verb of ["copy", "move"] as const) {
    v1Route(app, ctx, {
      method: "POST",
      url: `/projects/:project/images/:image/${verb}`,
      tag,
      summary: `${verb === "copy" ? "Copy" : "Move"} an image, within the project or to another you have access to`,
      access: "project",
      params: ImageParams,
      body: z.object({ destProject: z.string(), destName: z.string().optional() }),
      response: Image,
      status: 201,
      run: async ({ params, body }, { signal, caller }) => {
        if (body.destProject !== params.project) await checkAccess(caller.client, body.destProject);
        const input = { ...params, ...body };
        return verb === "copy" ? bmi.copyImage(input, { signal }) : bmi.moveImage(input, { signal });
      },
    });
  }
  v1Route(app, ctx, {
    method: "POST",
    url: "/projects/:project/images/:image/export",
    tag,
    summary: "Copy an image out to a new RBD image of the pool (administrators)",
    access: "admin",
    params: ImageParams,
    body: z.object({ rbdName: z.string() }),
    status: 204,
    run: ({ params, body }, { signal }) => bmi.exportImage({ ...params, rbdName: body.rbdName }, { signal }),
  });
}

/** A disk's content saved as a new image. */
function snapshotRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const { bmi } = ctx;
  projectListRoute(app, ctx, {
    resource: "snapshots",
    tag: "snapshots",
    summary: "List the project's snapshots with the image each was taken from",
    row: Snapshot,
    run: (project) => bmi.listSnapshots({ project }),
  });
  v1Route(app, ctx, {
    method: "POST",
    url: "/projects/:project/snapshots",
    tag: "snapshots",
    summary: "Save a disk's content as a new image (force: even while it boots a node)",
    access: "project",
    params: ProjectParams,
    body: z.object({
      disk: z.string(),
      snapshot: z.string(),
      force: z.boolean().optional(),
      flatten: z.enum(["now", "later"]).optional(),
    }),
    response: Image,
    status: 201,
    run: ({ params, body }, { signal }) => bmi.snapshotDisk({ project: params.project, ...body }, { signal }),
  });
}

/** Images mounted as iSCSI targets (read-only access to an image's content). */
function mountRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const { bmi } = ctx;
  projectListRoute(app, ctx, {
    resource: "mounts",
    tag: "mounts",
    summary: "List the project's images mounted as iSCSI targets",
    row: Mount,
    run: (project) => bmi.listMounts({ project }),
  });
  v1Route(app, ctx, {
    method: "PUT",
    url: "/projects/:project/mounts/:image",
    tag: "mounts",
    summary: "Export an image as an iSCSI target",
    access: "project",
    params: ImageParams,
    response: Target,
    run: ({ params }, { signal }) => bmi.mountImage(params, { signal }),
  });
  v1Route(app, ctx, {
    method: "DELETE",
    url: "/projects/:project/mounts/:image",
    tag: "mounts",
    summary: "Remove an image's iSCSI target (force: even with initiators logged in)",
    access: "project",
    params: ImageParams,
    query: z.object({ force: flag }),
    status: 204,
    run: ({ params, query }, { signal }) =>
      bmi.unmountImage({ ...params, ...(query.force ? { force: true } : {}) }, { signal }),
  });
}
