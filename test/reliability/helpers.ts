import {
  BmiError,
  type BootDriver,
  type ExportDriver,
  type IsolationDriver,
  type StorageDriver,
} from "@bmi/core";
import { captureState } from "@bmi/core/testing";
import type { BmiLab } from "@bmi/lab";

/** Driver calls that change something outside the process (the ones a lost reply can leak). */
export const MUTATING: Record<string, readonly string[]> = {
  storage: [
    "create",
    "remove",
    "clone",
    "flatten",
    "copy",
    "createSnapshot",
    "removeSnapshot",
    "protectSnapshot",
    "unprotectSnapshot",
    "importFile",
  ],
  export: ["export", "unexport", "restore"],
  boot: ["write", "remove"],
  isolation: ["attach", "detach"],
};

/**
 * Arms one failure at the Nth driver call (counted across all four drivers): `before` throws
 * without doing the work (the daemon refused), `after` does the real work and then throws a
 * timeout (the reply was lost), the nastier case for an undo log.
 */
export interface FaultInjector {
  /** Arms a fault, or disarms with null. */
  arm(fault: { at: number; mode: "before" | "after"; onlyMutating: boolean } | null): void;
  /** Calls seen since the last `arm`, as `subsystem.method`. */
  readonly calls: string[];
  /** Whether the armed fault fired. */
  readonly fired: boolean;
}

export function createFaultInjector(): FaultInjector & {
  wrap<T extends object>(subsystem: keyof typeof MUTATING, driver: T): T;
} {
  let fault: { at: number; mode: "before" | "after"; onlyMutating: boolean } | null = null;
  let counted = 0;
  let fired = false;
  const calls: string[] = [];
  const injected = (what: string) =>
    new BmiError("timeout", `injected failure at ${what}`, { retryable: false, details: { injected: true } });
  return {
    calls,
    get fired() {
      return fired;
    },
    arm(next) {
      fault = next;
      // Disarming keeps `fired` and `calls` for the caller to read.
      if (next === null) return;
      counted = 0;
      fired = false;
      calls.length = 0;
    },
    wrap<T extends object>(subsystem: keyof typeof MUTATING, driver: T): T {
      const wrapped: Record<string, unknown> = {};
      for (const key of Object.keys(driver)) {
        const value = (driver as Record<string, unknown>)[key];
        if (typeof value !== "function") {
          wrapped[key] = value;
          continue;
        }
        const mutating = MUTATING[subsystem]?.includes(key) ?? false;
        wrapped[key] = async (...args: unknown[]) => {
          const what = `${subsystem}.${key}`;
          calls.push(what);
          const counts = fault && !fired && (mutating || !fault.onlyMutating);
          if (counts) counted++;
          const hit = fault !== null && counts && counted === fault.at;
          if (hit && fault?.mode === "before") {
            fired = true;
            throw injected(what);
          }
          const result = await (value as (...a: unknown[]) => unknown).apply(driver, args);
          if (hit) {
            fired = true;
            throw injected(what);
          }
          return result;
        };
      }
      // backingFor is synchronous and pure; keep it so.
      if ("backingFor" in driver) wrapped.backingFor = (driver as unknown as StorageDriver).backingFor;
      return wrapped as T;
    },
  };
}

/** A storage driver that only sees this lab's RBD images (the pool is shared with other files). */
export function scopedStorage(lab: BmiLab): StorageDriver {
  const { uid } = lab.settings;
  const storage = lab.drivers.storage;
  const ours = (name: string) => name.startsWith(`${uid}img`) || name.startsWith(`lab${uid}-`);
  return { ...storage, list: async (o) => (await storage.list(o)).filter(ours) };
}

/** Everything BMI can change in this lab: RBD images and snapshots, targets, boot files, HIL attachments, DB rows. */
export function labState(lab: BmiLab) {
  return captureState({
    storage: scopedStorage(lab),
    export: lab.drivers.export,
    boot: lab.drivers.boot,
    isolation: lab.drivers.isolation,
    nodes: lab.nodes.map((n) => n.name),
    store: lab.store,
  });
}

export type Drivers = {
  storage: StorageDriver;
  export: ExportDriver;
  boot: BootDriver;
  isolation: IsolationDriver;
};
