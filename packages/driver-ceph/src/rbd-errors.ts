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

/** The failures both back ends report, by reason (so the CLI and librbd say the same thing). */
export const FAILURES = {
  connect_timeout: {
    code: "timeout",
    reason: "connect_timeout",
    text: "the Ceph cluster did not answer in time",
  },
  auth: {
    code: "permission_denied",
    reason: "auth",
    text: "Ceph refused the client's key (cephx authentication failed)",
  },
  keyring: { code: "permission_denied", reason: "keyring", text: "no keyring was found for the Ceph client" },
  connect: { code: "unavailable", reason: "connect", text: "could not connect to the Ceph cluster" },
  watchers: {
    code: "busy",
    reason: "watchers",
    text: "the image is in use (it has watchers, e.g. an iSCSI export)",
  },
  snapshots: { code: "busy", reason: "snapshots", text: "the image has snapshots; remove them first" },
  children: {
    code: "busy",
    reason: "children",
    text: "the snapshot has clones; flatten or remove them first",
  },
  protected: { code: "busy", reason: "protected", text: "the snapshot is protected; unprotect it first" },
  unprotected: {
    code: "conflict",
    reason: "unprotected",
    text: "the parent snapshot must be protected before it can be cloned (clone v1)",
    retryable: false,
  },
  already_protected: { code: "busy", reason: "already_protected", text: "the snapshot is already protected" },
  already_unprotected: {
    code: "invalid_input",
    reason: "already_unprotected",
    text: "the snapshot is not protected",
  },
  no_parent: { code: "invalid_input", reason: "no_parent", text: "the image has no parent" },
  pool: { code: "not_found", reason: "pool", text: "the pool does not exist" },
} as const satisfies Record<string, RbdFailure>;

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
export function errnoFailure(errno: number): RbdFailure {
  switch (errno) {
    case 2:
      return { code: "not_found", reason: "missing", text: "no such image or snapshot" };
    case 17:
      return { code: "already_exists", reason: "exists", text: "the name is already taken" };
    case 16:
      return { code: "busy", reason: "busy", text: "the image or snapshot is busy" };
    case 1:
    case 13:
      return {
        code: "permission_denied",
        reason: "caps",
        text: "the Ceph client's capabilities do not allow this",
      };
    case 110:
      return { code: "timeout", reason: "op_timeout", text: "the Ceph cluster did not answer in time" };
    case 22:
      // Names and sizes were validated before the call, so an EINVAL left is the cluster's state
      // changing under the request (a concurrent operation), not the caller's input.
      return {
        code: "conflict",
        reason: "invalid",
        text: "rbd refused the request (EINVAL): the image or snapshot changed under it; try again",
        retryable: true,
      };
    case 4:
    case 11:
    case 107:
    case 108:
    case 111:
    case 113:
      return { code: "unavailable", reason: "unreachable", text: "the Ceph cluster is not reachable" };
    default:
      return { code: "internal", reason: "unknown", text: `Ceph failed with errno ${errno}` };
  }
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
