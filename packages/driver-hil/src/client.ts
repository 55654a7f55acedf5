import { BmiError, type Logger, parseInput, silentLogger } from "@bmi/core";
import { z } from "zod";
import { errorFromResponse, type HilErrorDetails, obmdError } from "./errors.js";
import {
  type ActionStatus,
  NameList,
  NetworkAttachments,
  NetworkDetails,
  NetworkingAction,
  NetworkList,
  NodeDetails,
  StatusId,
} from "./schemas.js";

/** HIL's OBM calls (spec §5.5) and the method each takes. */
export const OBM_METHODS = {
  power_on: "POST",
  power_off: "POST",
  power_cycle: "POST",
  boot_device: "PUT",
  power_status: "GET",
} as const;
export type ObmOperation = keyof typeof OBM_METHODS;

export interface ObmInit {
  /** `{"force"}` for power_cycle, `{"bootdev"}` for boot_device (obmd needs both). */
  body?: unknown;
  signal?: AbortSignal | undefined;
}

interface RawResponse {
  status: number;
  text: string;
  location: string | null;
}

/** Where an obmd redirect points; sent without HIL's credentials. */
interface RedirectTarget {
  url: string;
}

interface SendInit {
  body?: unknown;
  signal?: AbortSignal | undefined;
  accept?: (status: number) => boolean;
  target?: RedirectTarget;
  sideEffects?: "hil" | "none" | "unknown";
  mapError?: (status: number, text: string) => BmiError;
}

/** The subset of `fetch` the client uses (Node 20's global fetch by default). */
export type FetchLike = (input: string, init: RequestInit) => Promise<Response>;

export interface HilClientOptions {
  /** HIL endpoint, e.g. `http://hil:80` (`/v0/...` is appended; a path prefix is kept). */
  url: string;
  /** HTTP Basic credentials (HIL database auth); omit both for HIL's null auth. */
  username?: string;
  password?: string;
  /** Per-attempt timeout; default 10 s. */
  timeoutMs?: number;
  /**
   * Extra attempts for retryable failures (busy, unavailable, timeout); default 3. A POST is
   * repeated only when HIL certainly did not apply it (see `repeatable` and the README).
   */
  retries?: number;
  /** First backoff delay; doubled per attempt, with jitter; default 100 ms. */
  retryBaseMs?: number;
  /** Cap on one backoff delay; default 2 s. */
  retryMaxMs?: number;
  fetch?: FetchLike;
  logger?: Logger;
}

export interface RequestOptions {
  signal?: AbortSignal;
}

export interface WaitOptions {
  /** Give up after this long; default 60 s. */
  maxWaitMs?: number;
  /**
   * First poll delay; default 25 ms, doubling (with jitter) up to `maxDelayMs`. HIL's docs poll
   * every 0.25-1 s; starting lower costs a few cheap GETs and saves up to 250 ms per action.
   */
  minDelayMs?: number;
  /** Longest poll delay; default 1 s. */
  maxDelayMs?: number;
  signal?: AbortSignal;
  /**
   * What the action was meant to do. When its status disappears (404: a newer action on the
   * NIC replaced it) the waiter checks show_node for this instead (spec §6).
   */
  expect?: { node: string; nic: string; network: string; attached: boolean };
}

/** The aws-sdk waiter states. */
export type WaiterState = "SUCCESS" | "FAILURE" | "TIMEOUT" | "ABORTED";

export interface WaiterResult {
  state: WaiterState;
  /** The last status seen, when there was one. */
  action?: NetworkingAction;
  reason?: string;
}

