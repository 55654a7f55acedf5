import { BmiError, type Subsystem } from "../../errors/index.js";
import type { CallOptions } from "../../ports/common.js";
import { driverKit } from "../../ports/driver-kit.js";

/**
 * Injected failures for an in-memory driver, the same in all of them: `failNext` queues errors
 * per operation, `enter` (first thing in every call) throws `cancelled` when the call's signal
 * fired, else the next queued failure of that operation.
 */
export interface FaultGate<Op extends string> {
  /** The next `times` calls of `operation` fail with `error` (default: `unavailable`, injected). */
  failNext(operation: Op, error?: Error, times?: number): void;
  enter(operation: Op, call: CallOptions | undefined): void;
}

export function createFaultGate<Op extends string>(subsystem: Subsystem): FaultGate<Op> {
  const kit = driverKit(subsystem);
  const queued = new Map<Op, Error[]>();
  return {
    failNext(operation, error, times = 1) {
      const injected =
        error ??
        new BmiError("unavailable", `injected failure in ${subsystem} ${operation}`, {
          subsystem,
          details: { injected: true },
        });
      queued.set(operation, [...(queued.get(operation) ?? []), ...Array<Error>(times).fill(injected)]);
    },
    enter(operation, call) {
      kit.checkSignal(call, operation);
      const errors = queued.get(operation);
      const next = errors?.shift();
      if (errors?.length === 0) queued.delete(operation);
      if (next) throw next;
    },
  };
}
