import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import {
  type Bmi,
  type BmiConfig,
  BmiError,
  type Logger,
  NodeName,
  ProjectName,
  parseInput,
  silentLogger,
  toBmiError,
} from "@bmi/core";
import { createHilClient, type FetchLike, type HilClient } from "@bmi/driver-hil";
import { httpStatusFor } from "./exit-codes.js";
import { basicCredentials, createCredentialGate, HttpError } from "./server-auth.js";
import { createRequestTracker } from "./server-drain.js";
import { clientWentAway, tenantView } from "./server-errors.js";

export { basicCredentials } from "./server-auth.js";

/** What a route's operation gets besides its input: the request's signal (cancelled by a drain). */
interface RouteCall {
  signal: AbortSignal;
}

/** One original picasso route (spec §6.2): method, exact path, form fields besides `project`. */
interface Route {
  path: string;
  method: "POST" | "PUT" | "DELETE";
  fields: readonly string[];
  /** The field naming a node that must belong to the project (SEC-2). */
  nodeField?: string;
  handle(bmi: Bmi, project: string, form: Record<string, string>, call: RouteCall): Promise<unknown>;
}

export const ROUTES: readonly Route[] = [
  {
    path: "/list_images/",
    method: "POST",
    fields: [],
    handle: async (bmi, project) => bmi.listImages({ project }).map((i) => i.name),
  },
  {
    path: "/provision/",
    method: "PUT",
    fields: ["node", "disk_name", "nic"],
    nodeField: "node",
    handle: async (bmi, project, f, call) => {
      await bmi.provision({ project, node: f.node ?? "", disk: f.disk_name ?? "", nic: f.nic ?? "" }, call);
      return true;
    },
  },
  {
    path: "/deprovision/",
    method: "DELETE",
    fields: ["node", "nic"],
    nodeField: "node",
    handle: async (bmi, project, f, call) => {
      const record = bmi.listProvisionings({ project }).find((p) => p.node === f.node);
      // The original needed the NIC to find the boot files; we keep a record, so it must only agree.
      if (record && record.nic !== f.nic) {
        throw new BmiError(
          "invalid_input",
          `node ${record.node} is provisioned through NIC ${record.nic}, not ${f.nic}`,
          { details: { field: "nic" } },
        );
      }
      await bmi.deprovision({ project, node: f.node ?? "" }, call);
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
    handle: async (bmi, project) => bmi.listSnapshots({ project }).map((s) => [s.image.name, s.parent ?? ""]),
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
    // The original returned the clone's RBD name (its target name too in bare-name mode).
    handle: async (bmi, project, f, call) =>
      (await bmi.createDisk({ project, image: f.img ?? "", disk: f.disk_name ?? "" }, call)).cephName,
  },
  {
    path: "/delete_disk",
    method: "DELETE",
    fields: ["disk_name"],
    handle: async (bmi, project, f, call) => {
      await bmi.deleteDisk({ project, disk: f.disk_name ?? "" }, call);
      return true;
    },
  },
];

export interface RestServerOptions {
  bmi: Bmi;
  /** `[net_isolator]` gives the HIL endpoint that checks each caller; `[rest_api]` the bind address. */
  config: Pick<BmiConfig, "net_isolator" | "rest_api">;
  /** Override `[rest_api] ip`; default 127.0.0.1 when the config has no `[rest_api]`. */
  host?: string;
  /** Override `[rest_api] port`; 0 picks a free port. */
  port?: number;
  logger?: Logger;
  /** For tests of the HIL client. */
  fetch?: FetchLike;
  /** Bounds on slow or idle clients; the defaults suit a LAN of a few dozen callers. */
  limits?: Partial<RestLimits>;
}

export interface RestLimits {
  /** Time to receive the request headers (also closes idle keep-alive sockets that start one). */
  headersTimeoutMs: number;
  /** Time to receive the whole request, body included. */
  requestTimeoutMs: number;
  /** Idle time of a kept-alive connection before it is closed. */
  keepAliveTimeoutMs: number;
  /** Open connections at once; more are refused at accept. */
  maxConnections: number;
}

export const DEFAULT_REST_LIMITS: RestLimits = {
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  keepAliveTimeoutMs: 5_000,
  maxConnections: 256,
};

/** How long `close()` lets running operations finish before it cancels them. */
export const DEFAULT_DRAIN_MS = 30_000;

export interface RestServer {
  url: string;
  host: string;
  port: number;
  /**
   * Drains, then closes: stops accepting at once (requests on kept-alive connections get 503),
   * lets running requests finish for `graceMs`, then cancels the rest through their
   * AbortSignal and waits until their undos are done. Resolves when nothing runs any more, so
   * the store can be closed after it.
   */
  close(options?: { graceMs?: number }): Promise<{ finished: number; cancelled: number }>;
}

const MAX_BODY = 64 * 1024;
const HTML = "text/html; charset=utf-8";
/** Error bodies are plain text: they may quote what the caller sent (a field name, a NIC). */
const TEXT = "text/plain; charset=utf-8";
/** The envelope code of an HTTP-level refusal (not a BmiError). */
const HTTP_CODES: Record<number, string> = {
  308: "invalid_input", // the route needs its trailing slash
  400: "invalid_input",
  401: "unauthenticated",
  404: "not_found",
  405: "unsupported",
  413: "invalid_input",
  503: "unavailable",
};

/**
 * The original BMI REST API (picasso) over the SDK: same routes, methods, form fields and
 * response envelope; each caller authenticated by HIL with their own credentials.
 */
export async function startRestServer(options: RestServerOptions): Promise<RestServer> {
  const logger = (options.logger ?? silentLogger).child({ component: "rest" });
  const host = options.host ?? options.config.rest_api?.ip ?? "127.0.0.1";
  const port = options.port ?? options.config.rest_api?.port ?? 0;
  const hil = options.config.net_isolator;
  const gate = createCredentialGate();
  const limits = { ...DEFAULT_REST_LIMITS, ...options.limits };
  const requests = createRequestTracker(logger);

  const server: Server = createServer(
    {
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      keepAliveTimeout: limits.keepAliveTimeoutMs,
      // Node checks the two timeouts above only this often (default 30 s): check at their scale.
      connectionsCheckingInterval: Math.max(
        50,
        Math.min(1_000, limits.headersTimeoutMs / 4, limits.requestTimeoutMs / 4),
      ),
    },
    (req, res) => {
      const started = performance.now();
      const seen: { user?: string; project?: string } = {};
      const served = requests.track((signal) =>
        handle(req, res, signal, seen).catch((error: unknown) =>
          sendError(req, res, error, { logger, draining: requests.draining }),
        ),
      );
      void served.finally(() => {
        const ms = Math.round(performance.now() - started);
        logger.info({ method: req.method, path: req.url, status: res.statusCode, ...seen, ms }, "request");
      });
    },
  );
  server.maxConnections = limits.maxConnections;

  async function handle(
    req: IncomingMessage,
    res: ServerResponse,
    signal: AbortSignal,
    seen: { user?: string; project?: string },
  ): Promise<void> {
    if (requests.draining) {
      throw new HttpError(503, "bmi serve is shutting down; retry shortly", { Connection: "close" });
    }
    const url = new URL(req.url ?? "/", "http://bmi.invalid");
    const path = url.pathname;
    if (path === "/health" || path === "/health/") {
      if (req.method !== "GET" && req.method !== "HEAD")
        throw new HttpError(405, "Method Not Allowed", { Allow: "GET" });
      options.bmi.listProjects(); // the database answers
      return send(res, 200, "application/json", JSON.stringify({ status: "ok" }));
    }
    const route = ROUTES.find((r) => r.path === path);
    if (!route) {
      // Flask redirected a slashless request to the slashed route; 308 keeps the method and body.
      const slashed = ROUTES.find((r) => r.path.endsWith("/") && r.path === `${path}/`);
      if (slashed) {
        throw new HttpError(308, "Permanent Redirect", { Location: `${slashed.path}${url.search}` });
      }
      throw new HttpError(404, "Not Found");
    }
    if (req.method !== route.method) throw new HttpError(405, "Method Not Allowed", { Allow: route.method });

    const credentials = basicCredentials(req.headers.authorization);
    seen.user = credentials.username;
    // The caller's own HIL credentials decide (spec §2.2), checked before the body is read.
    const client = createHilClient({
      url: hil.url,
      username: credentials.username,
      password: credentials.password,
      timeoutMs: hil.timeout_ms,
      retries: 1,
      ...(options.fetch ? { fetch: options.fetch } : {}),
    });
    await gate.admit(credentials, client);
    const form = await readForm(req);
    for (const field of ["project", ...route.fields]) {
      if (form[field] === undefined) throw new HttpError(400, `missing form field ${field}`);
    }
    const projectName = parseInput(ProjectName, form.project, "project");
    seen.project = projectName;
    await checkAccess(client, projectName, route, form);
    const value = await route.handle(options.bmi, projectName, form, { signal }).catch((error: unknown) => {
      throw ownCredentials(error);
    });
    if (wantsJson(req)) return send(res, 200, "application/json", JSON.stringify(value));
    return send(res, 200, HTML, value === true ? "Success" : JSON.stringify(value));
  }

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const shownHost = address.family === "IPv6" ? `[${address.address}]` : address.address;

  async function close(closing: { graceMs?: number } = {}) {
    // Stop accepting first; requests on kept-alive connections are refused while draining.
    const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeIdleConnections();
    const drained = await requests.drain(closing.graceMs ?? DEFAULT_DRAIN_MS);
    server.closeAllConnections();
    await stopped;
    return drained;
  }

  return { url: `http://${shownHost}:${address.port}`, host: address.address, port: address.port, close };
}

/** Answers a failed request; the log gets what the caller is not shown. */
function sendError(
  req: IncomingMessage,
  res: ServerResponse,
  thrown: unknown,
  context: { logger: Logger; draining: boolean },
): void {
  const { logger, draining } = context;
  if (clientWentAway(req, thrown)) {
    logger.info({ method: req.method, path: req.url }, "client closed the connection before the answer");
    res.destroy();
    return;
  }
  if (res.headersSent) {
    res.destroy();
    return;
  }
  // Answered before its body was read (a refused caller): close rather than wait for the rest.
  if (!req.complete) res.setHeader("Connection", "close");
  if (thrown instanceof HttpError) {
    for (const [k, v] of Object.entries(thrown.headers)) res.setHeader(k, v);
    if (wantsJson(req)) {
      const code = HTTP_CODES[thrown.status] ?? "invalid_input";
      send(
        res,
        thrown.status,
        "application/json",
        JSON.stringify({ error: { code, message: thrown.message } }),
      );
    } else send(res, thrown.status, TEXT, thrown.message);
    return;
  }
  const error = draining ? stoppedBy(toBmiError(thrown)) : toBmiError(thrown);
  const shown = tenantView(error);
  // The whole error (command lines, paths, the cause's text) stays in the server log: always
  // for server faults, and for the caller's errors whenever the tenant was shown less.
  const full = { err: error.toJSON(), cause: causeText(error) };
  if (error.fault === "server") logger.warn(full, "request failed");
  else if (
    shown.message !== error.message ||
    Object.keys(shown.details).length < Object.keys(error.details).length
  ) {
    logger.info(full, "request refused");
  }
  const status = error.code === "cancelled" && draining ? 503 : httpStatusFor(error);
  if (status === 401) res.setHeader("WWW-Authenticate", 'Basic realm="bmi"');
  if (wantsJson(req)) send(res, status, "application/json", JSON.stringify({ error: shown }));
  else send(res, status, TEXT, shown.message);
}

/** An operation cancelled by a drain says so: the caller may retry once the server is back. */
function stoppedBy(error: BmiError): BmiError {
  if (error.code !== "cancelled") return error;
  return new BmiError("cancelled", "bmi serve was stopping: the operation was cancelled and undone; retry", {
    subsystem: error.subsystem,
    cause: error,
    retryable: true,
  });
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.statusCode = status;
  res.setHeader("Content-Type", type);
  res.setHeader("X-Content-Type-Options", "nosniff");
  res.setHeader("Content-Length", Buffer.byteLength(body));
  res.end(body);
}

const wantsJson = (req: IncomingMessage) => /application\/json/i.test(req.headers.accept ?? "");

/** Form fields (`application/x-www-form-urlencoded`, also for PUT and DELETE), or a JSON object of strings. */
async function readForm(req: IncomingMessage): Promise<Record<string, string>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw new HttpError(413, "request body too large");
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString("utf8");
  const type = req.headers["content-type"] ?? "";
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
    const form: Record<string, string> = Object.create(null);
    for (const [k, v] of Object.entries(value)) {
      if (typeof v !== "string") throw new HttpError(400, `field ${k} must be a string`);
      form[k] = v;
    }
    return form;
  }
  if (text.length > 0 && type !== "" && !/^application\/x-www-form-urlencoded/i.test(type)) {
    throw new HttpError(400, `unsupported body type ${type.split(";")[0]}: send form fields or JSON`);
  }
  // No prototype: a field named __proto__ or constructor is a field like any other.
  const form: Record<string, string> = Object.create(null);
  for (const [k, v] of new URLSearchParams(text)) {
    if (Object.hasOwn(form, k)) throw new HttpError(400, `form field ${k} given twice`);
    form[k] = v;
  }
  return form;
}

