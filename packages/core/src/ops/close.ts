import type { Store } from "../store/index.js";

/** What a driver may hold open: a connection it closes with `close()` or `Symbol.asyncDispose`. */
type Closable = Partial<AsyncDisposable> & { close?: () => unknown };

/**
 * Closes one driver if it holds a connection (`Symbol.asyncDispose` first, else `close()`);
 * anything else is left as it is. For code that builds a driver on its own, e.g. `bmi doctor`.
 */
export async function closeDriver(driver: unknown): Promise<void> {
  const closable = driver as Closable | undefined;
  const dispose = closable?.[Symbol.asyncDispose];
  if (typeof dispose === "function") await dispose.call(closable);
  else if (typeof closable?.close === "function") await closable.close();
}

/**
 * The facade's `close()`: closes every driver that holds a connection (duck-typed, so a port does
 * not have to declare it: e.g. the librbd back end's cluster connection), then the store. Once
 * only; a second call resolves with the first one's outcome. Every resource is closed even when
 * one fails; the first failure is then rethrown.
 */
export function closerFor(drivers: readonly unknown[], store: Store): () => Promise<void> {
  let closing: Promise<void> | undefined;
  const closeAll = async () => {
    const failures: unknown[] = [];
    for (const driver of new Set(drivers)) {
      try {
        await closeDriver(driver);
      } catch (error) {
        failures.push(error);
      }
    }
    try {
      store.close();
    } catch (error) {
      failures.push(error);
    }
    if (failures.length > 0) throw failures[0];
  };
  return () => {
    closing ??= closeAll();
    return closing;
  };
}
