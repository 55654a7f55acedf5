import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import { BmiError } from "../errors/index.js";
import type { LockOwner, Store } from "../store/index.js";

export const nodeLock = (node: string) => `node:${node}`;
export const imageLock = (project: string, image: string) => `image:${project}/${image}`;
export const projectLock = (project: string) => `project:${project}`;

/**
 * Holds every named lock while `fn` runs (CON-1). A lock held by another operation gives a
 * retryable `conflict` at once rather than a wait: two provisions of one node must not race, and
 * the caller decides whether to retry. Keys are taken in sorted order so two operations needing
 * the same pair cannot deadlock across processes.
 */
export async function withLocks<T>(
  store: Store,
  keys: string[],
  leaseMs: number,
  fn: () => Promise<T>,
): Promise<T> {
  const owner: LockOwner = { id: randomUUID(), pid: process.pid, host: hostname() };
  const held: string[] = [];
  try {
    for (const key of [...new Set(keys)].sort()) {
      if (!store.tryLock(key, owner, leaseMs)) {
        const [kind, name] = splitKey(key);
        throw new BmiError(
          "conflict",
          `${kind} ${name} is being changed by another operation; try again later`,
          {
            details: { lock: key },
          },
        );
      }
      held.push(key);
    }
    return await fn();
  } finally {
    for (const key of held.reverse()) store.unlock(key, owner);
  }
}

function splitKey(key: string): [string, string] {
  const at = key.indexOf(":");
  return [key.slice(0, at), key.slice(at + 1)];
}
