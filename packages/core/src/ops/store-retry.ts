import { setTimeout as sleep } from "node:timers/promises";
import { isBmiError } from "../errors/index.js";

/** Default time an operation waits for a database that another process holds locked. */
export const DEFAULT_STORE_BUSY_MS = 5_000;

/** A store write refused because another process holds the database: it did nothing, so it can run again. */
export const isStoreLocked = (error: unknown): boolean =>
  isBmiError(error) && error.subsystem === "store" && error.details.storeLocked === true;

/**
 * Runs `fn`, and while it fails only because the database is locked by another process, runs it
 * again after an async pause (10 ms doubling to 250 ms, with jitter) until `totalMs` have passed.
 * SQLite itself waits only briefly (a short `busy_timeout`), so the event loop is never blocked
 * for the length of someone else's transaction (a held `BEGIN EXCLUSIVE` froze the server).
 */
export async function retryWhileStoreLocked<T>(
  fn: () => Promise<T> | T,
  totalMs = DEFAULT_STORE_BUSY_MS,
): Promise<T> {
  const deadline = performance.now() + totalMs;
  for (let pause = 10; ; pause = Math.min(pause * 2, 250)) {
    try {
      return await fn();
    } catch (error) {
      if (!isStoreLocked(error) || performance.now() + pause > deadline) throw error;
      await sleep(pause / 2 + Math.random() * (pause / 2));
    }
  }
}
