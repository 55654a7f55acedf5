/** Which side caused a failure: the caller's input (`client`) or something we depend on (`server`). */
export type Fault = "client" | "server";

/** The part of BMI a failure comes from. */
export type Subsystem = "storage" | "export" | "boot" | "isolation" | "power" | "store" | "config" | "core";

/**
 * Stable, machine-readable error codes. Callers switch on these, never on messages.
 * The fault and retryability of each code are fixed in `CODE_TRAITS` (internal; read them from an error's `fault` and `retryable`).
 */
export type ErrorCode =
  | "invalid_input" // bad name, MAC, path, number or config value
  | "not_found"
  | "already_exists"
  | "conflict" // another operation holds the lock, or the state forbids it
  | "busy" // in use: clones, watchers, logged-in initiators, pending networking action
  | "unauthenticated"
  | "forbidden" // authenticated, but the project may not act on this node or image
  | "permission_denied" // our own credentials (Ceph key, HIL account) lack a right
  | "unsupported" // the wired driver lacks a capability the operation needs
  | "timeout"
  | "unavailable" // a daemon or service cannot be reached
  | "cancelled"
  | "internal";

const CODE_TRAITS: Record<ErrorCode, { fault: Fault; retryable: boolean }> = {
  invalid_input: { fault: "client", retryable: false },
  not_found: { fault: "client", retryable: false },
  already_exists: { fault: "client", retryable: false },
  conflict: { fault: "client", retryable: true },
  busy: { fault: "client", retryable: true },
  unauthenticated: { fault: "client", retryable: false },
  forbidden: { fault: "client", retryable: false },
  permission_denied: { fault: "server", retryable: false },
  unsupported: { fault: "client", retryable: false },
  timeout: { fault: "server", retryable: true },
  unavailable: { fault: "server", retryable: true },
  cancelled: { fault: "client", retryable: false },
  internal: { fault: "server", retryable: false },
};

export interface BmiErrorOptions {
  subsystem?: Subsystem;
  /** Overrides the code's default. */
  retryable?: boolean;
  /** Overrides the code's default. */
  fault?: Fault;
  /** The underlying error (e.g. a failed command with its stderr). Never shown as the message. */
  cause?: unknown;
  /** Structured details for machines: the field that was wrong, the image name, the exit code... */
  details?: Record<string, unknown>;
}

const BMI_ERROR_BRAND = Symbol.for("@bmi/core/BmiError");

/**
 * The one error type every BMI operation and driver throws.
 * `instanceof` works across two copies of the package (the check is by a global symbol).
 */
export class BmiError extends Error {
  readonly code: ErrorCode;
  readonly fault: Fault;
  readonly retryable: boolean;
  readonly subsystem: Subsystem;
  readonly details: Record<string, unknown>;
  readonly [BMI_ERROR_BRAND] = true;

  constructor(code: ErrorCode, message: string, options: BmiErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "BmiError";
    this.code = code;
    this.fault = options.fault ?? CODE_TRAITS[code].fault;
    this.retryable = options.retryable ?? CODE_TRAITS[code].retryable;
    this.subsystem = options.subsystem ?? "core";
    this.details = options.details ?? {};
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    return (
      typeof value === "object" &&
      value !== null &&
      (value as Record<symbol, unknown>)[BMI_ERROR_BRAND] === true
    );
  }

  /** A JSON shape safe to print or send: no stack, no cause. */
  toJSON(): {
    code: ErrorCode;
    message: string;
    fault: Fault;
    retryable: boolean;
    subsystem: Subsystem;
    details: Record<string, unknown>;
  } {
    return {
      code: this.code,
      message: this.message,
      fault: this.fault,
      retryable: this.retryable,
      subsystem: this.subsystem,
      details: this.details,
    };
  }
}

export const isBmiError = (value: unknown, code?: ErrorCode): value is BmiError =>
  value instanceof BmiError && (code === undefined || value.code === code);

/** Wraps anything thrown into a BmiError, keeping BmiErrors as they are. */
export function toBmiError(error: unknown, subsystem: Subsystem = "core"): BmiError {
  if (error instanceof BmiError) return error;
  if (error instanceof Error && error.name === "AbortError") {
    return new BmiError("cancelled", "the operation was cancelled", { subsystem, cause: error });
  }
  const message = error instanceof Error ? error.message : String(error);
  return new BmiError("internal", `unexpected error: ${message}`, { subsystem, cause: error });
}