/**
 * The original's project check (the caller's HIL credentials can list the project's nodes), plus
 * SEC-2: a node operation only on a node the project holds.
 */
async function checkAccess(
  client: HilClient,
  project: string,
  route: Route,
  form: Record<string, string>,
): Promise<void> {
  let nodes: string[];
  try {
    nodes = await client.listProjectNodes(project);
  } catch (error) {
    throw hilError(error, `project ${project}`);
  }
  if (!route.nodeField) return;
  const node = parseInput(NodeName, form[route.nodeField], route.nodeField);
  if (nodes.includes(node)) return;
  try {
    await client.showNode(node);
  } catch (error) {
    throw hilError(error, `node ${node}`);
  }
  throw new BmiError("forbidden", `node ${node} does not belong to project ${project}`, {
    subsystem: "isolation",
    details: { node, project },
  });
}

/**
 * After the caller's own credentials were accepted, HIL refusing BMI's shared service account
 * (a rotated password) is a server fault, never a prompt for the caller's credentials.
 */
function ownCredentials(error: unknown): unknown {
  const e = toBmiError(error);
  if (e.code !== "unauthenticated") return error;
  return new BmiError("permission_denied", "HIL refused BMI's own service account; ask the operator", {
    subsystem: "isolation",
    cause: e,
  });
}

/** HIL answers for the caller: 401 bad credentials, 403 no access, 404 unknown project or node. */
function hilError(error: unknown, what: string): BmiError {
  const e = toBmiError(error, "isolation");
  if (e.code === "unauthenticated") {
    return new BmiError("unauthenticated", "Authentication Failed", { subsystem: "isolation", cause: e });
  }
  if (e.code === "forbidden") {
    return new BmiError("forbidden", `Authorization Failed: no access to ${what}`, {
      subsystem: "isolation",
      cause: e,
    });
  }
  if (e.code === "not_found") {
    return new BmiError("not_found", `${what} not found in HIL`, { subsystem: "isolation", cause: e });
  }
  if (e.code === "invalid_input") {
    return new BmiError("invalid_input", `invalid ${what}`, { subsystem: "isolation", cause: e });
  }
  return e;
}

/** The cause's text for the server log (a command's stderr, HIL's answer); secrets were redacted at the source. */
function causeText(error: BmiError): string | undefined {
  const cause = error.cause;
  return cause instanceof Error ? cause.message : cause === undefined ? undefined : String(cause);
}
