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

/** Maps a failed rbd run (exit code = errno, spec §9) to a BMI error code and a clear sentence. */
export function classifyRbdFailure(exitCode: number, stderr: string): RbdFailure {
  const s = stderr;
  if (/couldn't connect to the cluster|unable to find a keyring|keyring not found/.test(s)) {
    if (exitCode === 110 || /timed out/.test(s)) {
      return { code: "timeout", reason: "connect_timeout", text: "the Ceph cluster did not answer in time" };
    }
    if (exitCode === 13 || exitCode === 1) {
      return {
        code: "permission_denied",
        reason: "auth",
        text: "Ceph refused the client's key (cephx authentication failed)",
      };
    }
    if (/keyring/.test(s)) {
      return {
        code: "permission_denied",
        reason: "keyring",
        text: "no keyring was found for the Ceph client",
      };
    }
    return { code: "unavailable", reason: "connect", text: "could not connect to the Ceph cluster" };
  }
  if (/still has watchers/.test(s)) {
    return {
      code: "busy",
      reason: "watchers",
      text: "the image is in use (it has watchers, e.g. an iSCSI export)",
    };
  }
  if (exitCode === 39 || /image has snapshots/.test(s)) {
    return {
      code: "busy",
      reason: "snapshots",
      text: /linked clones/.test(s)
        ? "the image has snapshots with clones; flatten or remove the clones first"
        : "the image has snapshots; remove them first",
    };
  }
  if (/cannot unprotect|child\(ren\)/.test(s)) {
    return {
      code: "busy",
      reason: "children",
      text: "the snapshot has clones; flatten or remove them first",
    };
  }
  if (/is protected from removal|which is protected|snap is protected/.test(s)) {
    return { code: "busy", reason: "protected", text: "the snapshot is protected; unprotect it first" };
  }
  if (/must be protected/.test(s)) {
    return {
      code: "conflict",
      reason: "unprotected",
      text: "the parent snapshot must be protected before it can be cloned (clone v1)",
      retryable: false,
    };
  }
  if (/already protected/.test(s))
    return { code: "busy", reason: "already_protected", text: "the snapshot is already protected" };
  if (/already unprotected/.test(s)) {
    return { code: "invalid_input", reason: "already_unprotected", text: "the snapshot is not protected" };
  }
  if (/has no parent/.test(s))
    return { code: "invalid_input", reason: "no_parent", text: "the image has no parent" };
  if (/error opening pool|error opening default pool/.test(s)) {
    return { code: "not_found", reason: "pool", text: "the pool does not exist" };
  }
  switch (exitCode) {
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
      return { code: "internal", reason: "unknown", text: `rbd failed with exit code ${exitCode}` };
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
