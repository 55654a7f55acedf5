import { BmiError } from "../errors/index.js";
import type { StorageDriver } from "../ports/index.js";

/** Driver calls that change something outside the process (the ones a lost reply can leak). */
export const MUTATING_METHODS: Record<"storage" | "export" | "boot" | "isolation", readonly string[]> = {
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
 * Failure injection for any driver (yours or ours): wrap each driver with `wrap(subsystem, d)`,
 * then arm one failure at the Nth driver call (counted across all four drivers): `before` throws
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
  wrap<T extends object>(subsystem: keyof typeof MUTATING_METHODS, driver: T): T;
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
    wrap<T extends object>(subsystem: keyof typeof MUTATING_METHODS, driver: T): T {
      const wrapped: Record<string, unknown> = {};
      for (const key of Object.keys(driver)) {
        const value = (driver as Record<string, unknown>)[key];
        if (typeof value !== "function") {
          wrapped[key] = value;
          continue;
        }
        const mutating = MUTATING_METHODS[subsystem]?.includes(key) ?? false;
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
