import { z } from "zod";
import type { NodeInfo } from "../../domain/model.js";
import { MacAddress, NetworkName, NicLabel, NodeName, ProjectName } from "../../domain/names.js";
import { BmiError } from "../../errors/bmi-error.js";
import type { CallOptions } from "../../ports/common.js";
import { driverKit } from "../../ports/driver-kit.js";
import type { IsolationDriver, NetworkAttachment } from "../../ports/isolation.js";
import { createFaultGate } from "./fault-gate.js";

const DEFAULT_CHANNEL = "vlan/native";

export interface MemoryIsolationNodeSeed {
  name: string;
  /** The owning project, or null/absent for a free node. */
  project?: string | null;
  nics: { label: string; mac: string }[];
}

export interface MemoryIsolationNetworkSeed {
  name: string;
  /** Projects allowed to attach; null/absent = public (HIL's empty access list). */
  projects?: string[] | null;
}

export interface MemoryIsolationOptions {
  nodes: MemoryIsolationNodeSeed[];
  /**
   * Known networks (a bare string is a public network). When absent, any well-formed network
   * name is accepted as a public network.
   */
  networks?: (string | MemoryIsolationNetworkSeed)[];
  /** Reported as `capabilities.networks`; default true. */
  networksCapability?: boolean;
}

/** Which driver method a failure is injected into. */
export type MemoryIsolationOperation =
  | "node"
  | "authorize"
  | "attach"
  | "detach"
  | "attachments"
  | "networkAttachments";

export interface MemoryIsolation extends IsolationDriver {
  /**
   * Makes the next `times` calls of `operation` throw `error` (default: a retryable `unavailable`)
   * before doing anything, the way an unreachable HIL would.
   */
  failNext(operation: MemoryIsolationOperation, error?: BmiError, times?: number): void;
  /** Moves a node to a project (HIL `connect_node`) or frees it (null), for tests. */
  setOwner(node: string, project: string | null): void;
  /** Every attachment, for assertions. */
  readonly allAttachments: readonly NetworkAttachment[];
}

const nodeSeedSchema = z.object({
  name: NodeName,
  project: ProjectName.nullable().optional(),
  nics: z.array(z.object({ label: NicLabel, mac: MacAddress })),
});
const networkSeedSchema = z.union([
  NetworkName,
  z.object({ name: NetworkName, projects: z.array(ProjectName).nullable().optional() }),
]);
const optionsSchema = z.object({
  nodes: z.array(nodeSeedSchema),
  networks: z.array(networkSeedSchema).optional(),
  networksCapability: z.boolean().optional(),
});

const attachmentSchema = z.object({
  node: NodeName,
  nic: NicLabel,
  network: NetworkName,
  channel: z.string().min(1).max(100).optional(),
});

interface NodeState {
  name: string;
  project: string | null;
  nics: { label: string; mac: string }[];
}

const kit = driverKit("isolation");

const fail = (code: "not_found" | "forbidden" | "conflict", message: string, details = {}) =>
  new BmiError(code, message, { subsystem: "isolation", details });

/** SEC-2: a project acts only on its own nodes (HIL's wording). */
function requireOwner(node: NodeState, project: string): void {
  if (node.project === project) return;
  throw fail(
    "forbidden",
    node.project === null
      ? `node ${node.name} is free: it does not belong to project ${project}`
      : `node ${node.name} does not belong to project ${project}`,
    { node: node.name, project },
  );
}

/**
 * HIL's rules for an attach: the node is in a project the network admits (`access` null = all),
 * a network rides on a NIC once (the same attach again is a no-op), one network per channel.
 */
function addAttachment(
  attachments: NetworkAttachment[],
  node: NodeState,
  a: NetworkAttachment,
  access: string[] | null,
): void {
  if (node.project === null) throw fail("conflict", `node ${a.node} is not in a project`, { node: a.node });
  if (access !== null && !access.includes(node.project)) {
    throw fail("conflict", `project ${node.project} may not use network ${a.network}`, {
      network: a.network,
      project: node.project,
    });
  }
  const onNic = attachments.filter((x) => x.node === a.node && x.nic === a.nic);
  const same = onNic.find((x) => x.network === a.network);
  if (same) {
    if (same.channel === a.channel) return;
    throw fail("conflict", `network ${a.network} is already attached to ${a.nic} on ${same.channel}`, {
      channel: same.channel,
    });
  }
  if (onNic.some((x) => x.channel === a.channel)) {
    throw fail("conflict", `channel ${a.channel} is already in use on ${a.node}/${a.nic}`, {
      channel: a.channel,
    });
  }
  attachments.push({ node: a.node, nic: a.nic, network: a.network, channel: a.channel });
}

