import type { CallOptions } from "@bmi/core";
import { BmiError, driverKit } from "@bmi/core";
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

/** The isolation driver's call edge: input checks, cancellation (shared with driver.ts). */
export const kit = driverKit("isolation");
const cancelledError = kit.cancelled;

/** What the actions share: the client, the waits, and what is known about each NIC. */
interface NicState {
  client: HilClient;
  maxWaitMs: number;
  minDelayMs: number;
  defaultChannel: string | undefined;
  /** Per NIC: the tail of its chain of actions, so ours never overlap (HIL allows one at a time). */
  chains: Map<string, Promise<unknown>>;
  /** Per NIC: an action of ours HIL accepted whose end we did not see (its wait timed out). */
  pending: Map<string, string>;
  /** NICs where a POST of ours may have reached HIL without a status id to follow. */
  unconfirmed: Set<string>;
}

type NicRef = { node: string; nic: string };
type NicNetwork = NicRef & { network: string };

const keyOf = (a: NicRef) => `${a.node}/${a.nic}`;
const describe = (a: NicNetwork, attached: boolean) =>
  `${attached ? "attach" : "detach"} ${a.node}/${a.nic} ${attached ? "to" : "from"} ${a.network}`;

/**
 * Attach and detach over HIL's asynchronous networking actions, safe against what real HIL does:
 * one action at a time per NIC (HIL allows one, and its check is not atomic), a POST whose answer
 * was lost is followed on show_node instead of being sent again, and an action HIL accepted but
 * whose end we did not see is waited for, by its status id, before the next one on that NIC.
 */
export function createNicActions(options: NicActionsOptions) {
  const s: NicState = {
    client: options.client,
    maxWaitMs: options.maxWaitMs,
    minDelayMs: options.minDelayMs,
    defaultChannel: options.defaultChannel,
    chains: new Map(),
    pending: new Map(),
    unconfirmed: new Set(),
  };
  return {
    attach: (a: Attachment, o: CallOptions | undefined) => serialized(s, a, () => attachNow(s, a, o)),
    detach: (a: Attachment, o: CallOptions | undefined) => serialized(s, a, () => detachNow(s, a, o)),
  };
}

function serialized<T>(s: NicState, a: NicRef, run: () => Promise<T>): Promise<T> {
  const key = keyOf(a);
  const result = (s.chains.get(key) ?? Promise.resolve()).then(run, run);
  const tail = result.catch(() => undefined);
  s.chains.set(key, tail);
  void tail.then(() => {
    if (s.chains.get(key) === tail) s.chains.delete(key);
  });
  return result;
}

const waitOptions = (s: NicState, o: CallOptions | undefined) => ({
  maxWaitMs: s.maxWaitMs,
  minDelayMs: s.minDelayMs,
  maxDelayMs: Math.max(s.minDelayMs, 1_000),
  ...(o?.signal ? { signal: o.signal } : {}),
});

