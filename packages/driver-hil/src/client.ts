import { BmiError, type Logger, parseInput, silentLogger } from "@bmi/core";
import { z } from "zod";
import { call, type FetchLike, type Transport } from "./http.js";
import { type ObmInit, type ObmOperation, obmRequest } from "./obm.js";
import {
  NameList,
  NetworkAttachments,
  NetworkDetails,
  NetworkingAction,
  NetworkList,
  NodeDetails,
  StatusId,
} from "./schemas.js";
import { type WaiterResult, type WaitOptions, waitForNetworkingAction } from "./waiter.js";

export { backoffDelay, type FetchLike } from "./http.js";
export { OBM_METHODS, type ObmInit, type ObmOperation } from "./obm.js";
export { DEFAULT_FIRST_POLL_MS, type WaiterResult, type WaiterState, type WaitOptions } from "./waiter.js";

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

/** HIL's safe name set (its own client's rule). */
const SAFE = /^[A-Za-z0-9 $_.+!*'(),-]+$/;

function segment(value: string, what: string): string {
  if (!SAFE.test(value)) {
    throw new BmiError("invalid_input", `invalid ${what} ${JSON.stringify(value)}: not a valid HIL name`, {
      subsystem: "isolation",
      details: { field: what },
    });
  }
  return encodeURIComponent(value);
}

const node = (name: string) => `/v0/node/${segment(name, "node")}`;
const project = (name: string) => `/v0/project/${segment(name, "project")}`;
const network = (name: string) => `/v0/network/${segment(name, "network")}`;
const nicPath = (nodeName: string, nic: string) => `${node(nodeName)}/nic/${segment(nic, "nic")}`;

/** Validated options → what every request needs. The password only goes into the header. */
function transportOf(options: HilClientOptions): Transport {
  const { fetch: fetchOption, logger, ...rest } = options;
  const config = parseInput(optionsSchema, rest, "options", "isolation");
  const { username, password } = config;
  return {
    base: config.url.replace(/\/+$/, ""),
    username,
    authorization:
      username === undefined
        ? undefined
        : `Basic ${Buffer.from(`${username}:${password ?? ""}`).toString("base64")}`,
    timeoutMs: config.timeoutMs,
    retries: config.retries,
    retryBaseMs: config.retryBaseMs,
    retryMaxMs: config.retryMaxMs,
    fetch: fetchOption ?? ((input, init) => fetch(input, init)),
    logger: logger ?? silentLogger,
    notSent: new WeakSet(),
  };
}

export type HilClient = ReturnType<typeof createHilClient>;

/**
 * A typed client for the HIL v0 REST API: one method per endpoint BMI uses, every response
 * checked with zod, errors mapped to BmiError (subsystem `isolation`), retryable failures retried
 * with exponential backoff and jitter, a timeout on every attempt. The password goes only into
 * the Authorization header: never into messages, details or logs.
 */
export function createHilClient(options: HilClientOptions) {
  const t = transportOf(options);
  const get = <S extends z.ZodType>(path: string, schema: S, o: RequestOptions) =>
    call(t, "GET", path, { schema, signal: o.signal });
  /** A networking action: queued (202) with a status id to wait for. */
  const queue = async (path: string, body: Record<string, string>, o: RequestOptions) =>
    (await call(t, "POST", path, { body, schema: StatusId, expectStatus: 202, signal: o.signal })).status_id;

  const client = {
    /** The endpoint, without credentials. */
    url: t.base,

    // Nodes
    showNode: async (name: string, o: RequestOptions = {}) => get(node(name), NodeDetails, o),
    /** `free` → nodes without a project; `all` → every node (sorted). */
    listNodes: async (which: "free" | "all", o: RequestOptions = {}) =>
      get(`/v0/nodes/${which}`, NameList, o),
    /** Sets `enabled` on the node's OBM (HIL v0.4+). */
    setObm: async (name: string, enabled: boolean, o: RequestOptions = {}) =>
      call(t, "PUT", `${node(name)}/obm`, { body: { enabled }, signal: o.signal }),
    /** An OBM call through HIL's redirect to the node's obmd; resolves with obmd's answer text. */
    obm: async (name: string, op: ObmOperation, init: ObmInit = {}) => obmRequest(t, node(name), op, init),

    // Projects
    listProjects: async (o: RequestOptions = {}) => get("/v0/projects", NameList, o),
    /** Unsorted (database order). Also the original BMI's access check. */
    listProjectNodes: async (name: string, o: RequestOptions = {}) =>
      get(`${project(name)}/nodes`, NameList, o),
    listProjectNetworks: async (name: string, o: RequestOptions = {}) =>
      get(`${project(name)}/networks`, NameList, o),
    projectConnectNode: async (name: string, nodeName: string, o: RequestOptions = {}) =>
      call(t, "POST", `${project(name)}/connect_node`, { body: { node: nodeName }, signal: o.signal }),
    projectDetachNode: async (name: string, nodeName: string, o: RequestOptions = {}) =>
      call(t, "POST", `${project(name)}/detach_node`, { body: { node: nodeName }, signal: o.signal }),

    // Networks
    showNetwork: async (name: string, o: RequestOptions = {}) => get(network(name), NetworkDetails, o),
    listNetworks: async (o: RequestOptions = {}) => get("/v0/networks", NetworkList, o),
    listNetworkAttachments: async (name: string, o: RequestOptions & { project?: string } = {}) => {
      const filter = o.project === undefined ? "" : `?project=${segment(o.project, "project")}`;
      return get(`${network(name)}/attachments${filter}`, NetworkAttachments, o);
    },

    /** Queues the change; 202 with a status id. Wait with `waitForNetworkingAction`. */
    connectNetwork: async (
      nodeName: string,
      nic: string,
      networkName: string,
      o: RequestOptions & { channel?: string } = {},
    ): Promise<string> => {
      const body: Record<string, string> = { network: networkName };
      if (o.channel !== undefined) body.channel = o.channel;
      return queue(`${nicPath(nodeName, nic)}/connect_network`, body, o);
    },
    detachNetwork: async (nodeName: string, nic: string, networkName: string, o: RequestOptions = {}) =>
      queue(`${nicPath(nodeName, nic)}/detach_network`, { network: networkName }, o),
    showNetworkingAction: async (statusId: string, o: RequestOptions = {}) =>
      get(`/v0/networking_action/${segment(statusId, "status_id")}`, NetworkingAction, o),

    /** Polls the networking action until DONE (SUCCESS) or ERROR (FAILURE), a timeout or the signal. */
    waitForNetworkingAction: (statusId: string, o: WaitOptions = {}): Promise<WaiterResult> =>
      waitForNetworkingAction(client, statusId, o),
  };
  return client;
}
