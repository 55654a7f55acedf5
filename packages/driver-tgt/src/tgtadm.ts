import { BmiError, type CommandResult, type CommandRunner, type ErrorCode, lastErrorLine } from "@bmi/core";
import { parseTargets, type TgtTarget } from "./show-parser.js";
import { kit, type TgtConfig } from "./tgt-options.js";

/** tgtadm's words when tgtd is not there to answer (not running, crashed, restarting). */
export const DAEMON_UNREACHABLE =
  /can't send (the )?request|failed to send request|Transport endpoint|Connection refused|No such file or directory/i;

export interface RunOptions {
  signal?: AbortSignal;
  /** Values the runner masks in what it logs and in errors (CHAP secrets). */
  secrets?: string[];
}

/** The tgtadm command layer: every call goes to one tgtd (control port), over iSCSI. */
export interface Tgtadm {
  run(args: string[], options?: RunOptions): Promise<CommandResult>;
  /** Maps a failed call to a typed error. tgtadm exits 22 for nearly everything; the text says why. */
  failure(what: string, result: CommandResult, details?: Record<string, unknown>): BmiError;
  /** Every target tgtd has (one `show`, parsed). */
  show(signal?: AbortSignal): Promise<TgtTarget[]>;
  deleteTarget(tid: number, force: boolean, signal?: AbortSignal): Promise<CommandResult>;
}

/** What tgtadm's reason says, after "tgtd is unreachable" (checked first, it names the control port). */
const REASONS: ReadonlyArray<{ pattern: RegExp; code: ErrorCode; message: (what: string) => string }> = [
  {
    pattern: /can't find the target/,
    code: "not_found",
    message: (what) => `cannot ${what}: the target does not exist`,
  },
  { pattern: /still active/, code: "busy", message: (what) => `cannot ${what}: initiators are logged in` },
  {
    pattern: /already exists/,
    code: "already_exists",
    message: (what) => `cannot ${what}: it already exists`,
  },
  {
    pattern: /permission|not permitted/i,
    code: "permission_denied",
    message: (what) => `not allowed to ${what} (tgtadm needs root)`,
  },
];

/** tgtadm's last error line without its own "tgtadm:" prefix. */
export const reasonOf = (result: CommandResult): string =>
  lastErrorLine(result.stderr).replace(/^tgtadm:\s*/, "");

export function createTgtadm(config: TgtConfig, runner: CommandRunner): Tgtadm {
  const control = config.controlPort === undefined ? [] : ["-C", String(config.controlPort)];
  const run: Tgtadm["run"] = (args, options = {}) =>
    runner(config.tgtadm, [...control, "--lld", "iscsi", ...args], {
      timeoutMs: config.timeoutMs,
      signal: options.signal,
      secrets: options.secrets,
    });

  const failure: Tgtadm["failure"] = (what, result, details = {}) => {
    const reason = reasonOf(result);
    const cause = new Error(`${result.command}: exit ${result.exitCode}: ${reason}`);
    const options = {
      subsystem: kit.subsystem,
      cause,
      details: { ...details, exitCode: result.exitCode, reason },
    };
    if (DAEMON_UNREACHABLE.test(reason)) {
      const message = `cannot reach tgtd (control port ${config.controlPort ?? 0}) to ${what}`;
      return new BmiError("unavailable", message, options);
    }
    const known = REASONS.find((r) => r.pattern.test(reason));
    if (known) return new BmiError(known.code, known.message(what), options);
    return new BmiError("internal", `tgtadm failed to ${what} (exit ${result.exitCode})`, options);
  };

  return {
    run,
    failure,
    async show(signal) {
      const result = await run(["--mode", "target", "--op", "show"], { signal });
      if (result.exitCode !== 0) throw failure("list targets", result);
      return parseTargets(result.stdout);
    },
    deleteTarget: (tid, force, signal) =>
      run(["--mode", "target", "--op", "delete", ...(force ? ["--force"] : []), "--tid", String(tid)], {
        signal,
      }),
  };
}
