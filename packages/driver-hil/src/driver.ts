import {
  type BmiConfig,
  BmiError,
  type CallOptions,
  type DependencyContainer,
  type IsolationDriver,
  MacAddress,
  type NetworkAttachment,
  NetworkName,
  NicLabel,
  type NodeInfo,
  NodeName,
  ProjectName,
  parseInput,
  TOKENS,
} from "@bmi/core";
import { z } from "zod";
import {
  backoffDelay,
  createHilClient,
  DEFAULT_FIRST_POLL_MS,
  type HilClient,
  type HilClientOptions,
} from "./client.js";
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

function attachedChannel(details: NodeDetails, nic: string, network: string): string | undefined {
  const found = details.nics.find((n) => n.label === nic);
  if (!found) {
    throw new BmiError("not_found", `NIC ${nic} on node ${details.name} does not exist`, {
      subsystem: "isolation",
      details: { node: details.name, nic },
    });
  }
  return Object.entries(found.networks).find(([, name]) => name === network)?.[0];
}

const cancelledError = (what: string) =>
  new BmiError("cancelled", `isolation ${what} was cancelled`, { subsystem: "isolation" });

/**
 * The IsolationDriver over HIL's REST API (v0.3+). `authorize` requires the node to be owned by
 * the project (SEC-2); attach/detach queue a networking action and wait for it to finish.
 */
