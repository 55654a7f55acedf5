import { randomUUID } from "node:crypto";
import { type BmiError, toBmiError } from "../errors/index.js";
import type { Logger } from "../log/index.js";
import type { NewJournalEntry, Store } from "../store/index.js";
import { throwIfCancelled, withoutCallContext } from "./call-context.js";
import type { BmiEvent, EventHub } from "./events.js";
import { retryWhileStoreLocked } from "./store-retry.js";

/** Test hook: called before every step; throwing from it injects a failure at that step. */
export type StepHook = (info: { operation: string; step: string; index: number }) => void | Promise<void>;

export interface SagaContext {
  store: Store;
  logger: Logger;
  events: EventHub;
  beforeStep?: StepHook;
  /** How long a step waits, in async retries, for a database locked by another process. */
  storeBusyMs?: number;
}

/**
 * What a step makes or removes outside the database, journalled before it runs (`image:<rbd>`,
 * `target:<iqn>`, `boot:<node>`, `snapshot:<rbd>@<snap>`, `row:<id>`). reconcile() removes an
 * object only when an operation of this database that did not finish touched it.
 */
export interface StepOptions {
  resources?: string[];
}

/**
 * One run of a multi-step operation. `step()` runs an action and registers its undo; if any later
 * step fails, `run()` undoes the completed steps in reverse and rethrows, so the result is as if
 * nothing happened (COR-1). An undo that fails is journalled for `reconcile()` (COR-2).
 */
export interface Saga {
  readonly operationId: string;
  readonly operation: string;
  /** Runs a step. `undo` receives the step's result. Steps without an undo are final. */
  step<T>(
    name: string,
    action: () => Promise<T> | T,
    undo?: (result: T) => Promise<unknown> | unknown,
    options?: StepOptions,
  ): Promise<T>;
  /**
   * A step after the point of no return (e.g. removing a temporary snapshot once the result
   * exists): its failure does not undo the operation; it is logged and journalled instead.
   */
  cleanup(name: string, action: () => Promise<unknown> | unknown, options?: StepOptions): Promise<void>;
}

interface Completed {
  name: string;
  undo: () => Promise<unknown> | unknown;
  /** A compensation for a step whose outcome is unknown: its failure is expected and not drift. */
  bestEffort?: boolean;
}

/**
 * Failures after which a step may have done its work anyway (the command ran, the reply was
 * lost): a timeout, an unreachable daemon, a cancellation, an unexpected error. A definite refusal
 * (exists, not found, busy, conflict...) did nothing, and undoing it could hit what someone else made.
 */
export const outcomeUnknown = (error: BmiError) =>
  error.code === "timeout" ||
  error.code === "unavailable" ||
  error.code === "cancelled" ||
  error.code === "internal";

const summary = (error: BmiError) => ({ code: error.code, message: error.message });

type Status =
  | "started"
  | "finished"
  | "failed"
  | "undone"
  | "undo_failed"
  | "compensation_skipped"
  | "cleanup_failed";

type Level = "info" | "warn" | "error";

/**
 * How each transition is reported besides its journal row: the log level, the log message for
 * the operation and for a step (none: no log line), and whether it is an event.
 */
const REPORTS: Record<Status, { level: Level; operation?: string; step?: string; event: boolean }> = {
  started: { level: "info", operation: "operation started", event: true },
  finished: { level: "info", operation: "operation finished", step: "step finished", event: true },
  failed: { level: "warn", operation: "operation failed and was undone", step: "step failed", event: true },
  undone: { level: "info", step: "step undone", event: true },
  undo_failed: { level: "error", step: "undo failed; left for reconcile()", event: true },
  compensation_skipped: {
    level: "info",
    step: "compensation of a failed step found nothing to undo",
    event: false,
  },
  cleanup_failed: { level: "warn", step: "cleanup failed; left for reconcile()", event: false },
};

/** One transition of the operation (`step` null) or of a step. */
interface Transition {
  step: string | null;
  status: Status;
  durationMs?: number;
  error?: BmiError;
  /** Extra journal data (e.g. the resources a step is about to touch). */
  data?: Record<string, unknown>;
  /** false: no journal row (a step's start is journalled only when it names resources). */
  journal?: boolean;
}

/**
 * The one place a saga reports to: `report()` writes the journal row, the log line and the event
 * of each transition. A journal write waits (asynchronously) while another process holds the
 * database, is retried once after any other failure, and is then kept in `lostJournal` (and
 * logged): bookkeeping never decides whether an undo runs.
 */
