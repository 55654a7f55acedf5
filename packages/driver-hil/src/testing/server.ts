import { timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { text } from "node:stream/consumers";
import { z } from "zod";
import { createFaultEngine, type HilFaults, type StatusFault } from "./faults.js";
import { type HilFixture, loadFixture } from "./fixture.js";
import { createMemoryMachine, createObmdEndpoint, type ObmdEndpoint, type ObmdMachine } from "./obmd.js";
import { type Caller, matchPattern, type Reply, type Route, routes, runRoute } from "./routes.js";
import {
  authorization,
  createState,
  HilApiError,
  HilHtmlError,
  type HilState,
  liveView,
  type NetworkingAction,
  type NicState,
  type NicView,
  type NodeState,
  notFound,
  snapshotView,
  validation,
} from "./state.js";
import { createActionApplier, type SwitchBackend } from "./switch.js";

export interface HilServerOptions {
  /** The world the server starts with. */
  fixture?: HilFixture;
  /** `basic`: HIL's database auth with the fixture's users; `none`: HIL's null auth (all admin). Default basic. */
  auth?: "none" | "basic";
  /** How long the networking daemon takes to apply an action; default 50 ms. */
  actionDelayMs?: number;
  /** 0 (default) picks a free port. */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** The VLAN pool of the `vlan_pool` allocator; default 100-199. */
  vlanPool?: { first: number; last: number };
  /** Initial values of the realism knobs (changeable later through `server.knobs`). */
  knobs?: Partial<HilServerKnobs>;
  /**
   * The machine behind each fixture node's built-in BMC (the obmd-compatible endpoint at
   * `<url>/obmd`, where fixture nodes without an `obmd` point); default: an in-memory machine.
   */
  machine?: (node: string) => ObmdMachine;
  /**
   * A real switch the networking daemon programs (the lab's bridge); default none: records only.
   * With one, an action's DONE follows the switch's change, and a refusal ends it in ERROR.
   */
  switch?: SwitchBackend;
}

/** What real HIL does that a kind fake would not; each can be changed while the server runs. */
export interface HilServerKnobs {
  /**
   * true (default): connect/detach check "one action per NIC" atomically. false: like real HIL,
   * each request checks the NIC as it was when the request arrived, so POSTs served together
   * after a stall all pass, the daemon makes duplicate attachment rows, and every later detach
   * of that network answers HTML 500.
   */
  nicLock: boolean;
  /** Time spent authenticating each request with database auth (real HIL: ~165 ms); default 0. */
  authCostMs: number;
  /** How long the networking daemon takes to apply one action (a switch's time); default `actionDelayMs`. */
  actionMs: number;
  /**
   * false (default): actions are applied concurrently, each `actionMs` after it was queued. true:
   * like HIL's networking daemon, one at a time in queue order, so N actions take N × `actionMs`.
   */
  serialDaemon: boolean;
}

export interface HilServer {
  /** Base URL without `/v0`, e.g. `http://127.0.0.1:40123`. */
  url: string;
  port: number;
  /** The live model; tests may read and change it. */
  state: HilState;
  faults: HilFaults;
  /** The built-in obmd-compatible endpoint (`<url>/obmd`): its machines and its own fault knobs. */
  obmd: ObmdEndpoint;
  /** Applies every PENDING action now (except held ones), as if the daemon woke up. */
  flushActions(): void;
  /** Lets held actions finish, with the given outcome (default DONE). */
  releaseActions(outcome?: "done" | "error"): void;
  readonly knobs: HilServerKnobs;
  /** Stops the networking daemon (a crashed daemon, a slow switch): queued actions stay PENDING. */
  pauseDaemon(): void;
  /** Starts it again: the actions queued meanwhile are applied, in order. */
  resumeDaemon(): void;
  close(): Promise<void>;
}

const ACTION_PATH = /^\/v0\/node\/([^/]+)\/nic\/([^/]+)\/(?:connect|detach)_network$/;
/** A path segment decoded, or "" when its escapes are malformed (the router answers 404 then). */
function decoded(segment: string | undefined): string {
  try {
    return decodeURIComponent(segment ?? "");
  } catch {
    return "";
  }
}
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The admin token of fixture nodes without their own `obmd` (the fixture's default). */
const BUILT_IN_ADMIN_TOKEN = "admin-token";

/** HIL's calls to obmd; any failure is HIL's HTML 500 (spec §5.5). */
async function callObmd(node: NodeState, method: "POST" | "DELETE"): Promise<string> {
  const auth = Buffer.from(`admin:${node.obmd.adminToken}`).toString("base64");
  const failed = () =>
    new HilHtmlError(500, `Failed to ${method === "POST" ? "get" : "revoke"} a token for node ${node.name}`);
  let response: Response;
  try {
    response = await fetch(`${node.obmd.uri}/token`, {
      method,
      headers: { Authorization: `Basic ${auth}` },
      signal: AbortSignal.timeout(10_000),
    });
  } catch {
    throw failed();
  }
  const text = await response.text();
  if (response.status !== 200) throw failed();
  if (method === "DELETE") return "";
  const token = (() => {
    try {
      return (JSON.parse(text) as { token?: unknown }).token;
    } catch {
      return undefined;
    }
  })();
  if (typeof token !== "string") throw failed();
  return token;
}

const CONTENT_TYPE = "text/html; charset=utf-8";
const ARGS_INVALID = "Request arguments are not valid for this request";

const HTML_404 =
  '<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 3.2 Final//EN">\n<title>404 Not Found</title>\n<h1>Not Found</h1>\n<p>The requested URL was not found on the server.  If you entered the URL manually please check your spelling and try again.</p>\n';
const HTML_405 =
  '<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 3.2 Final//EN">\n<title>405 Method Not Allowed</title>\n<h1>Method Not Allowed</h1>\n<p>The method is not allowed for the requested URL.</p>\n';
const html500 = (message: string) =>
  `<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 3.2 Final//EN">\n<title>500 Internal Server Error</title>\n<h1>Internal Server Error</h1>\n<p>${message.replace(/[<>&]/g, "")}</p>\n`;

const ERROR_TYPES: Record<number, string> = {
  400: "ValidationError",
  401: "AuthorizationError",
  404: "NotFoundError",
  409: "BlockedError",
};

function send(res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, {
    "Content-Type": CONTENT_TYPE,
    "Content-Length": String(Buffer.byteLength(body)),
    ...headers,
  });
  res.end(body);
}

const sendError = (res: ServerResponse, error: HilApiError) =>
  send(res, error.status, JSON.stringify({ type: error.type, msg: error.message }));

function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** HIL's database auth (spec §2): 401 without or with a wrong password, 404 for an unknown user. */
function authenticate(state: HilState, mode: "none" | "basic", header: string | undefined): Caller {
  if (mode === "none") return { user: null, admin: true, canAccess: () => true };
  const failed = () =>
    authorization("Authentication failed. Authentication is required to use this service.");
  const match = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header ?? "");
  if (!match?.[1]) throw failed();
  const decoded = Buffer.from(match[1], "base64").toString("utf8");
  const colon = decoded.indexOf(":");
  if (colon < 0) throw failed();
  const name = decoded.slice(0, colon);
  const user = state.users.get(name);
  if (!user) throw notFound(`User ${name} does not exist.`);
  // A plain comparison: HIL's 165 ms sha512_crypt would only slow tests down.
  if (!sameSecret(user.password, decoded.slice(colon + 1))) throw failed();
  return { user: name, admin: user.isAdmin, canAccess: (p) => user.isAdmin || user.projects.has(p) };
}