export function createHilIsolation(options: HilIsolationOptions): IsolationDriver & { client: HilClient } {
  const { channel, actionTimeoutMs, networks, pollMs, ...clientOptions } = options;
  const driverOptions = parseInput(
    driverOptionsSchema,
    { channel, actionTimeoutMs, networks, pollMs },
    "options",
    "isolation",
  );
  const minDelayMs = driverOptions.pollMs ?? DEFAULT_FIRST_POLL_MS;
  const client = createHilClient(clientOptions);
  const maxWaitMs = driverOptions.actionTimeoutMs ?? 60_000;

  const check = (o: CallOptions | undefined, what: string) => {
    if (o?.signal?.aborted) throw cancelledError(what);
  };

  /** Per NIC: the tail of its chain of actions, so ours never overlap (HIL allows one at a time). */
  const chains = new Map<string, Promise<unknown>>();
  /** Per NIC: an action of ours HIL accepted whose end we did not see (its wait timed out). */
  const pending = new Map<string, string>();
  /** NICs where a POST of ours may have reached HIL without a status id to follow. */
  const unconfirmed = new Set<string>();
  const keyOf = (a: { node: string; nic: string }) => `${a.node}/${a.nic}`;

  function serialized<T>(a: { node: string; nic: string }, run: () => Promise<T>): Promise<T> {
    const key = keyOf(a);
    const result = (chains.get(key) ?? Promise.resolve()).then(run, run);
    const tail = result.catch(() => undefined);
    chains.set(key, tail);
    void tail.then(() => {
      if (chains.get(key) === tail) chains.delete(key);
    });
    return result;
  }

  async function waitFor(
    statusId: string,
    a: { node: string; nic: string; network: string },
    attached: boolean,
    o: CallOptions | undefined,
  ): Promise<void> {
    const verb = attached ? "attach" : "detach";
    const result = await client.waitForNetworkingAction(statusId, {
      maxWaitMs,
      minDelayMs,
      maxDelayMs: Math.max(minDelayMs, 1_000),
      ...(o?.signal ? { signal: o.signal } : {}),
      expect: { ...a, attached },
    });
    const what = `${verb} ${a.node}/${a.nic} ${attached ? "to" : "from"} ${a.network}`;
    const details = { ...a, statusId, reason: result.reason };
    if (result.state === "SUCCESS") return;
    // Still queued in HIL: the next action on this NIC (an undo, a retry) waits for it first.
    if (result.state === "ABORTED" || result.state === "TIMEOUT") pending.set(keyOf(a), statusId);
    if (result.state === "ABORTED") throw cancelledError(what);
    if (result.state === "TIMEOUT") {
      throw new BmiError("timeout", `HIL did not finish ${what} within ${maxWaitMs} ms`, {
        subsystem: "isolation",
        details: { ...details, outcome: "unknown" },
      });
    }
    throw new BmiError("unavailable", `HIL could not ${what}: ${result.reason ?? "the action failed"}`, {
      subsystem: "isolation",
      details,
    });
  }

  /** Waits for an earlier action of ours on the NIC that HIL accepted but we never saw end. */
  async function settlePending(a: { node: string; nic: string }, o: CallOptions | undefined): Promise<void> {
    const statusId = pending.get(keyOf(a));
    if (statusId === undefined) return;
    const result = await client.waitForNetworkingAction(statusId, {
      maxWaitMs,
      minDelayMs,
      maxDelayMs: Math.max(minDelayMs, 1_000),
      ...(o?.signal ? { signal: o.signal } : {}),
    });
    if (result.state === "ABORTED") throw cancelledError(`wait for ${a.node}/${a.nic}`);
    if (result.state === "TIMEOUT") {
      throw new BmiError(
        "timeout",
        `an earlier networking action on ${a.node}/${a.nic} is still PENDING in HIL after ${maxWaitMs} ms (is HIL's networking daemon running?)`,
        { subsystem: "isolation", retryable: false, details: { ...a, statusId, outcome: "unknown" } },
      );
    }
    // DONE, ERROR or replaced: HIL is finished with it, either way.
    pending.delete(keyOf(a));
  }

  /**
   * A connect/detach POST whose answer was lost: HIL may have queued it. Instead of POSTing
   * again, watch show_node until the NIC shows the result, up to the action wait.
   */
  async function confirm(
    a: { node: string; nic: string; network: string },
    attached: boolean,
    o: CallOptions | undefined,
    cause: BmiError,
  ): Promise<void> {
    const key = keyOf(a);
    unconfirmed.add(key);
    const deadline = Date.now() + maxWaitMs;
    for (let polls = 0; Date.now() < deadline; polls++) {
      check(o, attached ? "attach" : "detach");
      const details = await client.showNode(a.node, { signal: o?.signal });
      if ((attachedChannel(details, a.nic, a.network) !== undefined) === attached) {
        unconfirmed.delete(key);
        return;
      }
      const delay = Math.min(Math.max(0, deadline - Date.now()), backoffDelay(polls, minDelayMs, 1_000));
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
    const what = `${attached ? "attach" : "detach"} ${a.node}/${a.nic} ${attached ? "to" : "from"} ${a.network}`;
    throw new BmiError(
      "timeout",
      `HIL did not confirm ${what} within ${maxWaitMs} ms after the request's answer was lost (${cause.message})`,
      { subsystem: "isolation", retryable: false, details: { ...a, outcome: "unknown" }, cause },
    );
  }

  const outcomeLost = (error: unknown): error is BmiError =>
    error instanceof BmiError && error.details.outcome === "unknown";

  async function attachNow(a: z.output<typeof attachmentSchema>, o: CallOptions | undefined): Promise<void> {
    await settlePending(a, o);
    const wanted = a.channel ?? driverOptions.channel;
    let statusId: string;
    try {
      // No show_node first: HIL's own 409 ("already attached", a pending action) is when we look,
      // so a fresh attach costs one request.
      statusId = await client.connectNetwork(a.node, a.nic, a.network, {
        ...(wanted === undefined ? {} : { channel: wanted }),
        signal: o?.signal,
      });
    } catch (error) {
      if (outcomeLost(error)) return confirm(a, true, o, error);
      if (!(error instanceof BmiError && (error.code === "conflict" || error.code === "busy"))) throw error;
      const details = await client.showNode(a.node, { signal: o?.signal }).catch(() => undefined);
      const current = details && attachedChannel(details, a.nic, a.network);
      if (current === undefined) throw error;
      unconfirmed.delete(keyOf(a));
      if (wanted === undefined || wanted === current) return;
      throw new BmiError("conflict", `network ${a.network} is already attached to ${a.nic} on ${current}`, {
        subsystem: "isolation",
        retryable: false,
        details: { ...a, channel: current },
      });
    }
    unconfirmed.delete(keyOf(a));
    await waitFor(statusId, a, true, o);
  }

  async function detachNow(a: z.output<typeof attachmentSchema>, o: CallOptions | undefined): Promise<void> {
    await settlePending(a, o);
    let statusId: string;
    try {
      // No show_node first: HIL checks node, NIC and network (404) before "not attached" (400).
      statusId = await client.detachNetwork(a.node, a.nic, a.network, { signal: o?.signal });
    } catch (error) {
      if (outcomeLost(error)) return confirm(a, false, o, error);
      // "The network is not attached to the nic." (400): nothing to detach, or done meanwhile.
      if (
        !(error instanceof BmiError && error.code === "invalid_input" && /not attached/.test(error.message))
      )
        throw error;
      if (!unconfirmed.has(keyOf(a))) return;
      // An attach of ours whose answer was lost may still be queued in HIL and applied later.
      throw new BmiError(
        "timeout",
        `${a.network} is not attached to ${a.node}/${a.nic} yet, but an earlier attach whose outcome is unknown may still be applied by HIL; left for reconcile()`,
        { subsystem: "isolation", retryable: false, details: { ...a, outcome: "unknown" } },
      );
    }
    await waitFor(statusId, a, false, o);
  }

  return {
    name: "hil",
    capabilities: { networks: driverOptions.networks ?? true },
    client,

    async node(name, o) {
      const valid = parseInput(NodeName, name, "node", "isolation");
      check(o, "node");
      return toNodeInfo(await client.showNode(valid, { signal: o?.signal }));
    },

    async authorize(project, name, o) {
      const validProject = parseInput(ProjectName, project, "project", "isolation");
      const valid = parseInput(NodeName, name, "node", "isolation");
      check(o, "authorize");
      const info = toNodeInfo(await client.showNode(valid, { signal: o?.signal }));
      if (info.project !== validProject) {
        throw new BmiError(
          "forbidden",
          info.project === null
            ? `node ${valid} is free: it does not belong to project ${validProject}`
            : `node ${valid} does not belong to project ${validProject}`,
          { subsystem: "isolation", details: { node: valid, project: validProject } },
        );
      }
      return info;
    },

    async attach(attachment, o) {
      const a = parseInput(attachmentSchema, attachment, "attachment", "isolation");
      check(o, "attach");
      requireNetworks();
      await serialized(a, () => attachNow(a, o));
    },

    async detach(attachment, o) {
      const a = parseInput(attachmentSchema, attachment, "attachment", "isolation");
      check(o, "detach");
      requireNetworks();
      await serialized(a, () => detachNow(a, o));
    },

    async networkAttachments(network, o) {
      const valid = parseInput(NetworkName, network, "network", "isolation");
      check(o, "networkAttachments");
      requireNetworks();
      const list = (found: NetworkAttachments): NetworkAttachment[] =>
        Object.entries(found).map(([node, a]) => ({ node, nic: a.nic, network: valid, channel: a.channel }));
      try {
        return list(await client.listNetworkAttachments(valid, { signal: o?.signal }));
      } catch (error) {
        if (!(error instanceof BmiError && error.code === "forbidden" && o?.projects)) throw error;
      }
      // Not the network's owner (an admin-owned provisioning network, a non-admin account): HIL
      // lists it per project the account can act for and the network is open to (spec §5.3).
      const out: NetworkAttachment[] = [];
      for (const project of o.projects) {
        try {
          out.push(...list(await client.listNetworkAttachments(valid, { project, signal: o?.signal })));
        } catch (error) {
          if (!(error instanceof BmiError && (error.code === "forbidden" || error.code === "not_found")))
            throw error;
        }
      }
      return out;
    },

    async attachments(name, o) {
      const valid = parseInput(NodeName, name, "node", "isolation");
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

/** Registers a HIL IsolationDriver under `TOKENS.isolation`. */
export function registerHilIsolation(
  container: DependencyContainer,
  options: HilIsolationOptions,
): IsolationDriver {
  const driver = createHilIsolation(options);
  container.registerInstance(TOKENS.isolation, driver);
  return driver;
}

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
