import { z } from "zod";
import {
  allocateVlan,
  attachmentsOf,
  authorization,
  badArgument,
  blocked,
  channelsOf,
  duplicate,
  getNetwork,
  getNic,
  getNode,
  getProject,
  getSwitch,
  getUser,
  HilApiError,
  HilHtmlError,
  type HilState,
  isPending,
  MOCK_SWITCH_TYPE,
  type NetworkingAction,
  type NetworkState,
  type NicState,
  type NicView,
  type NodeState,
  notFound,
  projectMismatch,
  queueAction,
  sorted,
  validation,
} from "./state.js";

/** Who is calling, after authentication (spec §2). */
export interface Caller {
  user: string | null;
  admin: boolean;
  /** access(P): may act for project P (true for every project when admin). */
  canAccess(project: string): boolean;
}

export interface RouteContext {
  state: HilState;
  params: Record<string, string>;
  body: Record<string, unknown>;
  query: Record<string, string>;
  caller: Caller;
  /** Hands a queued action to the networking daemon. */
  schedule(action: NetworkingAction): void;
  /** Decides how the next action ends (fault injection). */
  outcomeFor(node: string, nic: string): NetworkingAction["outcome"];
  /**
   * The NIC as a connect/detach sees it for HIL's one-action-per-NIC checks: live by default;
   * with `nicLock: false`, as it was when the request arrived (real HIL checks without a lock).
   */
  viewOf(nic: NicState): NicView;
  authMode: "none" | "basic";
  /** HIL's calls to a node's obmd (`PUT /node/<n>/obm`): fetch a new token, or invalidate it. */
  obmd: { token(node: NodeState): Promise<string>; revoke(node: NodeState): Promise<void> };
}

export type Reply =
  | { status: 200; json: unknown }
  | { status: 200 | 202; json: unknown }
  | { status: 200; empty: true }
  | { status: 307; location: string };

export interface Route {
  method: "GET" | "PUT" | "POST" | "DELETE" | "PATCH";
  /** Segments: `name` static, `:x` one segment, `*x` one or more (switch port names). */
  pattern: string;
  /** Allowed body keys (strict: no others). Absent = no body keys. `passthrough` = the handler checks. */
  body?: z.ZodRawShape | "passthrough";
  /** Allowed query keys (GET only). */
  query?: string[];
  /** Only with database auth (HIL's `hil.ext.auth.database` routes). */
  basicAuthOnly?: boolean;
  /** Administrator-only: checked before the handler's look-ups, as HIL's `require_admin()` comes first. */
  admin?: true;
  handle(ctx: RouteContext): Reply | Promise<Reply>;
}

/** Flask's page for an unhandled exception (what HIL answers for a bug such as duplicate rows). */
export const FLASK_500 =
  "The server encountered an internal error and was unable to complete your request. Either the server is overloaded or there is an error in the application.";

const ADMIN_ONLY = "This operation is administrator-only.";
const NO_PROJECT_ACCESS = "You do not have access to the required project.";

const ok = (): Reply => ({ status: 200, empty: true });
const json = (value: unknown): Reply => ({ status: 200, json: value });

/** access(P); for objects without a project "access" means admin only (spec §2). */
const hasAccess = (caller: Caller, project: string | null): boolean =>
  project === null ? caller.admin : caller.canAccess(project);

function requireAccess(caller: Caller, project: string | null): void {
  if (!hasAccess(caller, project)) throw authorization(project === null ? ADMIN_ONLY : NO_PROJECT_ACCESS);
}

/** Runs a route: its declared admin check (access to no project = admin), then its handler. */
export function runRoute(route: Route, ctx: RouteContext): Reply | Promise<Reply> {
  if (route.admin) requireAccess(ctx.caller, null);
  return route.handle(ctx);
}

