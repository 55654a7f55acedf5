import type { ErrorCode } from "../errors/index.js";
import type { BootStage } from "./boot-wait.js";

/** Progress events, so a CLI or UI can draw progress without parsing logs. They also feed the journal. */
export type BmiEvent =
  | { type: "operation:started"; operationId: string; operation: string; subject: Record<string, unknown> }
  | { type: "operation:finished"; operationId: string; operation: string; durationMs: number }
  | {
      type: "operation:failed";
      operationId: string;
      operation: string;
      durationMs: number;
      error: { code: ErrorCode; message: string };
    }
  | { type: "step:started"; operationId: string; operation: string; step: string }
  | { type: "step:finished"; operationId: string; operation: string; step: string; durationMs: number }
  | {
      type: "step:failed";
      operationId: string;
      operation: string;
      step: string;
      durationMs: number;
      error: { code: ErrorCode; message: string };
    }
  | { type: "step:undone"; operationId: string; operation: string; step: string; durationMs: number }
  | {
      type: "step:undo-failed";
      operationId: string;
      operation: string;
      step: string;
      error: { code: ErrorCode; message: string };
    }
  /** A stage of a node's boot that `waitForBoot` saw, `atMs` after the wait began. */
  | { type: "boot:stage"; node: string; stage: BootStage; atMs: number };

export type BmiEventType = BmiEvent["type"];
export type BmiEventListener = (event: BmiEvent) => void;

/** A minimal typed event hub: `on()` returns the function that unsubscribes. */
export interface EventHub {
  on(listener: BmiEventListener): () => void;
  emit(event: BmiEvent): void;
}

export function createEventHub(): EventHub {
  const listeners = new Set<BmiEventListener>();
  return {
    on(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    emit(event) {
      for (const listener of listeners) {
        try {
          listener(event);
        } catch {
          // A listener's bug must not break the operation it observes.
        }
      }
    },
  };
}