async function waitFor(
  s: NicState,
  statusId: string,
  a: NicNetwork,
  attached: boolean,
  o: CallOptions | undefined,
): Promise<void> {
  const result = await s.client.waitForNetworkingAction(statusId, {
    ...waitOptions(s, o),
    expect: { ...a, attached },
  });
  const what = describe(a, attached);
  const details = { ...a, statusId, reason: result.reason };
  if (result.state === "SUCCESS") return;
  // Still queued in HIL: the next action on this NIC (an undo, a retry) waits for it first.
  if (result.state === "ABORTED" || result.state === "TIMEOUT") s.pending.set(keyOf(a), statusId);
  if (result.state === "ABORTED") throw cancelledError(what);
  if (result.state === "TIMEOUT") {
    throw new BmiError("timeout", `HIL did not finish ${what} within ${s.maxWaitMs} ms`, {
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
async function settlePending(s: NicState, a: NicRef, o: CallOptions | undefined): Promise<void> {
  const statusId = s.pending.get(keyOf(a));
  if (statusId === undefined) return;
  const result = await s.client.waitForNetworkingAction(statusId, waitOptions(s, o));
  if (result.state === "ABORTED") throw cancelledError(`wait for ${a.node}/${a.nic}`);
  if (result.state === "TIMEOUT") {
    throw new BmiError(
      "timeout",
      `an earlier networking action on ${a.node}/${a.nic} is still PENDING in HIL after ${s.maxWaitMs} ms (is HIL's networking daemon running?)`,
      { subsystem: "isolation", retryable: false, details: { ...a, statusId, outcome: "unknown" } },
    );
  }
  // DONE, ERROR or replaced: HIL is finished with it, either way.
  s.pending.delete(keyOf(a));
}

/**
 * A connect/detach POST whose answer was lost: HIL may have queued it. Instead of POSTing
 * again, watch show_node until the NIC shows the result, up to the action wait.
 */
async function confirm(
  s: NicState,
  a: NicNetwork,
  attached: boolean,
  o: CallOptions | undefined,
  cause: BmiError,
): Promise<void> {
  const key = keyOf(a);
  s.unconfirmed.add(key);
  const deadline = Date.now() + s.maxWaitMs;
  try {
    for (let polls = 0; Date.now() < deadline; polls++) {
      kit.checkSignal(o, attached ? "attach" : "detach");
      const details = await s.client.showNode(a.node, { signal: o?.signal });
      if ((attachedChannel(details, a.nic, a.network) !== undefined) === attached) {
        s.unconfirmed.delete(key);
        return;
      }
      const delay = Math.min(Math.max(0, deadline - Date.now()), backoffDelay(polls, s.minDelayMs, 1_000));
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  } catch (error) {
    // The caller gave up before HIL showed the result (also: while the POST was in flight): its
    // fate stays unknown and the NIC stays unconfirmed, so a later detach leaves it for reconcile().
    if (error instanceof BmiError && error.code === "cancelled") error.details.outcome = "unknown";
    throw error;
  }
  throw new BmiError(
    "timeout",
    `HIL did not confirm ${describe(a, attached)} within ${s.maxWaitMs} ms after the request's answer was lost (${cause.message})`,
    { subsystem: "isolation", retryable: false, details: { ...a, outcome: "unknown" }, cause },
  );
}

const outcomeLost = (error: unknown): error is BmiError =>
  error instanceof BmiError && error.details.outcome === "unknown";

async function attachNow(s: NicState, a: Attachment, o: CallOptions | undefined): Promise<void> {
  await settlePending(s, a, o);
  const wanted = a.channel ?? s.defaultChannel;
  let statusId: string;
  try {
    // No show_node first: HIL's own 409 ("already attached", a pending action) is when we look,
    // so a fresh attach costs one request.
    statusId = await s.client.connectNetwork(a.node, a.nic, a.network, {
      ...(wanted === undefined ? {} : { channel: wanted }),
      signal: o?.signal,
    });
  } catch (error) {
    if (outcomeLost(error)) return confirm(s, a, true, o, error);
    if (!(error instanceof BmiError && (error.code === "conflict" || error.code === "busy"))) throw error;
    return alreadyAttached(s, a, wanted, o, error);
  }
  s.unconfirmed.delete(keyOf(a));
  await waitFor(s, statusId, a, true, o);
}

/** HIL refused the attach (409): fine if the network is already on the NIC on the wanted channel. */
async function alreadyAttached(
  s: NicState,
  a: Attachment,
  wanted: string | undefined,
  o: CallOptions | undefined,
  refusal: BmiError,
): Promise<void> {
  const details = await s.client.showNode(a.node, { signal: o?.signal }).catch(() => undefined);
  const current = details && attachedChannel(details, a.nic, a.network);
  if (current === undefined) throw refusal;
  s.unconfirmed.delete(keyOf(a));
  if (wanted === undefined || wanted === current) return;
  throw new BmiError("conflict", `network ${a.network} is already attached to ${a.nic} on ${current}`, {
    subsystem: "isolation",
    retryable: false,
    details: { ...a, channel: current },
  });
}

async function detachNow(s: NicState, a: Attachment, o: CallOptions | undefined): Promise<void> {
  await settlePending(s, a, o);
  let statusId: string;
  try {
    // No show_node first: HIL checks node, NIC and network (404) before "not attached" (400).
    statusId = await s.client.detachNetwork(a.node, a.nic, a.network, { signal: o?.signal });
  } catch (error) {
    if (outcomeLost(error)) return confirm(s, a, false, o, error);
    // "The network is not attached to the nic." (400): nothing to detach, or done meanwhile.
    if (!(error instanceof BmiError && error.code === "invalid_input" && /not attached/.test(error.message)))
      throw error;
    if (!s.unconfirmed.has(keyOf(a))) return;
    // An attach of ours whose answer was lost may still be queued in HIL and applied later.
    throw new BmiError(
      "timeout",
      `${a.network} is not attached to ${a.node}/${a.nic} yet, but an earlier attach whose outcome is unknown may still be applied by HIL; left for reconcile()`,
      { subsystem: "isolation", retryable: false, details: { ...a, outcome: "unknown" } },
    );
  }
  await waitFor(s, statusId, a, false, o);
}
