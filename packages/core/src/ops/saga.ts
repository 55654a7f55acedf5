import { randomUUID } from "node:crypto";
import { type BmiError, toBmiError } from "../errors/index.js";
import type { Logger } from "../log/index.js";
import type { Store } from "../store/index.js";
import type { EventHub } from "./events.js";

/** Test hook: called before every step; throwing from it injects a failure at that step. */
export type StepHook = (info: { operation: string; step: string; index: number }) => void | Promise<void>;

export interface SagaContext {
  store: Store;
  logger: Logger;
  events: EventHub;
  beforeStep?: StepHook;
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
  ): Promise<T>;
  /**
   * A step after the point of no return (e.g. removing a temporary snapshot once the result
   * exists): its failure does not undo the operation; it is logged and journalled instead.
   */
  cleanup(name: string, action: () => Promise<unknown> | unknown): Promise<void>;
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

export async function runSaga<T>(
  context: SagaContext,
  operation: string,
  subject: Record<string, unknown>,
  body: (saga: Saga) => Promise<T>,
): Promise<T> {
  const { store, events } = context;
  const operationId = randomUUID();
  const logger = context.logger.child({ op: operation, operationId, ...subject });
  const completed: Completed[] = [];
  let index = 0;
  const started = performance.now();
  const journal = (step: string | null, status: string, data: Record<string, unknown> = {}) =>
    store.appendJournal({ operationId, operation, step, status, data: { ...subject, ...data } });

  const saga: Saga = {
    operationId,
    operation,
    async step(name, action, undo) {
      const stepStarted = performance.now();
      events.emit({ type: "step:started", operationId, operation, step: name });
      let ran = false;
      try {
        await context.beforeStep?.({ operation, step: name, index: index++ });
        ran = true;
        const result = await action();
        if (undo) completed.push({ name, undo: () => undo(result) });
        const durationMs = performance.now() - stepStarted;
        journal(name, "finished");
        logger.info({ step: name, durationMs: Math.round(durationMs) }, "step finished");
        events.emit({ type: "step:finished", operationId, operation, step: name, durationMs });
        return result;
      } catch (error) {
        const bmi = toBmiError(error);
        const durationMs = performance.now() - stepStarted;
        // A step that may have happened is undone too, or a lost reply would leak what it made.
        if (undo && ran && outcomeUnknown(bmi)) {
          // An undo that needs the step's result fails here and is skipped (the step made nothing it can name).
          completed.push({ name, undo: () => undo(undefined as never), bestEffort: true });
        }
        journal(name, "failed", { error: summary(bmi) });
        logger.warn({ step: name, durationMs: Math.round(durationMs), err: summary(bmi) }, "step failed");
        events.emit({
          type: "step:failed",
          operationId,
          operation,
          step: name,
          durationMs,
          error: summary(bmi),
        });
        throw bmi;
      }
    },
    async cleanup(name, action) {
      try {
        await saga.step(name, action);
      } catch (error) {
        const bmi = toBmiError(error);
        journal(name, "cleanup_failed", { error: summary(bmi) });
        logger.warn({ step: name, err: summary(bmi) }, "cleanup failed; left for reconcile()");
      }
    },
  };

  journal(null, "started");
  logger.info("operation started");
  events.emit({ type: "operation:started", operationId, operation, subject });
  try {
    const result = await body(saga);
    const durationMs = performance.now() - started;
    journal(null, "finished");
    logger.info({ durationMs: Math.round(durationMs) }, "operation finished");
    events.emit({ type: "operation:finished", operationId, operation, durationMs });
    return result;
  } catch (error) {
    const bmi = toBmiError(error);
    await undoAll(completed, { operationId, operation, logger, events, journal });
    const durationMs = performance.now() - started;
    journal(null, "failed", { error: summary(bmi) });
    logger.warn({ durationMs: Math.round(durationMs), err: summary(bmi) }, "operation failed and was undone");
    events.emit({ type: "operation:failed", operationId, operation, durationMs, error: summary(bmi) });
    throw bmi;
  }
}

async function undoAll(
  completed: Completed[],
  ctx: {
    operationId: string;
    operation: string;
    logger: Logger;
    events: EventHub;
    journal: (step: string | null, status: string, data?: Record<string, unknown>) => unknown;
  },
): Promise<void> {
  for (const { name, undo, bestEffort } of completed.reverse()) {
    const started = performance.now();
    try {
      await undo();
      const durationMs = performance.now() - started;
      ctx.journal(name, "undone");
      ctx.logger.info({ step: name, durationMs: Math.round(durationMs) }, "step undone");
      ctx.events.emit({
        type: "step:undone",
        operationId: ctx.operationId,
        operation: ctx.operation,
        step: name,
        durationMs,
      });
    } catch (error) {
      // Keep undoing the rest: one stuck undo must not leave the earlier steps in place too.
      const bmi = toBmiError(error);
      if (bestEffort) {
        // Most often the step never happened (nothing to undo); if it did, reconcile() finds it.
        ctx.journal(name, "compensation_skipped", { error: summary(bmi) });
        ctx.logger.info({ step: name, err: summary(bmi) }, "compensation of a failed step did nothing");
        continue;
      }
      ctx.journal(name, "undo_failed", { error: summary(bmi) });
      ctx.logger.error({ step: name, err: summary(bmi) }, "undo failed; left for reconcile()");
      ctx.events.emit({
        type: "step:undo-failed",
        operationId: ctx.operationId,
        operation: ctx.operation,
        step: name,
        error: summary(bmi),
      });
    }
  }
}