function parseQuery(route: Route, url: URL): Record<string, string> {
  const query: Record<string, string> = {};
  for (const key of new Set(url.searchParams.keys())) {
    const values = url.searchParams.getAll(key);
    if (!route.query?.includes(key)) throw validation(ARGS_INVALID);
    if (values.length > 1) throw validation("Parameter specified more than once");
    if (values[0] === "") throw validation("Empty parameter specified");
    query[key] = values[0] as string;
  }
  return query;
}

/** Merges the JSON body with the path parameters and checks the route's strict schema (spec §1). */
function parseBody(
  route: Route,
  req: IncomingMessage,
  raw: string,
  params: Record<string, string>,
): Record<string, unknown> {
  if (req.method === "GET") {
    if (raw.length > 0) throw validation("GET request made with a non-empty request body");
    return {};
  }
  const type = (req.headers["content-type"] ?? "").split(";")[0]?.trim().toLowerCase();
  // Flask consumes form bodies into request.form, so HIL sees no body at all.
  const form = type === "application/x-www-form-urlencoded" || type === "multipart/form-data";
  let body: unknown = {};
  if (!form && raw.length > 0) {
    try {
      body = JSON.parse(raw);
    } catch {
      throw validation("The request body is not valid JSON");
    }
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) throw validation(ARGS_INVALID);
  const record = body as Record<string, unknown>;
  if (Object.keys(record).some((key) => key in params)) throw validation(ARGS_INVALID);
  if (route.body === "passthrough") return record;
  const result = z.strictObject(route.body ?? {}).safeParse(record);
  if (!result.success) throw validation(ARGS_INVALID);
  return result.data;
}