const info = (node: NodeState): NodeInfo => ({
  name: node.name,
  project: node.project,
  nics: node.nics.map((nic) => ({ label: nic.label, mac: nic.mac })),
});

/** Each seeded network's access list (null = public); undefined when no networks were seeded. */
function networkAccess(seeds: z.output<typeof optionsSchema>["networks"]) {
  if (seeds === undefined) return undefined;
  return new Map(seeds.map((n) => (typeof n === "string" ? [n, null] : [n.name, n.projects ?? null])));
}

/**
 * An in-memory IsolationDriver with HIL's rules: free and foreign nodes are refused by
 * `authorize`, a network rides on a NIC once, one network per channel, a free node cannot be
 * attached, and networks with an access list admit only those projects.
 */
export function createMemoryIsolation(options: MemoryIsolationOptions): MemoryIsolation {
  const parsed = kit.input(optionsSchema, options, "options");
  const nodes = new Map<string, NodeState>(
    parsed.nodes.map((seed) => [
      seed.name,
      { name: seed.name, project: seed.project ?? null, nics: seed.nics },
    ]),
  );
  const networks = networkAccess(parsed.networks);
  const attachments: NetworkAttachment[] = [];
  const gate = createFaultGate<MemoryIsolationOperation>("isolation");
  const enter = (operation: MemoryIsolationOperation, callOptions?: CallOptions) =>
    gate.enter(operation, callOptions);

  const lookup = (name: string): NodeState => {
    const node = nodes.get(name);
    if (!node) throw fail("not_found", `node ${name} does not exist`, { node: name });
    return node;
  };

  const checkNic = (node: NodeState, nic: string) => {
    if (!node.nics.some((n) => n.label === nic)) {
      throw fail("not_found", `NIC ${nic} on node ${node.name} does not exist`, { node: node.name, nic });
    }
  };

  const checkNetwork = (network: string): string[] | null => {
    if (!networks) return null;
    if (!networks.has(network)) throw fail("not_found", `network ${network} does not exist`, { network });
    return networks.get(network) ?? null;
  };

  return {
    name: "memory",
    capabilities: { networks: parsed.networksCapability ?? true },

    async node(name, callOptions) {
      const valid = kit.input(NodeName, name, "node");
      enter("node", callOptions);
      return info(lookup(valid));
    },

    async authorize(project, name, callOptions) {
      const validProject = kit.input(ProjectName, project, "project");
      const valid = kit.input(NodeName, name, "node");
      enter("authorize", callOptions);
      const node = lookup(valid);
      requireOwner(node, validProject);
      return info(node);
    },

    async attach(attachment, callOptions) {
      const a = kit.input(attachmentSchema, attachment, "attachment");
      enter("attach", callOptions);
      const node = lookup(a.node);
      checkNic(node, a.nic);
      const access = checkNetwork(a.network);
      addAttachment(attachments, node, { ...a, channel: a.channel ?? DEFAULT_CHANNEL }, access);
    },

    async detach(attachment, callOptions) {
      const a = kit.input(attachmentSchema, attachment, "attachment");
      enter("detach", callOptions);
      const node = lookup(a.node);
      checkNic(node, a.nic);
      checkNetwork(a.network);
      const index = attachments.findIndex(
        (x) => x.node === a.node && x.nic === a.nic && x.network === a.network,
      );
      if (index >= 0) attachments.splice(index, 1);
    },

    async attachments(name, callOptions) {
      const valid = kit.input(NodeName, name, "node");
      enter("attachments", callOptions);
      lookup(valid);
      return attachments.filter((x) => x.node === valid).map((x) => ({ ...x }));
    },

    async networkAttachments(network, callOptions) {
      const valid = kit.input(NetworkName, network, "network");
      enter("networkAttachments", callOptions);
      checkNetwork(valid);
      return attachments.filter((x) => x.network === valid).map((x) => ({ ...x }));
    },

    failNext: (operation, error, times) => gate.failNext(operation, error, times),

    setOwner(name, project) {
      lookup(name).project = project;
    },

    get allAttachments() {
      return attachments.map((x) => ({ ...x }));
    },
  };
}
