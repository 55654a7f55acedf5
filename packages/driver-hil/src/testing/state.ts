import { randomUUID } from "node:crypto";

/** A JSON error HIL answers with: `{"type": ..., "msg": ...}` and a status code (spec §3). */
export class HilApiError extends Error {
  constructor(
    readonly status: number,
    readonly type: string,
    msg: string,
  ) {
    super(msg);
    this.name = "HilApiError";
  }
}

/** HIL's non-JSON failures (allocation, OBM, switch errors): HTML 500 with the text in `<p>`. */
export class HilHtmlError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = "HilHtmlError";
  }
}

export const notFound = (msg: string) => new HilApiError(404, "NotFoundError", msg);
export const blocked = (msg: string) => new HilApiError(409, "BlockedError", msg);
export const duplicate = (msg: string) => new HilApiError(409, "DuplicateError", msg);
export const projectMismatch = (msg: string) => new HilApiError(409, "ProjectMismatchError", msg);
export const badArgument = (msg: string) => new HilApiError(400, "BadArgumentError", msg);
export const validation = (msg: string) => new HilApiError(400, "ValidationError", msg);
export const authorization = (msg: string) => new HilApiError(401, "AuthorizationError", msg);

export type ActionStatus = "PENDING" | "DONE" | "ERROR";

export interface NetworkingAction {
  id: string;
  status: ActionStatus;
  node: string;
  nic: string;
  type: "modify_port" | "revert_port";
  channel: string;
  /** null for a detach and a revert. */
  newNetwork: string | null;
  /** The network a detach removes (not shown by HIL; the daemon needs it). */
  oldNetwork: string | null;
  /** Set by fault injection: end in ERROR, or never leave PENDING. */
  outcome: "done" | "error" | "hold";
}

export interface NicState {
  label: string;
  macaddr: string;
  port: { switch: string; port: string } | null;
  /** channel → network; only applied (DONE) attachments. */
  networks: Map<string, string>;
  /** The NIC's last networking action; queuing a new one deletes it (spec §6). */
  action: NetworkingAction | null;
  /**
   * Attachment rows beyond the first for the same network: real HIL gets them when concurrent
   * connect POSTs race past its non-atomic one-action-per-NIC check (`nicLock: false`).
   */
  duplicates: { channel: string; network: string }[];
}

/** What a connect/detach request sees of its NIC: live, or as it was when the request arrived. */
export interface NicView {
  pending: boolean;
  networks: ReadonlyMap<string, string>;
}

export interface NodeState {
  name: string;
  project: string | null;
  /** label → JSON text (HIL stores values JSON-encoded, and shows them encoded again). */
  metadata: Map<string, string>;
  obmd: { uri: string; adminToken: string };
  obmEnabled: boolean;
  obmToken: string | null;
  /** Insertion order: HIL does not sort show_node's `nics`. */
  nics: Map<string, NicState>;
}

export interface NetworkState {
  name: string;
  /** A project name, or null for admin-owned. */
  owner: string | null;
  /** Projects allowed to attach; empty = public. */
  access: Set<string>;
  /** VLAN number as a string (vlan_pool allocator). */
  networkId: string;
  /** True when the id came from the pool (freed on delete). */
  allocated: boolean;
}

export interface SwitchState {
  name: string;
  type: string;
  fields: Record<string, string>;
  /** port name → the NIC cabled to it. */
  ports: Map<string, { node: string; nic: string } | null>;
}

export interface UserState {
  name: string;
  password: string;
  isAdmin: boolean;
  projects: Set<string>;
}

/** The HIL-compatible server's in-memory world. Tests may read and change it directly. */
export interface HilState {
  projects: Set<string>;
  nodes: Map<string, NodeState>;
  networks: Map<string, NetworkState>;
  switches: Map<string, SwitchState>;
  users: Map<string, UserState>;
  /** status_id → action; only each NIC's last action is kept. */
  actions: Map<string, NetworkingAction>;
  vlanPool: { first: number; last: number };
}

export function createState(vlanPool = { first: 100, last: 199 }): HilState {
  return {
    projects: new Set(),
    nodes: new Map(),
    networks: new Map(),
    switches: new Map(),
    users: new Map(),
    actions: new Map(),
    vlanPool,
  };
}

