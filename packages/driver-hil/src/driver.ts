import {
  type BmiConfig,
  BmiError,
  type CallOptions,
  type IsolationDriver,
  MacAddress,
  type NetworkAttachment,
  NetworkName,
  NicLabel,
  type NodeInfo,
  NodeName,
  ProjectName,
  registrar,
  TOKENS,
} from "@bmi/core";
import { z } from "zod";
import { createHilClient, DEFAULT_FIRST_POLL_MS, type HilClient, type HilClientOptions } from "./client.js";
import { createNicActions, kit } from "./nic-actions.js";
import type { NetworkAttachments, NodeDetails } from "./schemas.js";

export interface HilIsolationOptions extends HilClientOptions {
  /** Channel for attachments that name none; default: HIL's own default (`vlan/native`). */
  channel?: string;
  /** How long attach/detach wait for HIL's networking daemon; default 60 s. */
  actionTimeoutMs?: number;
  /** First delay between polls of a networking action; default 25 ms (doubles up to 1 s). */
  pollMs?: number;
  /** Reported as `capabilities.networks`; false for HIL v0.2 (no status ids). Default true. */
  networks?: boolean;
}

const attachmentSchema = z.object({
  node: NodeName,
  nic: NicLabel,
  network: NetworkName,
  channel: z
    .string()
    .regex(/^[A-Za-z0-9/_.-]{1,100}$/, { error: "channel must look like vlan/native" })
    .optional(),
});

const driverOptionsSchema = z.object({
  channel: z.string().min(1).optional(),
  actionTimeoutMs: z.number().int().positive().optional(),
  networks: z.boolean().optional(),
  pollMs: z.number().int().positive().optional(),
});

function toNodeInfo(details: NodeDetails): NodeInfo {
  const nics: NodeInfo["nics"] = [];
  const unusable: string[] = [];
  for (const nic of details.nics) {
    // HIL never validates macaddr; a NIC without a usable MAC cannot get boot files, so it is left out.
    const mac = MacAddress.safeParse(nic.macaddr);
    if (mac.success) nics.push({ label: nic.label, mac: mac.data });
    else unusable.push(nic.label);
  }
  return {
    name: details.name,
    project: details.project,
    nics,
    ...(unusable.length > 0 ? { unusableNics: unusable } : {}),
  };
}

/**
 * The IsolationDriver over HIL's REST API (v0.3+). `authorize` requires the node to be owned by
 * the project (SEC-2); attach/detach queue a networking action and wait for it to finish.
 */
export function createHilIsolation(options: HilIsolationOptions): IsolationDriver & { client: HilClient } {
  const { channel, actionTimeoutMs, networks, pollMs, ...clientOptions } = options;
  const driverOptions = kit.input(
    driverOptionsSchema,
    { channel, actionTimeoutMs, networks, pollMs },
    "options",
  );
  const minDelayMs = driverOptions.pollMs ?? DEFAULT_FIRST_POLL_MS;
  const client = createHilClient(clientOptions);
  const maxWaitMs = driverOptions.actionTimeoutMs ?? 60_000;

  const check = kit.checkSignal;

  const actions = createNicActions({
    client,
    maxWaitMs,
    minDelayMs,
    ...(driverOptions.channel === undefined ? {} : { defaultChannel: driverOptions.channel }),
  });

  return {
    name: "hil",
    capabilities: { networks: driverOptions.networks ?? true },
    client,

    async node(name, o) {
      const valid = kit.input(NodeName, name, "node");
      check(o, "node");
      return toNodeInfo(await client.showNode(valid, { signal: o?.signal }));
    },

    async authorize(project, name, o) {
      const validProject = kit.input(ProjectName, project, "project");
      const valid = kit.input(NodeName, name, "node");
      check(o, "authorize");
      const info = toNodeInfo(await client.showNode(valid, { signal: o?.signal }));
      requireOwner(info, validProject);
      return info;
    },

    async attach(attachment, o) {
      const a = kit.input(attachmentSchema, attachment, "attachment");
      check(o, "attach");
      requireNetworks();
      await actions.attach(a, o);
    },

    async detach(attachment, o) {
      const a = kit.input(attachmentSchema, attachment, "attachment");
      check(o, "detach");
      requireNetworks();
      await actions.detach(a, o);
    },

    async networkAttachments(network, o) {
      const valid = kit.input(NetworkName, network, "network");
      check(o, "networkAttachments");
      requireNetworks();
      return networkAttachments(client, valid, o);
    },

    async attachments(name, o) {
      const valid = kit.input(NodeName, name, "node");
      check(o, "attachments");
      const details = await client.showNode(valid, { signal: o?.signal });
      const out: NetworkAttachment[] = [];
      for (const nic of details.nics) {
        for (const [ch, network] of Object.entries(nic.networks)) {
          out.push({ node: details.name, nic: nic.label, network, channel: ch });
        }
      }
      return out;
    },
  };

  function requireNetworks(): void {
    if (driverOptions.networks === false) {
      throw new BmiError("unsupported", "this HIL driver was configured without network support", {
        subsystem: "isolation",
      });
    }
  }
}

/** SEC-2: a project acts only on its own nodes. */
function requireOwner(info: NodeInfo, project: string): void {
  if (info.project === project) return;
  throw new BmiError(
    "forbidden",
    info.project === null
      ? `node ${info.name} is free: it does not belong to project ${project}`
      : `node ${info.name} does not belong to project ${project}`,
    { subsystem: "isolation", details: { node: info.name, project } },
  );
}

/**
 * The network's attachments. Not the network's owner (an admin-owned provisioning network, a
 * non-admin account): HIL lists it per project the account can act for and the network is open
 * to (spec §5.3), so those are asked one by one.
 */
async function networkAttachments(
  client: HilClient,
  network: string,
  o: (CallOptions & { projects?: readonly string[] }) | undefined,
): Promise<NetworkAttachment[]> {
  const list = (found: NetworkAttachments): NetworkAttachment[] =>
    Object.entries(found).map(([node, a]) => ({ node, nic: a.nic, network, channel: a.channel }));
  try {
    return list(await client.listNetworkAttachments(network, { signal: o?.signal }));
  } catch (error) {
    if (!(error instanceof BmiError && error.code === "forbidden" && o?.projects)) throw error;
  }
  const out: NetworkAttachment[] = [];
  for (const project of o.projects) {
    try {
      out.push(...list(await client.listNetworkAttachments(network, { project, signal: o?.signal })));
    } catch (error) {
      if (!(error instanceof BmiError && (error.code === "forbidden" || error.code === "not_found")))
        throw error;
    }
  }
  return out;
}

/** Registers a HIL IsolationDriver under `TOKENS.isolation`. */
export const registerHilIsolation = registrar(TOKENS.isolation, createHilIsolation);

/**
 * Driver options from a loaded `bmi_config.cfg` (`[net_isolator]`, alias `[haas]`). Credentials
 * come from the config, else from `HIL_USERNAME` / `HIL_PASSWORD` like the original CLI.
 */
export function hilOptionsFromConfig(
  config: Pick<BmiConfig, "net_isolator">,
  env: Record<string, string | undefined> = process.env,
): HilIsolationOptions {
  const section = config.net_isolator;
  const username = section.username ?? env.HIL_USERNAME;
  const password = section.password ?? env.HIL_PASSWORD;
  return {
    url: section.url,
    timeoutMs: section.timeout_ms,
    actionTimeoutMs: section.action_timeout_ms,
    channel: section.channel,
    ...(username ? { username } : {}),
    ...(password !== undefined ? { password } : {}),
  };
}
