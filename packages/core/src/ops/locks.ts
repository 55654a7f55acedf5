import { AsyncLocalStorage } from "node:async_hooks";
import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import { BmiError } from "../errors/index.js";
import type { LockOwner, Store, StoreRepositories, StoreTransaction } from "../store/index.js";
import { retryWhileStoreLocked } from "./store-retry.js";

export const nodeLock = (node: string) => `node:${node}`;
export const imageLock = (project: string, image: string) => `image:${project}/${image}`;
export const projectLock = (project: string) => `project:${project}`;

/** The locks the running operation holds, for the fence in {@link fenceStore}. */
interface Held {
  owner: LockOwner;
  keys: string[];
}
const heldLocks = new AsyncLocalStorage<Held>();

/**
 * Holds every named lock while `fn` runs (CON-1). A lock held by another operation gives a
 * retryable `conflict` at once rather than a wait: two provisions of one node must not race, and
 * the caller decides whether to retry. Keys are taken in sorted order so two operations needing
 * the same pair cannot deadlock across processes. The leases are renewed every third of
 * `leaseMs` while `fn` runs; a holder whose lease ended anyway (a paused process) is fenced: the
 * store refuses its writes, so two operations on one node can never both succeed.
 */
export async function withLocks<T>(
  store: Store,
  keys: string[],
  leaseMs: number,
  fn: () => Promise<T>,
): Promise<T> {
  const owner: LockOwner = { id: randomUUID(), pid: process.pid, host: hostname() };
  const held: string[] = [];
  const renewal = setInterval(() => renewAll(store, held, owner, leaseMs), Math.max(leaseMs / 3, 10));
  renewal.unref();
  try {
    for (const key of [...new Set(keys)].sort()) {
      if (!(await retryWhileStoreLocked(() => store.locks.tryLock(key, owner, leaseMs)))) {
        throw new BmiError("conflict", `${describeLock(key)}; try again later`, { details: { lock: key } });
      }
      held.push(key);
    }
    return await heldLocks.run({ owner, keys: held }, fn);
  } finally {
    clearInterval(renewal);
    for (const key of held.reverse()) {
      await retryWhileStoreLocked(() => store.locks.unlock(key, owner)).catch(() => {
        // The lease ends by itself; a later tryLock takes it over.
      });
    }
  }
}

function renewAll(store: Store, keys: string[], owner: LockOwner, leaseMs: number): void {
  for (const key of keys) {
    store.locks.renew(key, owner, leaseMs).catch(() => {
      // A locked database: the next tick tries again, well before the lease ends.
    });
  }
}

/** `node:n1` → "node n1 is being changed by another operation"; `reconcile` → "reconcile is running elsewhere". */
function describeLock(key: string): string {
  const at = key.indexOf(":");
  if (at < 0) return `${key} is already running in another operation`;
  return `${key.slice(0, at)} ${key.slice(at + 1)} is being changed by another operation`;
}

/** The repository methods that change operational data; the journal and the locks stay writable. */
const FENCED_WRITES = {
  projects: ["create", "delete"],
  images: ["insert", "update", "delete"],
  exports: ["put", "delete"],
  provisionings: ["put", "delete"],
} as const satisfies { [R in keyof StoreRepositories]?: readonly (keyof StoreRepositories[R])[] };

type FencedRepository = keyof typeof FENCED_WRITES;

/**
 * A view of `store` whose data writes, inside {@link withLocks}, first check (in the same
 * transaction) that the operation still holds every lock it took. A holder whose lease ended and
 * whose lock another operation took over gets a `conflict` instead of overwriting that one's rows.
 * The repositories of its transactions are fenced the same way.
 */
export function fenceStore<S extends Store>(store: S): S {
  return Object.assign(Object.create(store) as S, fenceHandle(store));
}

function fenceHandle(handle: StoreTransaction): StoreTransaction {
  // Named one by one (no spread): a store may be a prototype-chained wrapper of another.
  return {
    projects: fenceRepository(handle, "projects"),
    images: fenceRepository(handle, "images"),
    exports: fenceRepository(handle, "exports"),
    provisionings: fenceRepository(handle, "provisionings"),
    journal: handle.journal,
    locks: handle.locks,
    transaction: (fn) => handle.transaction((tx) => fn(fenceHandle(tx))),
  };
}

type Methods = Record<string, (...args: unknown[]) => Promise<unknown>>;

function fenceRepository<R extends FencedRepository>(
  handle: StoreTransaction,
  name: R,
): StoreRepositories[R] {
  const repository = handle[name] as unknown as Methods;
  const fenced: Methods = { ...repository };
  for (const method of FENCED_WRITES[name]) {
    fenced[method] = async (...args: unknown[]) => {
      const held = heldLocks.getStore();
      if (!held) return repository[method]?.(...args);
      return handle.transaction(async (tx) => {
        for (const key of held.keys) if (!(await tx.locks.holds(key, held.owner))) throw lockLost(key);
        return (tx[name] as unknown as Methods)[method]?.(...args);
      });
    };
  }
  return fenced as unknown as StoreRepositories[R];
}

function lockLost(key: string): BmiError {
  return new BmiError(
    "conflict",
    `the lock ${key} was lost (its lease ended and another operation may hold it); nothing more was written`,
    { subsystem: "store", retryable: false, details: { lock: key } },
  );
}
