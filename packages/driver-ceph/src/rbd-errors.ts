import { BmiError, type CommandResult, type ErrorCode } from "@bmi/core";

/** Why an rbd command failed, as far as its exit code (an errno) and stderr tell. */
export interface RbdFailure {
  code: ErrorCode;
  /** Stable machine reason, e.g. `watchers`, `snapshots`, `children`, `protected`, `unprotected`. */
  reason: string;
  /** One human sentence, without the raw stderr. */
  text: string;
  retryable?: boolean;
}

/**
 * The reason rbd gives: the last `rbd:` line of stderr (librbd log lines may come after it, and
 * `flatten error:` can share a line with a log line), else the last non-empty line.
 */
export function rbdReason(stderr: string): string {
  const lines = stderr
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l.length > 0);
  const rbdLines = lines.filter((l) => l.startsWith("rbd:"));
  const line = rbdLines.at(-1) ?? lines.at(-1) ?? "";
  // Drop a librbd log prefix glued into the line ("rbd: flatten error: 2026-… -1 librbd::…: text").
  return line
    .replace(/\d{4}-\d\d-\d\dT\S+\s+\S+\s+-?\d+\s+\S+:\s*/g, "")
    .replace(/^rbd:\s*/, "")
    .trim();
}

/** `retryable` only where a table sets it: otherwise BmiError decides by the code. */
const failure = (code: ErrorCode, reason: string, text: string, retryable?: boolean): RbdFailure =>
  retryable === undefined ? { code, reason, text } : { code, reason, text, retryable };

/** [code, text, retryable?] of each failure, keyed by its reason. */
const BY_REASON = {
  connect_timeout: ["timeout", "the Ceph cluster did not answer in time"],
  auth: ["permission_denied", "Ceph refused the client's key (cephx authentication failed)"],
  keyring: ["permission_denied", "no keyring was found for the Ceph client"],
  connect: ["unavailable", "could not connect to the Ceph cluster"],
  watchers: [
    "busy",
    "the image is in use (it has watchers: e.g. an iSCSI export, or a client that died with it open, whose watch Ceph keeps until osd_client_watch_timeout, 30 s by default)",
  ],
  snapshots: ["busy", "the image has snapshots; remove them first"],
  children: ["busy", "the snapshot has clones; flatten or remove them first"],
  protected: ["busy", "the snapshot is protected; unprotect it first"],
  unprotected: [
    "conflict",
    "the parent snapshot must be protected before it can be cloned (clone v1)",
    false,
  ],
  already_protected: ["busy", "the snapshot is already protected"],
  already_unprotected: ["invalid_input", "the snapshot is not protected"],
  no_parent: ["invalid_input", "the image has no parent"],
  pool: ["not_found", "the pool does not exist"],
} as const satisfies Record<string, readonly [ErrorCode, string, boolean?]>;

/** The failures both back ends report, by reason (so the CLI and librbd say the same thing). */
export const FAILURES = Object.fromEntries(
  Object.entries(BY_REASON).map(([reason, [code, text, retryable]]) => [
    reason,
    failure(code, reason, text, retryable),
  ]),
) as { readonly [R in keyof typeof BY_REASON]: RbdFailure };

function connectFailure(exitCode: number, stderr: string): RbdFailure {
  if (exitCode === 110 || /timed out/.test(stderr)) return FAILURES.connect_timeout;
  if (exitCode === 13 || exitCode === 1) return FAILURES.auth;
  if (/keyring/.test(stderr)) return FAILURES.keyring;
  return FAILURES.connect;
}

/** stderr patterns of the rbd CLI, first match wins (spec §9). */
const STDERR_REASONS: ReadonlyArray<[RegExp, RbdFailure]> = [
  [/still has watchers/, FAILURES.watchers],
  [/cannot unprotect|child\(ren\)/, FAILURES.children],
  [/is protected from removal|which is protected|snap is protected/, FAILURES.protected],
  [/must be protected/, FAILURES.unprotected],
  [/already protected/, FAILURES.already_protected],
  [/already unprotected/, FAILURES.already_unprotected],
  [/has no parent/, FAILURES.no_parent],
  [/error opening pool|error opening default pool/, FAILURES.pool],
];

/** Maps a failed rbd run (exit code = errno, spec §9) to a BMI error code and a clear sentence. */
export function classifyRbdFailure(exitCode: number, stderr: string): RbdFailure {
  if (/couldn't connect to the cluster|unable to find a keyring|keyring not found/.test(stderr)) {
    return connectFailure(exitCode, stderr);
  }
  if (/still has watchers/.test(stderr)) return FAILURES.watchers;
  if (exitCode === 39 || /image has snapshots/.test(stderr)) {
    return /linked clones/.test(stderr)
      ? {
          ...FAILURES.snapshots,
          text: "the image has snapshots with clones; flatten or remove the clones first",
        }
      : FAILURES.snapshots;
  }
  return STDERR_REASONS.find(([pattern]) => pattern.test(stderr))?.[1] ?? errnoFailure(exitCode);
}

/** What an errno alone says (the rbd CLI's exit code is the errno of the librbd call that failed). */
const BY_ERRNO: ReadonlyArray<[readonly number[], RbdFailure]> = [
  [[2], failure("not_found", "missing", "no such image or snapshot")],
  [[17], failure("already_exists", "exists", "the name is already taken")],
  [[16], failure("busy", "busy", "the image or snapshot is busy")],
  [[1, 13], failure("permission_denied", "caps", "the Ceph client's capabilities do not allow this")],
  [[110], failure("timeout", "op_timeout", "the Ceph cluster did not answer in time")],
  // Names and sizes were validated before the call, so an EINVAL left is the cluster's state
  // changing under the request (a concurrent operation), not the caller's input.
  [
    [22],
    failure(
      "conflict",
      "invalid",
      "rbd refused the request (EINVAL): the image or snapshot changed under it; try again",
      true,
    ),
  ],
  [[4, 11, 107, 108, 111, 113], failure("unavailable", "unreachable", "the Ceph cluster is not reachable")],
];

export function errnoFailure(errno: number): RbdFailure {
  const known = BY_ERRNO.find(([errnos]) => errnos.includes(errno))?.[1];
  return known ?? failure("internal", "unknown", `Ceph failed with errno ${errno}`);
}

/** A BmiError for a failed rbd command; the raw stderr goes into `cause`, never only into the message. */
export function rbdError(
  result: CommandResult,
  what: string,
  details: Record<string, unknown> = {},
): BmiError {
  const failure = classifyRbdFailure(result.exitCode, result.stderr);
  const said = rbdReason(result.stderr);
  const message = `${what}: ${failure.text}${said ? ` (rbd: ${said})` : ""}`;
  const cause = new Error(result.stderr.trim() || `exit code ${result.exitCode}`);
  return new BmiError(failure.code, message, {
    subsystem: "storage",
    cause,
    retryable: failure.retryable,
    details: { ...details, reason: failure.reason, exitCode: result.exitCode, command: result.command },
  });
}
