import type { CallOptions } from "@bmi/core";
import { BmiError } from "@bmi/core";
import { backoffDelay, type HilClient } from "./client.js";
import type { NodeDetails } from "./schemas.js";

/** A validated attachment request. */
export interface Attachment {
  node: string;
  nic: string;
  network: string;
  channel?: string | undefined;
}

export interface NicActionsOptions {
  client: HilClient;
  /** How long an action may stay PENDING in HIL before we stop waiting. */
  maxWaitMs: number;
  /** First delay between polls. */
  minDelayMs: number;
  /** Channel for attachments that name none; absent = HIL's default. */
  defaultChannel?: string;
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

export const cancelledError = (what: string) =>
  new BmiError("cancelled", `isolation ${what} was cancelled`, { subsystem: "isolation" });

const check = (o: CallOptions | undefined, what: string) => {
  if (o?.signal?.aborted) throw cancelledError(what);
};

/**
 * Attach and detach over HIL's asynchronous networking actions, safe against what real HIL does:
 * one action at a time per NIC (HIL allows one, and its check is not atomic), a POST whose answer
 * was lost is followed on show_node instead of being sent again, and an action HIL accepted but
 * whose end we did not see is waited for, by its status id, before the next one on that NIC.
 */
export function createNicActions(options: NicActionsOptions) {
  const { client, maxWaitMs, minDelayMs } = options;

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
    try {
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
    } catch (error) {
      // The caller gave up before HIL showed the result (also: while the POST was in flight): its
      // fate stays unknown and the NIC stays unconfirmed, so a later detach leaves it for reconcile().
      if (error instanceof BmiError && error.code === "cancelled") error.details.outcome = "unknown";
      throw error;
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

  async function attachNow(a: Attachment, o: CallOptions | undefined): Promise<void> {
    await settlePending(a, o);
    const wanted = a.channel ?? options.defaultChannel;
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

  async function detachNow(a: Attachment, o: CallOptions | undefined): Promise<void> {
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
    attach: (a: Attachment, o: CallOptions | undefined) => serialized(a, () => attachNow(a, o)),
    detach: (a: Attachment, o: CallOptions | undefined) => serialized(a, () => detachNow(a, o)),
  };
}
