import { BmiError } from "@bmi/core";
import { errnoFailure, FAILURES, type RbdFailure } from "./rbd-errors.js";

/** The librbd calls whose errno means something more specific than errno alone says. */
export type LibrbdStep =
  | "connect"
  | "pool"
  | "remove"
  | "snap_remove"
  | "snap_protect"
  | "snap_unprotect"
  | "clone"
  | "flatten"
  | "other";

/**
 * errno → reason per call, the same reasons the rbd CLI's stderr gives for the same errno
 * (the CLI's exit code is that call's errno; spec §9).
 */
const BY_STEP: Partial<Record<LibrbdStep, Record<number, RbdFailure>>> = {
  connect: {
    110: FAILURES.connect_timeout,
    13: FAILURES.auth,
    1: FAILURES.auth,
    2: FAILURES.keyring,
    22: FAILURES.keyring,
  },
  pool: { 2: FAILURES.pool },
  remove: { 16: FAILURES.watchers, 39: FAILURES.snapshots },
  snap_remove: { 16: FAILURES.protected },
  snap_protect: { 16: FAILURES.already_protected },
  snap_unprotect: { 16: FAILURES.children, 22: FAILURES.already_unprotected },
  // librbd refuses a clone v1 of an unprotected snapshot with EINVAL ("parent snapshot must be protected").
  clone: { 22: FAILURES.unprotected },
  flatten: { 22: FAILURES.no_parent },
};

export function classifyLibrbdFailure(step: LibrbdStep, errno: number): RbdFailure {
  const failure = BY_STEP[step]?.[errno];
  if (failure) return failure;
  if (step === "connect" && errnoFailure(errno).code === "internal") return FAILURES.connect;
  return errnoFailure(errno);
}

/** A BmiError for a librbd/librados call that returned `-errno`. */
export function librbdError(
  step: LibrbdStep,
  errno: number,
  what: string,
  details: Record<string, unknown> = {},
): BmiError {
  const failure = classifyLibrbdFailure(step, errno);
  return new BmiError(failure.code, `${what}: ${failure.text} (librbd: errno ${errno})`, {
    subsystem: "storage",
    retryable: failure.retryable,
    details: { ...details, reason: failure.reason, errno },
  });
}