function createSink(
  context: SagaContext,
  operationId: string,
  operation: string,
  subject: Record<string, unknown>,
) {
  const logger = context.logger.child({ op: operation, operationId, ...subject });
  const lostJournal: NewJournalEntry[] = [];
  const journal = async (step: string | null, status: Status, data: Record<string, unknown>) => {
    const entry: NewJournalEntry = { operationId, operation, step, status, data: { ...subject, ...data } };
    const write = () => retryWhileStoreLocked(() => context.store.journal.append(entry), context.storeBusyMs);
    try {
      await write().catch(write);
    } catch (error) {
      lostJournal.push(entry);
      logger.error({ step, status, err: summary(toBmiError(error)) }, "journal write failed");
    }
  };
  const event = (t: Transition): BmiEvent => {
    const base = { operationId, operation, ...(t.step === null ? {} : { step: t.step }) };
    const kind = t.step === null ? "operation" : "step";
    const type = `${kind}:${t.status === "undo_failed" ? "undo-failed" : t.status}`;
    const extra = t.step === null && t.status === "started" ? { subject } : {};
    const timing = t.durationMs === undefined ? {} : { durationMs: t.durationMs };
    return {
      type,
      ...base,
      ...extra,
      ...timing,
      ...(t.error ? { error: summary(t.error) } : {}),
    } as BmiEvent;
  };
  return {
    lostJournal,
    async report(t: Transition): Promise<void> {
      const err = t.error && summary(t.error);
      if (t.journal !== false) await journal(t.step, t.status, { ...t.data, ...(err ? { error: err } : {}) });
      const how = REPORTS[t.status];
      const message = t.step === null ? how.operation : how.step;
      if (message) {
        const fields = {
          ...(t.step === null ? {} : { step: t.step }),
          ...(t.durationMs === undefined ? {} : { durationMs: Math.round(t.durationMs) }),
          ...(err ? { err } : {}),
        };
        logger[how.level](fields, message);
      }
      if (how.event) context.events.emit(event(t));
    },
  };
}
type Sink = ReturnType<typeof createSink>;

export async function runSaga<T>(
  context: SagaContext,
  operation: string,
  subject: Record<string, unknown>,
  body: (saga: Saga) => Promise<T>,
): Promise<T> {
  const operationId = randomUUID();
  const sink = createSink(context, operationId, operation, subject);
  const completed: Completed[] = [];
  const started = performance.now();
  const saga = createSaga(context, sink, operationId, operation, completed);

  await sink.report({ step: null, status: "started" });
  try {
    const result = await body(saga);
    await sink.report({ step: null, status: "finished", durationMs: performance.now() - started });
    return result;
  } catch (error) {
    const bmi = toBmiError(error);
    // Outside the caller's signal: after an abort, the compensations must still run to the end.
    await withoutCallContext(() => undoAll(completed, sink));
    await sink.report({ step: null, status: "failed", durationMs: performance.now() - started, error: bmi });
    if (sink.lostJournal.length > 0) {
      bmi.details.journalWritesLost = sink.lostJournal.map((e) => `${e.step ?? "operation"}: ${e.status}`);
    }
    throw bmi;
  }
}

function createSaga(
  context: SagaContext,
  sink: Sink,
  operationId: string,
  operation: string,
  completed: Completed[],
): Saga {
  let index = 0;
  const saga: Saga = {
    operationId,
    operation,
    async step<T>(
      name: string,
      action: () => Promise<T> | T,
      undo?: (result: T) => Promise<unknown> | unknown,
      options: StepOptions = {},
    ): Promise<T> {
      const stepStarted = performance.now();
      // Journalled before the action, so a crash during it still leaves the proof that we touched these.
      const resources = options.resources ?? [];
      await sink.report({
        step: name,
        status: "started",
        journal: resources.length > 0,
        data: { resources },
      });
      let ran = false;
      try {
        // An abort between steps stops here; what was done is undone below.
        throwIfCancelled();
        await context.beforeStep?.({ operation, step: name, index: index++ });
        ran = true;
        const result = await retryWhileStoreLocked(action, context.storeBusyMs);
        // The undo is registered before any bookkeeping, and exactly once.
        if (undo) completed.push({ name, undo: () => undo(result) });
        await sink.report({ step: name, status: "finished", durationMs: performance.now() - stepStarted });
        return result;
      } catch (error) {
        const bmi = toBmiError(error);
        // A step that may have happened is undone too, or a lost reply would leak what it made.
        // Its undo gets no result: one that needs it does nothing (the step made nothing it can name).
        if (undo && ran && outcomeUnknown(bmi)) {
          completed.push({ name, undo: () => undo(undefined as T), bestEffort: true });
        }
        await sink.report({
          step: name,
          status: "failed",
          durationMs: performance.now() - stepStarted,
          error: bmi,
        });
        throw bmi;
      }
    },
    async cleanup(name, action, options) {
      try {
        // Past the point of no return the result exists: finish tidying even if the caller aborts.
        await withoutCallContext(() => saga.step(name, action, undefined, options));
      } catch (error) {
        await sink.report({ step: name, status: "cleanup_failed", error: toBmiError(error) });
      }
    },
  };
  return saga;
}

async function undoAll(completed: Completed[], sink: Sink) {
  for (const { name, undo, bestEffort } of [...completed].reverse()) {
    const started = performance.now();
    let failure: BmiError | undefined;
    try {
      await retryWhileStoreLocked(undo);
    } catch (error) {
      failure = toBmiError(error);
    }
    // Bookkeeping after the undo, outside its try: a journal failure can never skip an undo.
    if (!failure) {
      await sink.report({ step: name, status: "undone", durationMs: performance.now() - started });
    } else if (bestEffort && !outcomeUnknown(failure) && failure.code !== "busy") {
      // A definite refusal (not found, conflict...): most often the step never happened. If it
      // did, reconcile() finds it through the journal (failed operations count as unfinished).
      await sink.report({ step: name, status: "compensation_skipped", error: failure });
    } else {
      // Also a compensation that could not finish (timed out, HIL busy with the queued action):
      // saying it "did nothing" would be false, so it is an undo left for reconcile().
      await sink.report({ step: name, status: "undo_failed", error: failure });
    }
  }
}
