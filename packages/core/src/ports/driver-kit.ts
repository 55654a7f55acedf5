import type { z } from "zod";
import { parseInput } from "../domain/validate.js";
import { BmiError, type Subsystem } from "../errors/index.js";
import type { CallOptions } from "./common.js";

/**
 * What every driver does at the edge of a call, written once: validate the input with the port's
 * schema (`invalid_input` naming the field), stop when the caller has cancelled, and label a
 * failure from another layer with the driver's subsystem. The real and the in-memory drivers
 * share it, so their errors look alike to the operations and to users' tests.
 */
export interface DriverKit {
  readonly subsystem: Subsystem;
  /** The value parsed by `schema`, or `invalid_input` naming `field`. */
  input<S extends z.ZodType>(schema: S, value: unknown, field: string): z.output<S>;
  /** `cancelled` for the call `what` (e.g. `attach`, `rbd clone`). */
  cancelled(what: string, cause?: unknown): BmiError;
  /** Throws `cancelled` when the call's signal has fired: checked before anything is changed. */
  checkSignal(call: CallOptions | undefined, what: string): void;
  /** A BmiError of another subsystem re-labelled as this driver's (code, details, retryable kept). */
  relabel(error: BmiError): BmiError;
}

export function driverKit(subsystem: Subsystem): DriverKit {
  const kit: DriverKit = {
    subsystem,
    input: (schema, value, field) => parseInput(schema, value, field, subsystem),
    cancelled: (what, cause) =>
      new BmiError("cancelled", `${subsystem} ${what} was cancelled`, { subsystem, cause }),
    checkSignal(call, what) {
      if (call?.signal?.aborted) throw kit.cancelled(what);
    },
    relabel(error) {
      if (error.subsystem === subsystem) return error;
      return new BmiError(error.code, error.message, {
        subsystem,
        cause: error,
        retryable: error.retryable,
        details: error.details,
      });
    },
  };
  return kit;
}
