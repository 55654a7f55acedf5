import type { FastifyInstance } from "fastify";
import { z } from "zod";
import type { ServerContext } from "../context.js";
import { projectListRoute, v1Route } from "./route.js";
import { Disk, DiskParams, flag, ProjectParams } from "./schemas.js";

/** Disks: copy-on-write clones of an image, each exported as an iSCSI target. */
export function diskRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const { bmi } = ctx;
  const tag = "disks";
  projectListRoute(app, ctx, {
    resource: "disks",
    tag,
    summary: "List the project's disks, their targets and the node each boots",
    row: Disk,
    run: (project) => bmi.listDisks({ project }),
  });
  v1Route(app, ctx, {
    method: "POST",
    url: "/projects/:project/disks",
    tag,
    summary: "Clone an image into a new disk and export it",
    access: "project",
    params: ProjectParams,
    body: z.object({ image: z.string(), disk: z.string() }),
    response: Disk,
    status: 201,
    run: ({ params, body }, { signal }) => bmi.createDisk({ project: params.project, ...body }, { signal }),
  });
  v1Route(app, ctx, {
    method: "DELETE",
    url: "/projects/:project/disks/:disk",
    tag,
    summary:
      "Delete a disk (its target and clone). A disk that boots a node is refused unless deprovision=true, which deprovisions the node first under the same locks",
    access: "project",
    params: DiskParams,
    query: z.object({ force: flag, deprovision: flag }),
    status: 204,
    run: ({ params, query }, { signal }) =>
      bmi.deleteDisk(
        {
          ...params,
          ...(query.force ? { force: true } : {}),
          ...(query.deprovision ? { deprovision: true } : {}),
        },
        { signal },
      ),
  });
}