function findRoute(
  method: string,
  segments: readonly string[],
  mode: "none" | "basic",
): { route: Route; params: Record<string, string> } | "not_found" | "method" {
  let pathMatched = false;
  for (const route of routes) {
    if (route.basicAuthOnly && mode !== "basic") continue;
    const params = matchPattern(route.pattern, segments);
    if (!params) continue;
    pathMatched = true;
    if (route.method === method) return { route, params };
  }
  return pathMatched ? "method" : "not_found";
}

function writeReply(res: ServerResponse, reply: Reply): void {
  if ("empty" in reply) send(res, reply.status, "");
  else if ("location" in reply) {
    send(
      res,
      307,
      `<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 3.2 Final//EN">\n<title>Redirecting...</title>\n<h1>Redirecting...</h1>\n<p>You should be redirected automatically to target URL: <a href="${reply.location}">${reply.location}</a>.  If not click the link.`,
      { Location: reply.location },
    );
  } else send(res, reply.status, JSON.stringify(reply.json));
}

function faultBody(fault: StatusFault): string {
  if (typeof fault.body === "string") return fault.body;
  if (fault.body) return JSON.stringify(fault.body);
  const type = ERROR_TYPES[fault.status];
  if (type) return JSON.stringify({ type, msg: "injected fault" });
  return fault.status >= 500 ? html500("injected fault") : "";
}

/**
 * HIL's networking daemon: applies each queued action after `actionMs`, one at a time when
 * `serialDaemon` is set (real HIL runs one daemon), and holds them back while paused.
 */
function createNetworkingDaemon(knobs: HilServerKnobs, applyAction: (action: NetworkingAction) => void) {
  const timers = new Set<NodeJS.Timeout>();
  const backlog: NetworkingAction[] = [];
  const queue: NetworkingAction[] = [];
  let paused = false;
  let busy = false;

  const later = (ms: number, fn: () => void) => {
    const timer = setTimeout(() => {
      timers.delete(timer);
      fn();
    }, ms);
    timers.add(timer);
  };
  const apply = (action: NetworkingAction) => {
    if (paused) backlog.push(action);
    else applyAction(action);
  };
  /** The serial daemon: the head of the queue takes `actionMs`, then the next one starts. */
  const applyNext = () => {
    const action = queue.shift();
    busy = action !== undefined;
    if (action)
      later(knobs.actionMs, () => {
        apply(action);
        applyNext();
      });
  };
  return {
    schedule(action: NetworkingAction) {
      if (!knobs.serialDaemon) return later(knobs.actionMs, () => apply(action));
      queue.push(action);
      if (!busy) applyNext();
    },
    pause() {
      paused = true;
    },
    resume() {
      paused = false;
      for (const action of backlog.splice(0)) applyAction(action);
    },
    stop() {
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      queue.length = 0;
    },
  };
}

interface HandlerDeps {
  state: HilState;
  mode: "none" | "basic";
  knobs: HilServerKnobs;
  faults: ReturnType<typeof createFaultEngine>;
  obmd: ReturnType<typeof createObmdEndpoint>;
  schedule: (action: NetworkingAction) => void;
}

/** Without the NIC lock, a connect/detach checks the NIC as it was on arrival. */
function viewOnArrival(deps: HandlerDeps, method: string, pathname: string): (nic: NicState) => NicView {
  const match = method === "POST" && !deps.knobs.nicLock ? ACTION_PATH.exec(pathname) : null;
  const nic = match && deps.state.nodes.get(decoded(match[1]))?.nics.get(decoded(match[2]));
  const snapshot = nic ? snapshotView(nic) : undefined;
  return (live) => (snapshot && live === nic ? snapshot : liveView(live));
}

