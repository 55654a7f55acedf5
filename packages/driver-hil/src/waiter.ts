import { BmiError } from "@bmi/core";
import { backoffDelay, sleep } from "./http.js";
import type { ActionStatus, NetworkingAction, NodeDetails } from "./schemas.js";

/** The first delay between polls of a networking action (then doubling, with jitter). */
export const DEFAULT_FIRST_POLL_MS = 25;

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

/** The two reads the waiter makes. */
export interface WaiterReads {
  showNetworkingAction(statusId: string, o: { signal?: AbortSignal | undefined }): Promise<NetworkingAction>;
  showNode(name: string, o: { signal?: AbortSignal | undefined }): Promise<NodeDetails>;
}

const ABORTED = { state: "ABORTED", reason: "the signal was aborted" } as const;

/**
 * Polls a networking action until it is DONE (SUCCESS) or ERROR (FAILURE), with backoff and
 * jitter, up to `maxWaitMs` (TIMEOUT) or until `signal` fires (ABORTED). A 404 means a newer
 * action replaced it: then show_node decides, when `expect` says what to look for.
 */
export async function waitForNetworkingAction(
  reads: WaiterReads,
  statusId: string,
  o: WaitOptions = {},
): Promise<WaiterResult> {
  const maxWaitMs = o.maxWaitMs ?? 60_000;
  const deadline = Date.now() + maxWaitMs;
  let last: NetworkingAction | undefined;
  const withLast = (r: WaiterResult): WaiterResult => (last ? { ...r, action: last } : r);
  for (let polls = 0; ; polls++) {
    if (o.signal?.aborted) return withLast(ABORTED);
    try {
      last = await reads.showNetworkingAction(statusId, { signal: o.signal });
    } catch (error) {
      if (!(error instanceof BmiError)) throw error;
      if (error.code === "cancelled") return withLast(ABORTED);
      if (error.code !== "not_found") throw error;
      return o.expect ? replacedAction(reads, o.expect, o.signal) : withLast(REPLACED);
    }
    const status: ActionStatus = last.status;
    if (status === "DONE") return { state: "SUCCESS", action: last };
    if (status === "ERROR") return { state: "FAILURE", action: last, reason: "the switch reported an error" };
    const remaining = deadline - Date.now();
    if (remaining <= 0) return withLast({ state: "TIMEOUT", reason: `still PENDING after ${maxWaitMs} ms` });
    const delay = backoffDelay(polls, o.minDelayMs ?? DEFAULT_FIRST_POLL_MS, o.maxDelayMs ?? 1_000);
    try {
      await sleep(Math.min(remaining, delay), o.signal, "wait");
    } catch {
      return withLast(ABORTED);
    }
  }
}

const REPLACED = { state: "FAILURE", reason: "the action was replaced by a newer one" } as const;

/** A newer action replaced the one waited for: the node's NIC shows whether the goal was reached. */
async function replacedAction(
  reads: WaiterReads,
  expect: NonNullable<WaitOptions["expect"]>,
  signal: AbortSignal | undefined,
): Promise<WaiterResult> {
  const details = await reads.showNode(expect.node, { signal });
  const networks = details.nics.find((n) => n.label === expect.nic)?.networks ?? {};
  return Object.values(networks).includes(expect.network) === expect.attached
    ? { state: "SUCCESS", reason: "replaced by a newer action; the node shows the expected state" }
    : { state: "FAILURE", reason: "replaced by a newer action; the node does not show the expected state" };
}
