import type { BmiEvent } from "@bmi/core";
import type { FastifyInstance } from "fastify";
import { z } from "zod";
import { checkAccess } from "../access.js";
import type { ServerContext } from "../context.js";
import { ERRORS } from "./route.js";
import { ProjectParams } from "./schemas.js";

/** Server-sent events keep a quiet connection open through proxies that cut idle ones. */
const KEEPALIVE_MS = 15_000;

/**
 * `GET /v1/projects/:project/events`: a server-sent event stream of the progress of the
 * project's operations (operation and step started, finished, failed, undone; boot stages).
 * Only events of operations on this project reach the caller.
 */
export function eventRoutes(app: FastifyInstance, ctx: ServerContext): void {
  app.route({
    method: "GET",
    url: "/projects/:project/events",
    schema: {
      tags: ["events"],
      summary: "Progress of the project's operations, as server-sent events (text/event-stream)",
      params: ProjectParams,
      produces: ["text/event-stream"],
      response: {
        ...ERRORS,
        200: z.string().describe("an event stream; each event's data is a JSON BmiEvent"),
      },
    },
    onRequest: ctx.authenticate,
    handler: async (request, reply) => {
      const { project } = request.params as { project: string };
      request.seen.project = project;
      await checkAccess(ctx.caller(request).client, project);
      await ctx.bmi.listImages({ project }); // a project unknown to BMI is a 404 before the stream opens
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, {
        "Content-Type": "text/event-stream; charset=utf-8",
        "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff",
        Connection: "keep-alive",
      });
      res.write(": stream of project events\n\n");
      const belongs = projectFilter(ctx, project);
      // The filter may read the store (async): a chain keeps the events in the order they came.
      let written = Promise.resolve();
      const stop = ctx.bmi.on((event) => {
        written = written
          .then(async () => {
            if (await belongs(event)) res.write(`event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`);
          })
          .catch(() => {
            // The store could not say whose node it is: that event is not sent.
          });
      });
      const keepalive = setInterval(() => res.write(": keepalive\n\n"), KEEPALIVE_MS);
      request.raw.socket.once("close", () => {
        clearInterval(keepalive);
        stop();
      });
    },
  });
}

/** Whether an event is about one of the project's operations (or one of its nodes booting). */
function projectFilter(ctx: ServerContext, project: string): (event: BmiEvent) => Promise<boolean> {
  const ours = new Set<string>();
  return async (event) => {
    if (event.type === "boot:stage") {
      return (await ctx.bmi.listProvisionings({ project })).some((p) => p.node === event.node);
    }
    if (event.type === "operation:started") {
      const subject = event.subject;
      if (subject.project === project || subject.destProject === project) ours.add(event.operationId);
    }
    const known = ours.has(event.operationId);
    if (known && (event.type === "operation:finished" || event.type === "operation:failed")) {
      ours.delete(event.operationId);
    }
    return known;
  };
}