export const MOCK_SWITCH_TYPE = "http://schema.massopencloud.org/haas/v0/switches/mock";
export const newStatusId = (): string => randomUUID();

export function getNode(state: HilState, name: string): NodeState {
  const node = state.nodes.get(name);
  if (!node) throw notFound(`Node ${name} does not exist.`);
  return node;
}

export function getNic(node: NodeState, label: string): NicState {
  const nic = node.nics.get(label);
  if (!nic) throw notFound(`Nic ${label} on Node ${node.name} does not exist.`);
  return nic;
}

export function getProject(state: HilState, name: string): string {
  if (!state.projects.has(name)) throw notFound(`Project ${name} does not exist.`);
  return name;
}

export function getNetwork(state: HilState, name: string): NetworkState {
  const network = state.networks.get(name);
  if (!network) throw notFound(`Network ${name} does not exist.`);
  return network;
}

export function getSwitch(state: HilState, name: string): SwitchState {
  const sw = state.switches.get(name);
  if (!sw) throw notFound(`Switch ${name} does not exist.`);
  return sw;
}

export function getUser(state: HilState, name: string): UserState {
  const user = state.users.get(name);
  if (!user) throw notFound(`User ${name} does not exist.`);
  return user;
}

/** The two channels of a vlan_pool network (spec §4). */
export const channelsOf = (network: NetworkState): string[] => ["vlan/native", `vlan/${network.networkId}`];

export function allocateVlan(state: HilState): string {
  const used = new Set([...state.networks.values()].map((n) => n.networkId));
  for (let id = state.vlanPool.first; id <= state.vlanPool.last; id++) {
    if (!used.has(String(id))) return String(id);
  }
  throw new HilHtmlError(500, "No more networks");
}

export function isPending(nic: NicState): boolean {
  return nic.action?.status === "PENDING";
}

export const liveView = (nic: NicState): NicView => ({ pending: isPending(nic), networks: nic.networks });
export const snapshotView = (nic: NicState): NicView => ({
  pending: isPending(nic),
  networks: new Map(nic.networks),
});

/** Queues a networking action on a NIC, deleting its previous (finished) one (spec §6). */
export function queueAction(
  state: HilState,
  nic: NicState,
  action: Omit<NetworkingAction, "id" | "status" | "outcome">,
  outcome: NetworkingAction["outcome"],
): NetworkingAction {
  // A PENDING one stays: only racing POSTs (`nicLock: false`) queue beside it, and both apply.
  if (nic.action && nic.action.status !== "PENDING") state.actions.delete(nic.action.id);
  const queued: NetworkingAction = { ...action, id: newStatusId(), status: "PENDING", outcome };
  nic.action = queued;
  state.actions.set(queued.id, queued);
  return queued;
}

/** What the networking daemon does with one action: apply it and mark DONE, or mark ERROR. */
export function applyAction(state: HilState, action: NetworkingAction): void {
  if (action.status !== "PENDING" || action.outcome === "hold") return;
  if (action.outcome === "error") {
    action.status = "ERROR";
    return;
  }
  const nic = state.nodes.get(action.node)?.nics.get(action.nic);
  if (nic) {
    if (action.type === "revert_port") {
      nic.networks.clear();
      nic.duplicates.length = 0;
    } else if (action.newNetwork !== null) {
      // A second row for a network the NIC already carries: what real HIL's racing POSTs leave.
      if ([...nic.networks.values()].includes(action.newNetwork)) {
        nic.duplicates.push({ channel: action.channel, network: action.newNetwork });
      } else nic.networks.set(action.channel, action.newNetwork);
    } else {
      for (const [channel, network] of nic.networks) {
        if (network === action.oldNetwork) nic.networks.delete(channel);
      }
    }
  }
  action.status = "DONE";
}

/** Every (node, nic, channel, network) attached to a network. */
export function attachmentsOf(
  state: HilState,
  network: string,
): { node: NodeState; nic: NicState; channel: string }[] {
  const out: { node: NodeState; nic: NicState; channel: string }[] = [];
  for (const node of state.nodes.values()) {
    for (const nic of node.nics.values()) {
      for (const [channel, name] of nic.networks) {
        if (name === network) out.push({ node, nic, channel });
      }
    }
  }
  return out;
}

export const sorted = (values: Iterable<string>): string[] => [...values].sort();
