import type { FastifyInstance } from "fastify";
import type { ServerContext } from "../context.js";
import { diskRoutes } from "./disks.js";
import { eventRoutes } from "./events.js";
import { imageRoutes } from "./images.js";
import { nodeRoutes } from "./nodes.js";
import { projectRoutes } from "./projects.js";

/** The JSON API, mounted at /v1: one route per facade operation, errors as BmiError JSON. */
export async function v1Routes(app: FastifyInstance, ctx: ServerContext): Promise<void> {
  projectRoutes(app, ctx);
  imageRoutes(app, ctx);
  diskRoutes(app, ctx);
  nodeRoutes(app, ctx);
  eventRoutes(app, ctx);
}
