import { type BmiError, type ErrorCode, toBmiError } from "@bmi/core";

/**
 * Exit codes scripts can rely on. They group BmiError codes by what a script would do next:
 * fix the command (2), create or pick something else (3), retry or undo something first (4),
 * fix credentials (5), or call an operator (1).
 */
export const EXIT = {
  ok: 0,
  serverFault: 1,
  usage: 2,
  notFound: 3,
  conflict: 4,
  auth: 5,
} as const;

const BY_CODE: Record<ErrorCode, number> = {
  invalid_input: EXIT.usage,
  unsupported: EXIT.usage,
  not_found: EXIT.notFound,
  already_exists: EXIT.conflict,
  conflict: EXIT.conflict,
  busy: EXIT.conflict,
  unauthenticated: EXIT.auth,
  forbidden: EXIT.auth,
  // Our own service credentials (Ceph key, HIL account) lack a right: an operator must fix it.
  permission_denied: EXIT.serverFault,
  timeout: EXIT.serverFault,
  unavailable: EXIT.serverFault,
  cancelled: EXIT.serverFault,
  internal: EXIT.serverFault,
};

export function exitCodeFor(error: unknown): number {
  return BY_CODE[toBmiError(error).code];
}

/**
 * HTTP status of an error on the REST server (COR-5): the original sent 500 for nearly
 * everything; here 400 bad input, 401/403 auth, 404 unknown, 409 exists/conflict/busy,
 * 503/504 for unreachable or slow dependencies, 500 for the rest.
 */
const STATUS_BY_CODE: Record<ErrorCode, number> = {
  invalid_input: 400,
  unsupported: 400,
  not_found: 404,
  already_exists: 409,
  conflict: 409,
  busy: 409,
  unauthenticated: 401,
  forbidden: 403,
  permission_denied: 500,
  timeout: 504,
  unavailable: 503,
  cancelled: 500,
  internal: 500,
};

export function httpStatusFor(error: BmiError): number {
  return STATUS_BY_CODE[error.code];
}