// The objects a path names, or 404 (spec §3).
const projectOf = (ctx: RouteContext) => getProject(ctx.state, ctx.params.project ?? "");
const nodeOf = (ctx: RouteContext) => getNode(ctx.state, ctx.params.node ?? "");
const nicOf = (ctx: RouteContext, node: NodeState) => getNic(node, ctx.params.nic ?? "");
const networkOf = (ctx: RouteContext) => getNetwork(ctx.state, ctx.params.network ?? "");
const switchOf = (ctx: RouteContext) => getSwitch(ctx.state, ctx.params.switch ?? "");
const userOf = (ctx: RouteContext) => getUser(ctx.state, ctx.params.user ?? "");

/** The path's project and the body's node, for a caller with access to the project. */
function projectAndBodyNode(ctx: RouteContext) {
  const project = projectOf(ctx);
  const node = getNode(ctx.state, ctx.body.node as string);
  requireAccess(ctx.caller, project);
  return { project, node };
}

/** The path's user and the body's project (the user routes are admin-only). */
const userAndBodyProject = (ctx: RouteContext) => ({
  user: userOf(ctx),
  project: getProject(ctx.state, ctx.body.project as string),
});

/** The path's node, for a caller with access to its project (admin only when it is free). */
function accessibleNode(ctx: RouteContext): NodeState {
  const node = nodeOf(ctx);
  requireAccess(ctx.caller, node.project);
  return node;
}

const str = z.string();
const anyJson = z.custom<unknown>((v) => v !== undefined);

/** A map's entries as an object, keys sorted (how HIL shows metadata and a NIC's networks). */
const sortedObject = (map: ReadonlyMap<string, string>) =>
  Object.fromEntries(sorted(map.keys()).map((key) => [key, map.get(key)]));

function showNode(node: NodeState, admin: boolean): unknown {
  return {
    metadata: sortedObject(node.metadata),
    name: node.name,
    nics: [...node.nics.values()].map((nic) => ({
      label: nic.label,
      macaddr: nic.macaddr,
      networks: sortedObject(nic.networks),
      ...(admin ? { port: nic.port?.port ?? null, switch: nic.port?.switch ?? null } : {}),
    })),
    project: node.project,
  };
}

const isPublic = (network: NetworkState) => network.access.size === 0;

function showAction(action: NetworkingAction): unknown {
  return {
    channel: action.channel,
    new_network: action.newNetwork,
    nic: action.nic,
    node: action.node,
    status: action.status,
    type: action.type,
  };
}

function anyPendingOnNetwork(state: HilState, network: string): boolean {
  for (const action of state.actions.values()) {
    if (action.status !== "PENDING") continue;
    if (action.newNetwork === network || action.oldNetwork === network) return true;
  }
  return false;
}

/** The node, NIC and body network of a connect/detach, checked in HIL's order (spec §5.4). */
function nicRequest(ctx: RouteContext) {
  const node = nodeOf(ctx);
  const nic = nicOf(ctx, node);
  const network = getNetwork(ctx.state, ctx.body.network as string);
  if (node.project === null) throw projectMismatch("Node not in project");
  requireAccess(ctx.caller, node.project);
  return { node, nic, network, project: node.project, view: ctx.viewOf(nic) };
}

/** Queues a networking action on a NIC and hands it to the daemon. */
function queueOn(
  ctx: RouteContext,
  node: NodeState,
  nic: NicState,
  change: Pick<NetworkingAction, "type" | "channel" | "newNetwork" | "oldNetwork">,
): NetworkingAction {
  const action = queueAction(
    ctx.state,
    nic,
    { node: node.name, nic: nic.label, ...change },
    ctx.outcomeFor(node.name, nic.label),
  );
  ctx.schedule(action);
  return action;
}

const ACTIVE_ON_NIC = "A networking operation is already active on the nic.";

/** The NIC cabled to a switch port, or 404 when none. */
function cabledNic(ctx: RouteContext) {
  const sw = switchOf(ctx);
  const port = ctx.params.port ?? "";
  if (!sw.ports.has(port)) throw notFound(`Port ${port} on switch ${sw.name} does not exist.`);
  const cable = sw.ports.get(port);
  return { sw, port, cable: cable ?? null };
}

