import { AsyncLocalStorage } from "node:async_hooks";
import { BmiError } from "../errors/index.js";
import type { CallOptions } from "../ports/index.js";
import type { Drivers } from "./context.js";

/** What a caller passes as the last argument of a facade method. */
export interface OperationOptions {
  /**
   * Cancels the operation: between steps it stops and undoes what was done; a running driver call
   * gets the signal (a running command is killed) and is undone like a timeout. Ends `cancelled`.
   */
  signal?: AbortSignal;
}

const current = new AsyncLocalStorage<CallOptions>();

/** Runs `fn` with `options` as the call context of every driver call made inside it. */
export function withCallContext<T>(options: OperationOptions | undefined, fn: () => Promise<T>): Promise<T> {
  return options?.signal ? current.run({ signal: options.signal }, fn) : fn();
}

/**
 * Runs `fn` outside any caller's signal: compensations must finish even after an abort, or the
 * cancellation itself would leave drift.
 */
export function withoutCallContext<T>(fn: () => Promise<T>): Promise<T> {
  return current.run({}, fn);
}

/** Throws `cancelled` when the running operation's caller has aborted (checked between steps). */
export function throwIfCancelled(): void {
  const signal = current.getStore()?.signal;
  if (signal?.aborted) {
    throw new BmiError("cancelled", "cancelled by the caller", { retryable: false });
  }
}

/** How many positional arguments come before `options` in each port method. */
const OPTIONS_AT: { [K in keyof Drivers]-?: Record<string, number> } = {
  storage: {
    exists: 1,
    list: 0,
    info: 1,
    create: 2,
    remove: 1,
    clone: 2,
    flatten: 1,
    copy: 2,
    createSnapshot: 1,
    listSnapshots: 1,
    removeSnapshot: 1,
    protectSnapshot: 1,
    unprotectSnapshot: 1,
    children: 1,
    importFile: 2,
    exportFile: 2,
  },
  export: { export: 1, unexport: 1, list: 0, restore: 1, sessions: 1 },
  boot: { write: 1, remove: 1, read: 1, list: 0 },
  isolation: { node: 1, authorize: 2, attach: 1, detach: 1, attachments: 1 },
  power: { powerOn: 1, powerOff: 1, powerCycle: 1, setBootDevice: 2, powerState: 1 },
};

/**
 * A view of each driver whose calls carry the running operation's signal, so operations need not
 * thread it through every call. Options a call passes itself (e.g. `{ force }`) are kept.
 */
export function bindCallContext(drivers: Drivers): Drivers {
  const bind = <D extends object>(driver: D, at: Record<string, number>): D => {
    const view: Record<string, unknown> = {};
    for (const [method, index] of Object.entries(at)) {
      const call = (driver as Record<string, unknown>)[method];
      if (typeof call !== "function") continue;
      view[method] = (...args: unknown[]) => {
        const context = current.getStore();
        if (!context?.signal) return call.apply(driver, args);
        const given = (args[index] ?? {}) as CallOptions;
        const withSignal = [...args.slice(0, index), { signal: context.signal, ...given }];
        return call.apply(driver, withSignal);
      };
    }
    return Object.assign(Object.create(driver) as D, view);
  };
  return {
    storage: bind(drivers.storage, OPTIONS_AT.storage),
    export: bind(drivers.export, OPTIONS_AT.export),
    boot: bind(drivers.boot, OPTIONS_AT.boot),
    isolation: bind(drivers.isolation, OPTIONS_AT.isolation),
    ...(drivers.power ? { power: bind(drivers.power, OPTIONS_AT.power) } : {}),
  };
}
