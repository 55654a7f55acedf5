import { type Bmi, BmiError, NodeName, ProjectName, parseInput } from "@bmi/core";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { checkAccess } from "./access.js";
import type { ServerContext } from "./context.js";
import { HttpError } from "./credentials.js";

/** What a route's operation gets besides its input: the request's signal (cancelled by a drain). */
export interface RouteCall {
  signal: AbortSignal;
}

/** One original picasso route (spec §6.2): method, exact path, form fields besides `project`. */
export interface Route {
  path: string;
  method: "POST" | "PUT" | "DELETE";
  fields: readonly string[];
  /** The field naming a node that must belong to the project (SEC-2). */
  nodeField?: string;
  handle(bmi: Bmi, project: string, form: Record<string, string>, call: RouteCall): Promise<unknown>;
}

/**
 * The original routes behave as the original did where its clients' scripts rely on it
 * (issue 21.4): deprovisioning a node that is not provisioned succeeds, provisioning a node
 * with another disk switches its boot files, deleting a disk that boots a node deprovisions the
 * node first. The SDK and /v1 keep refusing these unless asked (`missingOk`, `switchDisk`,
 * `deprovision`).
 */
export const ROUTES: readonly Route[] = [
  {
    path: "/list_images/",
    method: "POST",
    fields: [],
    handle: async (bmi, project) => (await bmi.listImages({ project })).map((i) => i.name),
  },
  {
    path: "/provision/",
    method: "PUT",
    fields: ["node", "disk_name", "nic"],
    nodeField: "node",
    handle: async (bmi, project, f, call) => {
      const input = { project, node: f.node ?? "", disk: f.disk_name ?? "", nic: f.nic ?? "" };
      await bmi.provision({ ...input, switchDisk: true }, call);
      return true;
    },
  },
  {
    path: "/deprovision/",
    method: "DELETE",
    fields: ["node", "nic"],
    nodeField: "node",
    handle: async (bmi, project, f, call) => {
      const record = (await bmi.listProvisionings({ project })).find((p) => p.node === f.node);
      // The original needed the NIC to find the boot files; we keep a record, so it must only agree.
      if (record && record.nic !== f.nic) {
        throw new BmiError(
          "invalid_input",
          `node ${record.node} is provisioned through NIC ${record.nic}, not ${f.nic}`,
          { details: { field: "nic" } },
        );
      }
      await bmi.deprovision({ project, node: f.node ?? "", missingOk: true }, call);
      return true;
    },
  },
  {
    path: "/create_snapshot/",
    method: "PUT",
    fields: ["disk_name", "snap_name"],
    handle: async (bmi, project, f, call) => {
      await bmi.snapshotDisk({ project, disk: f.disk_name ?? "", snapshot: f.snap_name ?? "" }, call);
      return true;
    },
  },
  {
    path: "/list_snapshots/",
    method: "POST",
    fields: [],
    handle: async (bmi, project) =>
      (await bmi.listSnapshots({ project })).map((s) => [s.image.name, s.parent ?? ""]),
  },
  {
    path: "/remove_image/",
    method: "DELETE",
    fields: ["img"],
    handle: async (bmi, project, f, call) => {
      await bmi.removeImage({ project, image: f.img ?? "" }, call);
      return true;
    },
  },
  {
    path: "/create_disk",
    method: "PUT",
    fields: ["disk_name", "img"],
    // The original's contract: the answer is the iSCSI target. With `[iscsi] bare_target_names`
    // that is the clone's RBD name, as before; with IQNs it is still the RBD name (the target is
    // `<iqn_prefix>:<that name>`), so scripts that pass it on to rbd keep working.
    handle: async (bmi, project, f, call) => {
      const disk = await bmi.createDisk({ project, image: f.img ?? "", disk: f.disk_name ?? "" }, call);
      return bmi.settings.iscsi.naming === "bare" ? (disk.target?.name ?? disk.cephName) : disk.cephName;
    },
  },
  {
    path: "/delete_disk",
    method: "DELETE",
    fields: ["disk_name"],
    handle: async (bmi, project, f, call) => {
      await bmi.deleteDisk({ project, disk: f.disk_name ?? "", deprovision: true }, call);
      return true;
    },
  },
];

const MAX_BODY = 64 * 1024;
const HTML = "text/html; charset=utf-8";
const ANY_METHOD = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"] as const;

/** The original routes, in a scope of their own: form bodies (or a JSON object of strings), text answers. */
export async function compatRoutes(app: FastifyInstance, ctx: ServerContext): Promise<void> {
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("*", { parseAs: "string", bodyLimit: MAX_BODY }, (request, body, done) => {
    try {
      done(null, parseForm(request.headers["content-type"] ?? "", String(body)));
    } catch (error) {
      done(error as Error);
    }
  });
  for (const route of ROUTES) {
    app.route({
      method: [...ANY_METHOD],
      url: route.path,
      // The method first (405 before any credentials), then the caller, before the body is read.
      onRequest: [
        async (request) => {
          if (request.method !== route.method) {
            throw new HttpError(405, "Method Not Allowed", { Allow: route.method });
          }
        },
        ctx.authenticate,
      ],
      handler: async (request, reply) => {
        const value = await runRoute(ctx, route, request);
        if (/application\/json/i.test(request.headers.accept ?? "")) {
          return reply.type("application/json").send(JSON.stringify(value));
        }
        return reply.type(HTML).send(value === true ? "Success" : JSON.stringify(value));
      },
    });
  }
}

async function runRoute(ctx: ServerContext, route: Route, request: FastifyRequest): Promise<unknown> {
  const form = (request.body ?? Object.create(null)) as Record<string, string>;
  for (const field of ["project", ...route.fields]) {
    if (form[field] === undefined) throw new HttpError(400, `missing form field ${field}`);
  }
  const project = parseInput(ProjectName, form.project, "project");
  request.seen.project = project;
  const node = route.nodeField ? parseInput(NodeName, form[route.nodeField], route.nodeField) : undefined;
  await checkAccess(ctx.caller(request).client, project, node);
  return ctx.run((signal) => route.handle(ctx.bmi, project, form, { signal }));
}

/** Form fields (`application/x-www-form-urlencoded`, also for PUT and DELETE), or a JSON object of strings. */
function parseForm(type: string, text: string): Record<string, string> {
  // No prototype: a field named __proto__ or constructor is a field like any other.
  const form: Record<string, string> = Object.create(null);
  if (/^application\/json/i.test(type)) {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      throw new HttpError(400, "the body is not valid JSON");
    }
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      throw new HttpError(400, "the JSON body must be an object of strings");
    }
    for (const [k, v] of Object.entries(value)) {
      if (typeof v !== "string") throw new HttpError(400, `field ${k} must be a string`);
      form[k] = v;
    }
    return form;
  }
  if (text.length > 0 && type !== "" && !/^application\/x-www-form-urlencoded/i.test(type)) {
    throw new HttpError(400, `unsupported body type ${type.split(";")[0]}: send form fields or JSON`);
  }
  for (const [k, v] of new URLSearchParams(text)) {
    if (Object.hasOwn(form, k)) throw new HttpError(400, `form field ${k} given twice`);
    form[k] = v;
  }
  return form;
}