/** HIL's user routes: `hil.ext.auth.database` only, administrator-only. */
const USER_ROUTE = { basicAuthOnly: true, admin: true } as const;

export const routes: Route[] = [
  // 5.1 Projects
  {
    method: "GET",
    pattern: "projects",
    admin: true,
    handle: ({ state }) => json(sorted(state.projects)),
  },
  {
    method: "PUT",
    pattern: "project/:project",
    admin: true,
    handle: ({ state, params }) => {
      const name = params.project ?? "";
      if (state.projects.has(name)) throw duplicate(`Project ${name} already exists.`);
      state.projects.add(name);
      return ok();
    },
  },
  {
    method: "DELETE",
    pattern: "project/:project",
    admin: true,
    handle: (ctx) => {
      const { state } = ctx;
      const project = projectOf(ctx);
      if ([...state.nodes.values()].some((n) => n.project === project))
        throw blocked("Project has nodes still");
      for (const network of state.networks.values()) {
        if (network.owner === project) throw blocked("Project still has networks");
        if (network.access.has(project)) throw blocked("Project still has access to networks");
      }
      state.projects.delete(project);
      return ok();
    },
  },
  {
    method: "POST",
    pattern: "project/:project/connect_node",
    body: { node: str },
    handle: (ctx) => {
      const { project, node } = projectAndBodyNode(ctx);
      if (node.project !== null) throw blocked("Node is already owned by a project.");
      node.project = project;
      return ok();
    },
  },
  {
    method: "POST",
    pattern: "project/:project/detach_node",
    body: { node: str },
    handle: (ctx) => {
      const { project, node } = projectAndBodyNode(ctx);
      if (node.project !== project) throw notFound("Node not in project");
      if (node.obmEnabled) throw blocked("The node's OBM must be disabled before it is detached.");
      for (const nic of node.nics.values()) {
        if (nic.networks.size > 0) throw blocked("Node attached to a network");
        if (isPending(nic)) throw blocked("A networking operation is pending on the node.");
      }
      node.project = null;
      return ok();
    },
  },
  {
    method: "GET",
    pattern: "project/:project/nodes",
    handle: (ctx) => {
      const project = projectOf(ctx);
      requireAccess(ctx.caller, project);
      return json([...ctx.state.nodes.values()].filter((n) => n.project === project).map((n) => n.name));
    },
  },
  {
    method: "GET",
    pattern: "project/:project/networks",
    handle: (ctx) => {
      const project = projectOf(ctx);
      requireAccess(ctx.caller, project);
      const networks = [...ctx.state.networks.values()].filter((n) => n.access.has(project));
      return json(sorted(networks.map((n) => n.name)));
    },
  },

  // 5.2 Nodes and NICs
  {
    method: "PUT",
    pattern: "node/:node",
    admin: true,
    body: {
      obmd: z.strictObject({ uri: str, admin_token: str }),
      metadata: z.record(z.string(), anyJson).optional(),
    },
    handle: ({ state, params, body }) => {
      const name = params.node ?? "";
      if (state.nodes.has(name)) throw duplicate(`Node ${name} already exists.`);
      const obmd = body.obmd as { uri: string; admin_token: string };
      if (!/^https?:\/\//.test(obmd.uri)) throw badArgument("obmd uri must be an http or https URL");
      const metadata = (body.metadata ?? {}) as Record<string, unknown>;
      state.nodes.set(name, {
        name,
        project: null,
        metadata: new Map(Object.entries(metadata).map(([k, v]) => [k, JSON.stringify(v)])),
        obmd: { uri: obmd.uri, adminToken: obmd.admin_token },
        obmEnabled: false,
        obmToken: null,
        nics: new Map(),
      });
      return ok();
    },
  },
  {
    method: "DELETE",
    pattern: "node/:node",
    admin: true,
    handle: (ctx) => {
      const node = nodeOf(ctx);
      if (node.project !== null) throw blocked("Node is in a project; detach it first.");
      if (node.nics.size > 0) throw blocked("Node has nics; remove them before deleting the node.");
      ctx.state.nodes.delete(node.name);
      return ok();
    },
  },
  {
    method: "PUT",
    pattern: "node/:node/nic/:nic",
    admin: true,
    body: { macaddr: str },
    handle: (ctx) => {
      const node = nodeOf(ctx);
      const label = ctx.params.nic ?? "";
      if (node.nics.has(label)) throw duplicate(`Nic ${label} on Node ${node.name} already exists.`);
      node.nics.set(label, {
        label,
        macaddr: ctx.body.macaddr as string,
        port: null,
        networks: new Map(),
        duplicates: [],
        action: null,
      });
      return ok();
    },
  },
  {
    method: "DELETE",
    pattern: "node/:node/nic/:nic",
    admin: true,
    handle: (ctx) => {
      const { state } = ctx;
      const node = nodeOf(ctx);
      const nic = nicOf(ctx, node);
      if (node.project !== null) throw blocked("Node is in a project; NICs cannot be removed.");
      if (nic.action) state.actions.delete(nic.action.id);
      if (nic.port) state.switches.get(nic.port.switch)?.ports.set(nic.port.port, null);
      node.nics.delete(nic.label);
      return ok();
    },
  },
  {
    method: "GET",
    pattern: "node/:node",
    handle: (ctx) => {
      const node = nodeOf(ctx);
      // A free node is visible to anyone (spec §5.2), so no admin check for it.
      if (node.project !== null) requireAccess(ctx.caller, node.project);
      return json(showNode(node, ctx.caller.admin));
    },
  },
  {
    method: "GET",
    pattern: "nodes/:is_free",
    handle: ({ state, params }) => {
      const all = [...state.nodes.values()];
      const chosen = params.is_free === "free" ? all.filter((n) => n.project === null) : all;
      return json(sorted(chosen.map((n) => n.name)));
    },
  },
  {
    method: "PUT",
    pattern: "node/:node/metadata/:label",
    admin: true,
    body: { value: anyJson },
    handle: (ctx) => {
      nodeOf(ctx).metadata.set(ctx.params.label ?? "", JSON.stringify(ctx.body.value));
      return ok();
    },
  },
  {
    method: "DELETE",
    pattern: "node/:node/metadata/:label",
    admin: true,
    handle: (ctx) => {
      const node = nodeOf(ctx);
      const label = ctx.params.label ?? "";
      if (!node.metadata.delete(label))
        throw notFound(`Metadata ${label} on Node ${node.name} does not exist.`);
      return ok();
    },
  },

  // 5.3 Networks
  {
    method: "PUT",
    pattern: "network/:network",
    body: { owner: str, access: str, net_id: str },
    handle: ({ state, params, body, caller }) => {
      const name = params.network ?? "";
      if (state.networks.has(name)) throw duplicate(`Network ${name} already exists.`);
      const owner = body.owner === "admin" ? null : getProject(state, body.owner as string);
      const access = body.access === "" ? null : getProject(state, body.access as string);
      const netId = body.net_id as string;
      requireAccess(caller, owner);
      let networkId: string;
      let allocated = false;
      if (owner !== null) {
        if (access !== owner) throw badArgument("Project-owned networks must be accessible by the owner.");
        if (netId !== "") throw badArgument("Project-owned networks must use network ID allocation");
        networkId = allocateVlan(state);
        allocated = true;
      } else if (netId === "") {
        networkId = allocateVlan(state);
        allocated = true;
      } else {
        const vlan = Number(netId);
        if (!/^\d+$/.test(netId) || vlan < 1 || vlan > 4096) throw badArgument("Invalid net_id");
        networkId = String(vlan);
        if ([...state.networks.values()].some((n) => n.networkId === networkId)) {
          throw blocked("Network ID is not available.");
        }
      }
      state.networks.set(name, {
        name,
        owner,
        access: new Set(access === null ? [] : [access]),
        networkId,
        allocated,
      });
      return ok();
    },
  },
  {
    method: "DELETE",
    pattern: "network/:network",
    handle: (ctx) => {
      const { state } = ctx;
      const network = networkOf(ctx);
      requireAccess(ctx.caller, network.owner);
      if (attachmentsOf(state, network.name).length > 0) throw blocked("Network still connected to nodes.");
      if (anyPendingOnNetwork(state, network.name))
        throw blocked("There are pending actions on this network.");
      state.networks.delete(network.name);
      return ok();
    },
  },
  {
    method: "GET",
    pattern: "network/:network",
    handle: (ctx) => {
      const { caller } = ctx;
      const network = networkOf(ctx);
      const seesAll = hasAccess(caller, network.owner);
      if (!isPublic(network) && !seesAll && ![...network.access].some((p) => caller.canAccess(p))) {
        throw authorization("You do not have access to this network.");
      }
      const connected: Record<string, string[]> = {};
      for (const { node, nic } of attachmentsOf(ctx.state, network.name)) {
        if (!seesAll && (node.project === null || !caller.canAccess(node.project))) continue;
        connected[node.name] = [...(connected[node.name] ?? []), nic.label];
      }
      return json({
        access: isPublic(network) ? null : sorted(network.access),
        channels: channelsOf(network),
        "connected-nodes": connected,
        name: network.name,
        owner: network.owner ?? "admin",
      });
    },
  },
  {
    method: "GET",
    pattern: "networks",
    handle: ({ state, caller }) => {
      const out: Record<string, unknown> = {};
      for (const name of sorted(state.networks.keys())) {
        const network = state.networks.get(name) as NetworkState;
        if (!caller.admin && !isPublic(network)) continue;
        out[name] = {
          network_id: network.networkId,
          projects: isPublic(network) ? null : sorted(network.access),
        };
      }
      return json(out);
    },
  },
  {
    method: "GET",
    pattern: "network/:network/attachments",
    query: ["project"],
    handle: (ctx) => {
      const { state, query, caller } = ctx;
      const network = networkOf(ctx);
      const project = query.project === undefined ? undefined : getProject(state, query.project);
      const ownerOk = hasAccess(caller, network.owner);
      const projectOk = project !== undefined && network.access.has(project) && caller.canAccess(project);
      if (!ownerOk && !projectOk) throw authorization(NO_PROJECT_ACCESS);
      const out: Record<string, unknown> = {};
      for (const { node, nic, channel } of attachmentsOf(state, network.name)) {
        if (project !== undefined && node.project !== project) continue;
        out[node.name] = { channel, nic: nic.label, project: node.project };
      }
      return json(out);
    },
  },
  {
    method: "PUT",
    pattern: "network/:network/access/:project",
    handle: (ctx) => {
      const network = networkOf(ctx);
      const project = projectOf(ctx);
      requireAccess(ctx.caller, network.owner);
      if (network.access.has(project)) {
        throw duplicate(`Network ${network.name} is already accessible by project ${project}`);
      }
      network.access.add(project);
      return ok();
    },
  },
  {
    method: "DELETE",
    pattern: "network/:network/access/:project",
    handle: (ctx) => {
      const { caller } = ctx;
      const network = networkOf(ctx);
      const project = projectOf(ctx);
      if (!network.access.has(project)) {
        throw notFound(`Project ${project} does not have access to network ${network.name}`);
      }
      const ownerOk = hasAccess(caller, network.owner);
      if (!caller.admin && !ownerOk && !caller.canAccess(project)) throw authorization(NO_PROJECT_ACCESS);
      if (network.owner === project) throw blocked("Owner project's access cannot be revoked.");
      if (attachmentsOf(ctx.state, network.name).some((a) => a.node.project === project)) {
        throw blocked("Project's nodes are still attached to the network.");
      }
      network.access.delete(project);
      return ok();
    },
  },

  // 5.4 Connecting NICs to networks
  {
    method: "POST",
    pattern: "node/:node/nic/:nic/connect_network",
    body: { network: str, channel: str.optional() },
    handle: (ctx) => {
      const { node, nic, network, project, view } = nicRequest(ctx);
      if (!nic.port) throw notFound("No port is connected to given nic.");
      if (view.pending) throw blocked(ACTIVE_ON_NIC);
      if (!isPublic(network) && !network.access.has(project)) {
        throw projectMismatch("Project does not have access to given network.");
      }
      if ([...view.networks.values()].includes(network.name)) {
        throw blocked("The network is already attached to the nic.");
      }
      const channel = (ctx.body.channel as string | undefined) ?? "vlan/native";
      if (view.networks.has(channel)) throw blocked("The channel is already in use on the nic.");
      if (!channelsOf(network).includes(channel)) {
        throw badArgument(`Channel '${channel}', is not legal for this network.`);
      }
      const change = { type: "modify_port", channel, newNetwork: network.name, oldNetwork: null } as const;
      return { status: 202, json: { status_id: queueOn(ctx, node, nic, change).id } };
    },
  },
  {
    method: "POST",
    pattern: "node/:node/nic/:nic/detach_network",
    body: { network: str },
    handle: (ctx) => {
      const { node, nic, network, view } = nicRequest(ctx);
      if (view.pending) throw blocked(ACTIVE_ON_NIC);
      const channel = [...view.networks].find(([, n]) => n === network.name)?.[0];
      if (channel === undefined) throw badArgument("The network is not attached to the nic.");
      // HIL looks the attachment up with one_or_none(): two rows raise MultipleResultsFound.
      if (nic.duplicates.some((d) => d.network === network.name)) throw new HilHtmlError(500, FLASK_500);
      const change = { type: "modify_port", channel, newNetwork: null, oldNetwork: network.name } as const;
      return { status: 202, json: { status_id: queueOn(ctx, node, nic, change).id } };
    },
  },
  {
    method: "GET",
    pattern: "networking_action/:status_id",
    handle: ({ state, params, caller }) => {
      const action = state.actions.get(params.status_id ?? "");
      if (!action) throw notFound("status_id not found");
      requireAccess(caller, state.nodes.get(action.node)?.project ?? null);
      return json(showAction(action));
    },
  },

  // 5.5 OBM (HIL takes a token from the node's obmd, and answers power calls with a redirect there)
  {
    method: "PUT",
    pattern: "node/:node/obm",
    body: { enabled: z.boolean() },
    handle: async (ctx) => {
      const node = accessibleNode(ctx);
      // Re-enabling fetches a new token from obmd, which invalidates earlier redirect URLs (§5.5).
      if (ctx.body.enabled === true) node.obmToken = await ctx.obmd.token(node);
      else {
        await ctx.obmd.revoke(node);
        node.obmToken = null;
      }
      node.obmEnabled = ctx.body.enabled as boolean;
      return ok();
    },
  },
  ...(
    [
      ["POST", "power_cycle", { force: z.boolean().optional() }],
      ["POST", "power_on", undefined],
      ["POST", "power_off", undefined],
      ["PUT", "boot_device", { bootdev: str }],
      ["GET", "power_status", undefined],
      ["GET", "console", undefined],
    ] as const
  ).map(
    ([method, op, body]): Route => ({
      method,
      pattern: `node/:node/${op}`,
      ...(body ? { body } : {}),
      handle: (ctx) => {
        const node = accessibleNode(ctx);
        if (!node.obmEnabled || node.obmToken === null) throw blocked("OBM is not enabled");
        return { status: 307, location: `${node.obmd.uri}/${op}?token=${node.obmToken}` };
      },
    }),
  ),

  // 5.6 Switches and ports (admin only). Routes with a suffix after the port come first, as in
  // werkzeug, where the more specific rule wins.
  {
    method: "POST",
    pattern: "switch/:switch/port/*port/connect_nic",
    admin: true,
    body: { node: str, nic: str },
    handle: (ctx) => {
      const { sw, port, cable } = cabledNic(ctx);
      const node = getNode(ctx.state, ctx.body.node as string);
      const nic = getNic(node, ctx.body.nic as string);
      if (cable) throw duplicate(`Port ${port} is already connected to a nic.`);
      if (nic.port) throw duplicate(`Nic ${nic.label} is already connected to a port.`);
      sw.ports.set(port, { node: node.name, nic: nic.label });
      nic.port = { switch: sw.name, port };
      return ok();
    },
  },
  {
    method: "POST",
    pattern: "switch/:switch/port/*port/detach_nic",
    admin: true,
    handle: (ctx) => {
      const { sw, port, cable } = cabledNic(ctx);
      if (!cable) throw notFound(`Port ${port} is not connected to a nic.`);
      const node = ctx.state.nodes.get(cable.node);
      if (node?.project) throw blocked("The port is attached to a node which is not free.");
      const nic = node?.nics.get(cable.nic);
      if (nic) nic.port = null;
      sw.ports.set(port, null);
      return ok();
    },
  },
  {
    method: "POST",
    pattern: "switch/:switch/port/*port/revert",
    admin: true,
    handle: (ctx) => {
      const { cable } = cabledNic(ctx);
      if (!cable) throw notFound("No nic is connected to given port.");
      const node = getNode(ctx.state, cable.node);
      const nic = getNic(node, cable.nic);
      if (isPending(nic)) throw blocked(ACTIVE_ON_NIC);
      const change = { type: "revert_port", channel: "", newNetwork: null, oldNetwork: null } as const;
      return { status: 200, json: { status_id: queueOn(ctx, node, nic, change).id } };
    },
  },
  {
    method: "PUT",
    pattern: "switch/:switch/port/*port",
    admin: true,
    handle: (ctx) => {
      const sw = switchOf(ctx);
      const port = ctx.params.port ?? "";
      if (sw.ports.has(port)) throw duplicate(`Port ${port} on switch ${sw.name} already exists.`);
      sw.ports.set(port, null);
      return ok();
    },
  },
  {
    method: "DELETE",
    pattern: "switch/:switch/port/*port",
    admin: true,
    handle: (ctx) => {
      const { sw, port, cable } = cabledNic(ctx);
      if (cable) throw blocked("Port is connected to a nic.");
      sw.ports.delete(port);
      return ok();
    },
  },
  {
    method: "GET",
    pattern: "switch/:switch/port/*port",
    admin: true,
    handle: (ctx) => {
      const { cable } = cabledNic(ctx);
      if (!cable) return json({});
      const nic = ctx.state.nodes.get(cable.node)?.nics.get(cable.nic);
      return json({ networks: nic ? sortedObject(nic.networks) : {}, nic: cable.nic, node: cable.node });
    },
  },
  {
    method: "PUT",
    pattern: "switch/:switch",
    admin: true,
    body: "passthrough",
    handle: ({ state, params, body }) => {
      const name = params.switch ?? "";
      const { type, ...fields } = body;
      if (type !== MOCK_SWITCH_TYPE) throw validation("Request arguments are not valid for this request");
      const mockFields = z.strictObject({ hostname: str, username: str, password: str }).safeParse(fields);
      if (!mockFields.success) throw validation("Request arguments are not valid for this request");
      if (state.switches.has(name)) throw duplicate(`Switch ${name} already exists.`);
      state.switches.set(name, { name, type, fields: mockFields.data, ports: new Map() });
      return ok();
    },
  },
  {
    method: "DELETE",
    pattern: "switch/:switch",
    admin: true,
    handle: (ctx) => {
      const sw = switchOf(ctx);
      if (sw.ports.size > 0) throw blocked("Switch has ports; delete them first.");
      ctx.state.switches.delete(sw.name);
      return ok();
    },
  },
  {
    method: "GET",
    pattern: "switch/:switch",
    admin: true,
    handle: (ctx) => {
      const sw = switchOf(ctx);
      return json({
        capabilities: ["nativeless-trunk-mode"],
        name: sw.name,
        ports: sorted(sw.ports.keys()).map((label) => ({ label })),
      });
    },
  },
  {
    method: "GET",
    pattern: "switches",
    admin: true,
    handle: ({ state }) => json(sorted(state.switches.keys())),
  },

  // 5.7 Users (database auth only)
  {
    method: "GET",
    pattern: "auth/basic/users",
    ...USER_ROUTE,
    handle: ({ state }) => {
      const out: Record<string, unknown> = {};
      for (const name of sorted(state.users.keys())) {
        const user = getUser(state, name);
        out[name] = { is_admin: user.isAdmin, projects: sorted(user.projects) };
      }
      return json(out);
    },
  },
  {
    method: "PUT",
    pattern: "auth/basic/user/:user",
    ...USER_ROUTE,
    body: { password: str, is_admin: z.boolean().optional() },
    handle: ({ state, params, body }) => {
      const name = params.user ?? "";
      if (state.users.has(name)) throw duplicate(`User ${name} already exists.`);
      state.users.set(name, {
        name,
        password: body.password as string,
        isAdmin: (body.is_admin as boolean | undefined) ?? false,
        projects: new Set(),
      });
      return ok();
    },
  },
  {
    method: "DELETE",
    pattern: "auth/basic/user/:user",
    ...USER_ROUTE,
    handle: (ctx) => {
      ctx.state.users.delete(userOf(ctx).name);
      return ok();
    },
  },
  {
    method: "PATCH",
    pattern: "auth/basic/user/:user",
    ...USER_ROUTE,
    body: { is_admin: z.boolean() },
    handle: (ctx) => {
      const user = userOf(ctx);
      if (user.name === ctx.caller.user)
        throw new HilApiError(409, "IllegalStateError", "Cannot set own admin status");
      user.isAdmin = ctx.body.is_admin as boolean;
      return ok();
    },
  },
  {
    method: "POST",
    pattern: "auth/basic/user/:user/add_project",
    ...USER_ROUTE,
    body: { project: str },
    handle: (ctx) => {
      const { user, project } = userAndBodyProject(ctx);
      if (user.projects.has(project)) throw duplicate(`User ${user.name} is already in project ${project}`);
      user.projects.add(project);
      return ok();
    },
  },
  {
    method: "POST",
    pattern: "auth/basic/user/:user/remove_project",
    ...USER_ROUTE,
    body: { project: str },
    handle: (ctx) => {
      const { user, project } = userAndBodyProject(ctx);
      if (!user.projects.delete(project)) throw notFound(`User ${user.name} is not in project ${project}`);
      return ok();
    },
  },

  // 5.8
  {
    method: "GET",
    pattern: "active_extensions",
    admin: true,
    handle: ({ authMode }) =>
      json(
        sorted([
          authMode === "basic" ? "hil.ext.auth.database" : "hil.ext.auth.null",
          "hil.ext.network_allocators.vlan_pool",
          "hil.ext.switches.mock",
        ]),
      ),
  },
];

/** Path parameters when `segments` fit `pattern`, else undefined. */
export function matchPattern(
  pattern: string,
  segments: readonly string[],
): Record<string, string> | undefined {
  const parts = pattern.split("/");
  const star = parts.findIndex((p) => p.startsWith("*"));
  const params: Record<string, string> = {};
  const fit = (part: string, segment: string | undefined): boolean => {
    if (segment === undefined || segment === "") return false;
    if (part.startsWith(":")) {
      params[part.slice(1)] = segment;
      return true;
    }
    return part === segment;
  };
  if (star < 0) {
    if (parts.length !== segments.length) return undefined;
    return parts.every((part, i) => fit(part, segments[i])) ? params : undefined;
  }
  const after = parts.length - star - 1;
  if (segments.length < parts.length) return undefined;
  for (let i = 0; i < star; i++) if (!fit(parts[i] as string, segments[i])) return undefined;
  for (let i = 0; i < after; i++) {
    if (!fit(parts[star + 1 + i] as string, segments[segments.length - after + i])) return undefined;
  }
  const rest = segments.slice(star, segments.length - after);
  if (rest.some((s) => s === "")) return undefined;
  params[(parts[star] as string).slice(1)] = rest.join("/");
  return params;
}
