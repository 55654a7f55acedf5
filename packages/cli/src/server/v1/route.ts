import type { FastifyInstance, FastifyRequest, FastifySchema } from "fastify";
import { z } from "zod";
import { checkAccess, checkAdmin } from "../access.js";
import type { Caller, ServerContext } from "../context.js";
import { BmiErrorBody, ProjectParams } from "./schemas.js";

/** Who may call a route: a HIL administrator, anyone with access to the project, or to the project's node. */
export type Access = "admin" | "project" | "node";

type Obj = z.ZodType<Record<string, unknown>>;

export interface V1Route<P extends Obj, Q extends Obj, B extends Obj> {
  method: "GET" | "POST" | "PUT" | "DELETE";
  url: string;
  tag: string;
  summary: string;
  access: Access;
  params?: P;
  query?: Q;
  body?: B;
  /** The success answer's schema; absent for 204 (no content). */
  response?: z.ZodType;
  status?: 200 | 201 | 204;
  run(
    input: { params: z.output<P>; query: z.output<Q>; body: z.output<B> },
    call: { signal: AbortSignal; caller: Caller },
  ): Promise<unknown>;
}

/** The error answers every /v1 route documents (a BmiError body). */
export const ERRORS = {
  400: BmiErrorBody,
  401: BmiErrorBody,
  403: BmiErrorBody,
  404: BmiErrorBody,
  409: BmiErrorBody,
  500: BmiErrorBody,
  503: BmiErrorBody,
};

/** Registers one JSON route: schemas for validation and the OpenAPI document, the caller's rights, the operation. */
export function v1Route<P extends Obj, Q extends Obj, B extends Obj>(
  app: FastifyInstance,
  ctx: ServerContext,
  route: V1Route<P, Q, B>,
): void {
  const status = route.status ?? 200;
  app.route({
    method: route.method,
    url: route.url,
    schema: {
      tags: [route.tag],
      summary: route.summary,
      ...(route.params ? { params: route.params } : {}),
      ...(route.query ? { querystring: route.query } : {}),
      ...(route.body ? { body: route.body } : {}),
      response: { ...ERRORS, [status]: route.response ?? z.null().describe("no content") },
    } as FastifySchema,
    onRequest: ctx.authenticate,
    handler: async (request, reply) => {
      const caller = ctx.caller(request);
      await authorize(route.access, request, caller);
      const input = {
        params: (request.params ?? {}) as z.output<P>,
        query: (request.query ?? {}) as z.output<Q>,
        body: (request.body ?? {}) as z.output<B>,
      };
      const value = await ctx.run((signal) => route.run(input, { signal, caller }));
      reply.code(status);
      return status === 204 ? reply.send() : value;
    },
  });
}

/** `GET /projects/:project/<resource>`: the project's rows, for anyone with access to the project. */
export function projectListRoute(
  app: FastifyInstance,
  ctx: ServerContext,
  list: {
    resource: string;
    tag: string;
    summary: string;
    row: z.ZodType;
    run(project: string): Promise<unknown>;
  },
): void {
  v1Route(app, ctx, {
    method: "GET",
    url: `/projects/:project/${list.resource}`,
    tag: list.tag,
    summary: list.summary,
    access: "project",
    params: ProjectParams,
    response: z.array(list.row),
    run: async ({ params }) => list.run(params.project),
  });
}

async function authorize(access: Access, request: FastifyRequest, caller: Caller): Promise<void> {
  if (access === "admin") return checkAdmin(caller.client);
  const params = request.params as { project?: string; node?: string };
  if (params.project) request.seen.project = params.project;
  await checkAccess(caller.client, params.project ?? "", access === "node" ? params.node : undefined);
}
