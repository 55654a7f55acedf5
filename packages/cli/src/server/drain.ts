import type { Logger } from "@bmi/core";

/** The operations a server is running, each cancellable through its own AbortSignal. */
export interface RequestTracker {
  /** True once `drain` was called: new requests are to be refused. */
  readonly draining: boolean;
  /** Runs one request's work with its signal; the returned promise settles with it. */
  track<T>(work: (signal: AbortSignal) => Promise<T>): Promise<T>;
  /**
   * Waits for every running request; those still running after `graceMs` are aborted (their
   * operations undo themselves) and waited for too.
   */
  drain(graceMs: number): Promise<{ finished: number; cancelled: number }>;
}

export function createRequestTracker(logger: Logger): RequestTracker {
  const running = new Map<Promise<unknown>, AbortController>();
  let draining = false;
  return {
    get draining() {
      return draining;
    },
    track(work) {
      const controller = new AbortController();
      const done = work(controller.signal).finally(() => running.delete(done));
      running.set(done, controller);
      return done;
    },
    async drain(graceMs) {
      draining = true;
      const inFlight = running.size;
      let cancelled = 0;
      if (inFlight > 0)
        logger.info({ running: inFlight, graceMs }, "stopping: letting running requests finish");
      const grace = setTimeout(() => {
        for (const controller of running.values()) {
          if (controller.signal.aborted) continue;
          cancelled++;
          controller.abort();
        }
      }, graceMs);
      // Requests that arrive meanwhile (kept-alive connections) are refused at once, but are
      // waited for too: loop until nothing runs.
      while (running.size > 0) await Promise.allSettled([...running.keys()]);
      clearTimeout(grace);
      return { finished: Math.max(0, inFlight - cancelled), cancelled };
    },
  };
}