const optionsSchema = z.object({
  url: z
    .string()
    .url({ error: "url must be an http(s) URL" })
    .refine((u) => /^https?:\/\//i.test(u), { error: "url must be an http(s) URL" })
    .refine((u) => !new URL(u).username && !new URL(u).password, {
      error: "url must not embed credentials; pass username and password",
    }),
  username: z.string().min(1).optional(),
  password: z.string().optional(),
  timeoutMs: z.number().int().positive().default(10_000),
  retries: z.number().int().min(0).max(20).default(3),
  retryBaseMs: z.number().int().min(0).default(100),
  retryMaxMs: z.number().int().min(0).default(2_000),
});

/** HIL's safe name set (its own client's rule); `/` only where `allowSlash`. */
const SAFE = /^[A-Za-z0-9 $_.+!*'(),-]+$/;
const SAFE_WITH_SLASH = /^[A-Za-z0-9 /$_.+!*'(),-]+$/;

function segment(value: string, what: string, allowSlash = false): string {
  if (!(allowSlash ? SAFE_WITH_SLASH : SAFE).test(value)) {
    throw new BmiError("invalid_input", `invalid ${what} ${JSON.stringify(value)}: not a valid HIL name`, {
      subsystem: "isolation",
      details: { field: what },
    });
  }
  return allowSlash ? value.split("/").map(encodeURIComponent).join("/") : encodeURIComponent(value);
}

const cancelled = (what: string, cause?: unknown) =>
  new BmiError("cancelled", `HIL ${what} was cancelled`, { subsystem: "isolation", cause });

/** Sleeps, or rejects with `cancelled` when the signal fires. */
function sleep(ms: number, signal: AbortSignal | undefined, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(cancelled(what));
    const onAbort = () => {
      clearTimeout(timer);
      reject(cancelled(what));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** Transport errors raised before a request left this machine: repeating them cannot duplicate it. */
const NOT_SENT = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "UND_ERR_CONNECT_TIMEOUT",
]);

/** The errno of a fetch failure (undici puts it on `cause`). */
function errnoOf(error: unknown): string | undefined {
  const cause = error instanceof Error ? (error.cause ?? error) : error;
  const code = (cause as { code?: unknown } | undefined)?.code;
  return typeof code === "string" ? code : undefined;
}

/** The first delay between polls of a networking action (then doubling, with jitter). */
export const DEFAULT_FIRST_POLL_MS = 25;

/** Exponential backoff with "equal jitter": half fixed, half random, so retries spread out. */
export function backoffDelay(attempt: number, baseMs: number, maxMs: number, random = Math.random): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** attempt);
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}

export type HilClient = ReturnType<typeof createHilClient>;

/**
 * A typed client for the HIL v0 REST API: one method per endpoint BMI uses, every response
 * checked with zod, errors mapped to BmiError (subsystem `isolation`), retryable failures retried
 * with exponential backoff and jitter, a timeout on every attempt. The password goes only into
 * the Authorization header: never into messages, details or logs.
 */
export function createHilClient(options: HilClientOptions) {
  const { fetch: fetchOption, logger: loggerOption, ...rest } = options;
  const config = parseInput(optionsSchema, rest, "options", "isolation");
  const doFetch: FetchLike = fetchOption ?? ((input, init) => fetch(input, init));
  const logger = loggerOption ?? silentLogger;
  const base = config.url.replace(/\/+$/, "");
  /** Transport failures that certainly happened before sending (see `repeatable`). */
  const notSent = new WeakSet<BmiError>();
  const authorization =
    config.username === undefined
      ? undefined
      : `Basic ${Buffer.from(`${config.username}:${config.password ?? ""}`).toString("base64")}`;

  /**
   * One HTTP exchange. `target` sends it to an absolute URL (an obmd redirect) without HIL's
   * credentials; `path` is then only the label used in messages (the URL's token stays out).
   */
  async function attempt(
    method: string,
    path: string,
    body: unknown,
    signal: AbortSignal | undefined,
    target?: RedirectTarget,
  ): Promise<RawResponse> {
    const timeout = AbortSignal.timeout(config.timeoutMs);
    const combined = signal ? AbortSignal.any([signal, timeout]) : timeout;
    const headers: Record<string, string> = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (authorization && !target) headers.Authorization = authorization;
    const service = target ? "obmd" : "HIL";
    try {
      const response = await doFetch(target ? target.url : `${base}${path}`, {
        method,
        headers,
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        redirect: "manual",
        signal: combined,
      });
      // HIL labels JSON as text/html, so the content type is ignored (spec §1).
      const location = response.headers.get("location");
      return { status: response.status, text: await response.text(), location };
    } catch (error) {
      const details: HilErrorDetails = { method, path };
      if (signal?.aborted) {
        // Aborted in flight: a POST may already be with HIL (or obmd), which applies it anyway.
        const failure = cancelled(`${method} ${path}`, error);
        if (method === "POST") failure.details.outcome = "unknown";
        throw failure;
      }
      if (timeout.aborted) {
        throw new BmiError("timeout", `${service} ${method} ${path} timed out after ${config.timeoutMs} ms`, {
          subsystem: "isolation",
          details: { ...details },
        });
      }
      const reason =
        error instanceof Error ? (error.cause instanceof Error ? error.cause.message : error.message) : "";
      const failure = new BmiError(
        "unavailable",
        `${service} ${method} ${path}: cannot reach the service (${reason || "network error"})`,
        {
          subsystem: "isolation",
          details: { ...details },
        },
      );
      if (NOT_SENT.has(errnoOf(error) ?? "")) notSent.add(failure);
      throw failure;
    }
  }

  /**
   * Whether a failed attempt may be repeated. Reads and PUTs (idempotent) are repeated on any
   * retryable failure. A POST (connect/detach network, connect/detach node) is repeated only
   * when HIL certainly did not apply it: the connection was never made, HIL answered 409 busy
   * (it refused the action), or 500/503 (its transaction was rolled back). After a timeout, a
   * reset or a 502/504 the POST may have been applied, and a second one is how real HIL ends
   * up with duplicate attachment rows: the outcome is unknown and the caller must look.
   */
  function repeatable(
    method: string,
    error: BmiError,
    status: number | undefined,
    sideEffects: "hil" | "none" | "unknown",
  ): boolean {
    if (!error.retryable) return false;
    if (method !== "POST" || sideEffects === "none") return true;
    if (status === undefined) return notSent.has(error);
    return sideEffects === "hil" && (status === 409 || status === 500 || status === 503);
  }

  /** A POST that may have reached HIL: never repeated, marked so callers look before acting. */
  function unknownOutcome(error: BmiError, what: string, service: string): BmiError {
    return new BmiError(
      error.code,
      `${error.message}; ${service} may have applied ${what} anyway, so it was not repeated`,
      { subsystem: "isolation", retryable: false, details: { ...error.details, outcome: "unknown" } },
    );
  }

  /**
   * One request with bounded retries (see `repeatable`), resolving with the accepted response.
   * `sideEffects`: what a POST does where it lands: `hil` (a transaction), `none` (HIL's OBM calls
   * only answer a redirect), `unknown` (obmd: a power action, repeated only if never sent).
   */
  async function send(method: string, path: string, init: SendInit): Promise<RawResponse> {
    const what = `${method} ${path}`;
    const service = init.target ? "obmd" : "HIL";
    const accept = init.accept ?? ((status: number) => status >= 200 && status < 300);
    const mapError =
      init.mapError ?? ((status: number, text: string) => hilError(method, path, status, text));
    for (let tries = 0; ; tries++) {
      if (init.signal?.aborted) throw cancelled(what);
      let error: BmiError;
      let status: number | undefined;
      try {
        const response = await attempt(method, path, init.body, init.signal, init.target);
        status = response.status;
        logger.debug({ hil: { method, path, status, attempt: tries + 1 } }, `${service} request`);
        if (accept(status)) return response;
        error = mapError(status, response.text);
      } catch (thrown) {
        if (!(thrown instanceof BmiError)) throw thrown;
        error = thrown;
      }
      error.details.attempts = tries + 1;
      const again = repeatable(method, error, status, init.sideEffects ?? "hil");
      // obmd answered (e.g. 500: its BMC driver failed): not repeated here, but the caller may retry.
      const answeredByObmd = init.sideEffects === "unknown" && status !== undefined;
      if (!again && !answeredByObmd && method === "POST" && error.retryable && error.code !== "cancelled") {
        logger.warn(
          { hil: { method, path, code: error.code, attempts: tries + 1 } },
          `${service} POST outcome unknown`,
        );
        throw unknownOutcome(error, what, service);
      }
      if (!again || error.code === "cancelled" || tries >= config.retries) {
        logger.debug(
          { hil: { method, path, code: error.code, attempts: tries + 1 } },
          `${service} request failed`,
        );
        throw error;
      }
      await sleep(backoffDelay(tries, config.retryBaseMs, config.retryMaxMs), init.signal, what);
    }
  }

  function hilError(method: string, path: string, status: number, text: string): BmiError {
    if (status >= 200 && status < 300) {
      return new BmiError("internal", `HIL ${method} ${path}: unexpected status ${status}`, {
        subsystem: "isolation",
        details: { method, path, status },
      });
    }
    return errorFromResponse(status, text, {
      method,
      path,
      ...(config.username ? { username: config.username } : {}),
    });
  }

  /** One call with bounded retries; `schema` undefined = the body must be empty. */
  async function call<S extends z.ZodType | undefined>(
    method: string,
    path: string,
    init: { body?: unknown; schema?: S; expectStatus?: number; signal?: AbortSignal | undefined } = {},
  ): Promise<S extends z.ZodType ? z.output<S> : undefined> {
    const { expectStatus } = init;
    const response = await send(method, path, {
      body: init.body,
      signal: init.signal,
      ...(expectStatus === undefined ? {} : { accept: (status: number) => status === expectStatus }),
    });
    return parseBody(`${method} ${path}`, response.status, response.text, init.schema) as S extends z.ZodType
      ? z.output<S>
      : undefined;
  }

  /**
   * An OBM call (HIL v0.4, spec §5.5): HIL answers 307 to the node's obmd, and the same method
   * and body go there without HIL's credentials. A token obmd rejects (401: the OBM was re-enabled
   * meanwhile, so HIL holds a new one) is fetched again once. HIL v0.3 answers 200 itself.
   */
  async function obm(nodeName: string, op: ObmOperation, init: ObmInit = {}): Promise<string> {
    const method = OBM_METHODS[op];
    const path = `${node(nodeName)}/${op}`;
    for (let fetches = 0; ; fetches++) {
      const hop = await send(method, path, {
        body: init.body,
        signal: init.signal,
        sideEffects: "none",
        accept: (status) => status === 307 || (status >= 200 && status < 300),
      });
      if (hop.status !== 307) return hop.text;
      const url = redirectUrl(hop.location, path);
      const label = url.pathname;
      try {
        const answer = await send(method, label, {
          body: init.body,
          signal: init.signal,
          target: { url: url.href },
          sideEffects: "unknown",
          mapError: (status, text) => obmdError(method, label, status, text),
        });
        return answer.text;
      } catch (error) {
        const stale = error instanceof BmiError && error.details.status === 401 && fetches === 0;
        if (!stale) throw error;
      }
    }
  }

  function redirectUrl(location: string | null, path: string): URL {
    let url: URL | undefined;
    try {
      url = location ? new URL(location, `${base}/`) : undefined;
    } catch {
      url = undefined;
    }
    if (!url || !/^https?:$/.test(url.protocol)) {
      throw new BmiError("internal", `HIL ${path}: a 307 without a usable http(s) Location`, {
        subsystem: "isolation",
        details: { path },
      });
    }
    return url;
  }

  function parseBody(what: string, status: number, text: string, schema: z.ZodType | undefined): unknown {
    if (schema === undefined) return undefined;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (cause) {
      throw new BmiError("internal", `HIL ${what}: the ${status} response is not JSON`, {
        subsystem: "isolation",
        cause,
      });
    }
    const result = schema.safeParse(value);
    if (!result.success) {
      throw new BmiError("internal", `HIL ${what}: unexpected response shape`, {
        subsystem: "isolation",
        cause: result.error,
        details: { issues: result.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`) },
      });
    }
    return result.data;
  }

  const node = (name: string) => `/v0/node/${segment(name, "node")}`;
  const project = (name: string) => `/v0/project/${segment(name, "project")}`;
  const network = (name: string) => `/v0/network/${segment(name, "network")}`;

  const client = {
    /** The endpoint, without credentials. */
    url: base,

    // Nodes
    showNode: async (name: string, o: RequestOptions = {}) =>
      call("GET", node(name), { schema: NodeDetails, signal: o.signal }),
    /** `free` → nodes without a project; `all` → every node (sorted). */
    listNodes: async (which: "free" | "all", o: RequestOptions = {}) =>
      call("GET", `/v0/nodes/${which}`, { schema: NameList, signal: o.signal }),
    /** Sets `enabled` on the node's OBM (HIL v0.4+). */
    setObm: async (name: string, enabled: boolean, o: RequestOptions = {}) =>
      call("PUT", `${node(name)}/obm`, { body: { enabled }, signal: o.signal }),
    /** An OBM call through HIL's redirect to the node's obmd; resolves with obmd's answer text. */
    obm,

    // Projects
    listProjects: async (o: RequestOptions = {}) =>
      call("GET", "/v0/projects", { schema: NameList, signal: o.signal }),
    /** Unsorted (database order). Also the original BMI's access check. */
    listProjectNodes: async (name: string, o: RequestOptions = {}) =>
      call("GET", `${project(name)}/nodes`, { schema: NameList, signal: o.signal }),
    listProjectNetworks: async (name: string, o: RequestOptions = {}) =>
      call("GET", `${project(name)}/networks`, { schema: NameList, signal: o.signal }),
    projectConnectNode: async (name: string, nodeName: string, o: RequestOptions = {}) =>
      call("POST", `${project(name)}/connect_node`, { body: { node: nodeName }, signal: o.signal }),
    projectDetachNode: async (name: string, nodeName: string, o: RequestOptions = {}) =>
      call("POST", `${project(name)}/detach_node`, { body: { node: nodeName }, signal: o.signal }),

    // Networks
    showNetwork: async (name: string, o: RequestOptions = {}) =>
      call("GET", network(name), { schema: NetworkDetails, signal: o.signal }),
    listNetworks: async (o: RequestOptions = {}) =>
      call("GET", "/v0/networks", { schema: NetworkList, signal: o.signal }),
    listNetworkAttachments: async (name: string, o: RequestOptions & { project?: string } = {}) =>
      call(
        "GET",
        `${network(name)}/attachments${o.project === undefined ? "" : `?project=${segment(o.project, "project")}`}`,
        { schema: NetworkAttachments, signal: o.signal },
      ),

    /** Queues the change; 202 with a status id. Wait with `waitForNetworkingAction`. */
    connectNetwork: async (
      nodeName: string,
      nic: string,
      networkName: string,
      o: RequestOptions & { channel?: string } = {},
    ): Promise<string> => {
      const body: Record<string, string> = { network: networkName };
      if (o.channel !== undefined) body.channel = o.channel;
      const path = `${node(nodeName)}/nic/${segment(nic, "nic")}/connect_network`;
      return (await call("POST", path, { body, schema: StatusId, expectStatus: 202, signal: o.signal }))
        .status_id;
    },
    detachNetwork: async (nodeName: string, nic: string, networkName: string, o: RequestOptions = {}) => {
      const path = `${node(nodeName)}/nic/${segment(nic, "nic")}/detach_network`;
      const body = { network: networkName };
      return (await call("POST", path, { body, schema: StatusId, expectStatus: 202, signal: o.signal }))
        .status_id;
    },
    showNetworkingAction: async (statusId: string, o: RequestOptions = {}) =>
      call("GET", `/v0/networking_action/${segment(statusId, "status_id")}`, {
        schema: NetworkingAction,
        signal: o.signal,
      }),

    /**
     * Polls a networking action until it is DONE (SUCCESS) or ERROR (FAILURE), with backoff and
     * jitter, up to `maxWaitMs` (TIMEOUT) or until `signal` fires (ABORTED). A 404 means a newer
     * action replaced it: then show_node decides, when `expect` says what to look for.
     */
    async waitForNetworkingAction(statusId: string, o: WaitOptions = {}): Promise<WaiterResult> {
      const maxWaitMs = o.maxWaitMs ?? 60_000;
      const minDelayMs = o.minDelayMs ?? DEFAULT_FIRST_POLL_MS;
      const maxDelayMs = o.maxDelayMs ?? 1_000;
      const deadline = Date.now() + maxWaitMs;
      let last: NetworkingAction | undefined;
      const withLast = (r: WaiterResult): WaiterResult => (last ? { ...r, action: last } : r);
      for (let polls = 0; ; polls++) {
        if (o.signal?.aborted) return withLast({ state: "ABORTED", reason: "the signal was aborted" });
        try {
          last = await client.showNetworkingAction(statusId, { signal: o.signal });
        } catch (error) {
          if (!(error instanceof BmiError)) throw error;
          if (error.code === "cancelled")
            return withLast({ state: "ABORTED", reason: "the signal was aborted" });
          if (error.code !== "not_found") throw error;
          if (!o.expect)
            return withLast({ state: "FAILURE", reason: "the action was replaced by a newer one" });
          const details = await client.showNode(o.expect.node, { signal: o.signal });
          const attached = Object.values(
            details.nics.find((n) => n.label === o.expect?.nic)?.networks ?? {},
          ).includes(o.expect.network);
          return attached === o.expect.attached
            ? { state: "SUCCESS", reason: "replaced by a newer action; the node shows the expected state" }
            : {
                state: "FAILURE",
                reason: "replaced by a newer action; the node does not show the expected state",
              };
        }
        const status: ActionStatus = last.status;
        if (status === "DONE") return { state: "SUCCESS", action: last };
        if (status === "ERROR")
          return { state: "FAILURE", action: last, reason: "the switch reported an error" };
        const remaining = deadline - Date.now();
        if (remaining <= 0)
          return withLast({ state: "TIMEOUT", reason: `still PENDING after ${maxWaitMs} ms` });
        const delay = Math.min(remaining, backoffDelay(polls, minDelayMs, maxDelayMs));
        try {
          await sleep(delay, o.signal, "wait");
        } catch {
          return withLast({ state: "ABORTED", reason: "the signal was aborted" });
        }
      }
    },
  };
  return client;
}
