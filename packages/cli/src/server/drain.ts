import type { Logger } from "@bmi/core";

/** The operations a server is running, each cancellable through its own AbortSignal. */
export interface RequestTracker {
  /** True once `drain` was called: new requests are to be refused. */
  readonly draining: boolean;
  /** Runs one request's work with its signal; the returned promise settles with it. */
  track<T>(work: (signal: AbortSignal) => Promise<T>): Promise<T>;
  /**
   * Counts a request from its start until `end()` (its answer written or its connection gone),
   * so a drain never closes a connection between an operation's end and its answer.
   */
  begin(): { end(): void };
  /**
   * Waits for every running request; those still running after `graceMs` are aborted (their
   * operations undo themselves) and waited for too.
   */
  drain(graceMs: number): Promise<{ finished: number; cancelled: number }>;
}

/** How long a drain waits, after the last operation, for requests to be answered. */
const ANSWER_WAIT_MS = 1_000;

export function createRequestTracker(logger: Logger): RequestTracker {
  const running = new Map<Promise<unknown>, AbortController>();
  /** Requests not answered yet; only operations are counted and cancelled, but these are waited for. */
  const open = new Set<Promise<void>>();
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
    begin() {
      let end = () => {};
      const done: Promise<void> = new Promise<void>((resolve) => {
        end = resolve;
      }).finally(() => open.delete(done));
      open.add(done);
      return { end };
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
      // Then their answers, written a few ticks after the operation ends: a connection is closed
      // only after what it was owed. Bounded, because an event stream or a body still arriving never ends by itself.
      let bound: NodeJS.Timeout | undefined;
      const answered = Promise.allSettled([...open]);
      await Promise.race([answered, new Promise((resolve) => (bound = setTimeout(resolve, ANSWER_WAIT_MS)))]);
      clearTimeout(bound);
      clearTimeout(grace);
      return { finished: Math.max(0, inFlight - cancelled), cancelled };
    },
  };
}