/** One request: the built-in obmd, injected faults, routing, then the route's handler. */
async function handleRequest(deps: HandlerDeps, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const { faults, mode } = deps;
  const method = req.method ?? "GET";
  const url = new URL(req.url ?? "/", "http://hil.invalid");
  if (url.pathname.startsWith("/obmd/")) {
    return deps.obmd.handle(req, res, (req.url ?? "/").slice("/obmd".length), await text(req));
  }
  faults.count(method, url.pathname);
  const viewOf = viewOnArrival(deps, method, url.pathname);
  const injected = faults.take(method, url.pathname);
  // The body first: a stalled server still has the request and handles it after the client left.
  const raw = await text(req);
  if (injected.delayMs > 0) await sleep(injected.delayMs);
  if (injected.drop) {
    req.socket.destroy();
    return;
  }
  if (injected.status) return send(res, injected.status.status, faultBody(injected.status));

  let path: string;
  try {
    // Werkzeug decodes %2F before routing, so an encoded slash still splits a segment (§1).
    path = decodeURIComponent(url.pathname);
  } catch {
    return send(res, 404, HTML_404);
  }
  if (!path.startsWith("/v0/")) return send(res, 404, HTML_404);
  const found = findRoute(method, path.slice("/v0/".length).split("/"), mode);
  if (found === "not_found") return send(res, 404, HTML_404);
  if (found === "method") return send(res, 405, HTML_405);

  try {
    const query = method === "GET" ? parseQuery(found.route, url) : {};
    const body = parseBody(found.route, req, raw, found.params);
    if (mode === "basic" && deps.knobs.authCostMs > 0) await sleep(deps.knobs.authCostMs);
    const caller = authenticate(deps.state, mode, req.headers.authorization);
    const reply = await runRoute(found.route, {
      state: deps.state,
      params: found.params,
      body,
      query,
      caller,
      schedule: deps.schedule,
      outcomeFor: (node, nic) => faults.takeActionOutcome(node, nic),
      viewOf,
      authMode: mode,
      obmd: {
        token: (node) => callObmd(node, "POST"),
        revoke: async (node) => {
          await callObmd(node, "DELETE");
        },
      },
    });
    writeReply(res, reply);
  } catch (error) {
    if (error instanceof HilApiError) return sendError(res, error);
    const message = error instanceof HilHtmlError ? error.message : "Internal Server Error";
    send(res, 500, html500(message));
  }
}

/**
 * Starts a HIL-compatible server (HIL v0.4 REST API, `vlan_pool` allocator, mock switch) on a
 * loopback port, with an in-memory model seeded from `fixture` and fault-injection knobs.
 */
export async function startHilServer(options: HilServerOptions = {}): Promise<HilServer> {
  const mode = options.auth ?? "basic";
  const host = options.host ?? "127.0.0.1";
  const state = createState(options.vlanPool);
  const faults = createFaultEngine();
  const knobs: HilServerKnobs = {
    nicLock: true,
    authCostMs: 0,
    actionMs: options.actionDelayMs ?? 50,
    serialDaemon: false,
    ...options.knobs,
  };
  const applyAction = createActionApplier(state, options.switch);
  const daemon = createNetworkingDaemon(knobs, applyAction);
  const obmd = createObmdEndpoint({ adminToken: BUILT_IN_ADMIN_TOKEN });
  const deps: HandlerDeps = { state, mode, knobs, faults, obmd, schedule: daemon.schedule };
  const handle = (req: IncomingMessage, res: ServerResponse) => handleRequest(deps, req, res);

  const server = createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) send(res, 500, html500("Internal Server Error"));
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  try {
    const builtIn = `http://${host}:${port}/obmd`;
    loadFixture(state, options.fixture ?? {}, builtIn);
    for (const node of state.nodes.values()) {
      if (node.obmd.uri === `${builtIn}/node/${node.name}`) {
        obmd.nodes.set(node.name, options.machine?.(node.name) ?? createMemoryMachine());
        if (node.obmEnabled) node.obmToken = obmd.issueToken(node.name);
      }
    }
  } catch (error) {
    await new Promise<void>((resolve) => server.close(() => resolve()));
    throw error;
  }

  return {
    url: `http://${host}:${port}`,
    port,
    state,
    faults,
    obmd,
    flushActions() {
      for (const action of state.actions.values()) applyAction(action);
    },
    releaseActions(outcome = "done") {
      for (const action of state.actions.values()) {
        if (action.status === "PENDING" && action.outcome === "hold") {
          action.outcome = outcome;
          applyAction(action);
        }
      }
    },
    knobs,
    pauseDaemon: daemon.pause,
    resumeDaemon: daemon.resume,
    async close() {
      daemon.stop();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
