import { execa } from "execa";
import pLimit from "p-limit";
import { BmiError, type Subsystem } from "../errors/index.js";
import { redact } from "../log/redact.js";

export interface CommandOptions {
  /** Kill the process after this many milliseconds; the call fails with a retryable `timeout`. */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Written to the process's stdin (e.g. a secret that must not appear in its arguments). */
  input?: string;
  env?: Record<string, string>;
  /** Strings to hide wherever the command line or its output is reported. */
  secrets?: readonly string[];
}

export interface CommandResult {
  /** The command line as run, for messages (secrets redacted). */
  command: string;
  exitCode: number;
  stdout: string;
  stderr: string;
  durationMs: number;
}

/**
 * Runs one external command without a shell (argument arrays only). Resolves with the exit code
 * whatever it is, so each driver maps codes to its own errors; rejects only when the process
 * could not run (`unavailable`), timed out (`timeout`) or was cancelled (`cancelled`).
 * Drivers take a runner as an option so tests can record commands and a later runner can reach a
 * remote host.
 */
export type CommandRunner = (
  file: string,
  args: readonly string[],
  options?: CommandOptions,
) => Promise<CommandResult>;

export interface ExecaRunnerOptions {
  subsystem?: Subsystem;
  /** Default for calls that pass none. */
  timeoutMs?: number;
}

/** The default runner, over execa. */
export function createExecaRunner(defaults: ExecaRunnerOptions = {}): CommandRunner {
  const subsystem = defaults.subsystem ?? "core";
  return async (file, args, options = {}) => {
    const secrets = options.secrets ?? [];
    const command = redact([file, ...args].join(" "), secrets);
    const timeoutMs = options.timeoutMs ?? defaults.timeoutMs;
    const started = performance.now();
    const deadline = watchDeadline(timeoutMs, options.signal);
    const subprocess = execa(file, [...args], {
      reject: false,
      shell: false,
      stripFinalNewline: false,
      cancelSignal: deadline.signal,
      input: options.input,
      env: options.env,
      extendEnv: true,
      encoding: "utf8",
      forceKillAfterDelay: 2000,
    });
    deadline.watch(subprocess);
    const result = await subprocess.finally(deadline.clear);
    const durationMs = performance.now() - started;
    if (result.isCanceled && deadline.timedOut()) {
      throw new BmiError("timeout", `timed out after ${timeoutMs} ms: ${command}`, {
        subsystem,
        details: { command, timeoutMs },
      });
    }
    if (result.isCanceled) {
      throw new BmiError("cancelled", `cancelled: ${command}`, { subsystem, details: { command } });
    }
    if (result.exitCode === undefined) {
      const code = (result.cause as NodeJS.ErrnoException | undefined)?.code;
      const why =
        code === "ENOENT"
          ? `${file} is not installed or not on PATH`
          : redact(result.shortMessage ?? "unknown failure", secrets);
      throw new BmiError("unavailable", `could not run ${file}: ${why}`, { subsystem, details: { command } });
    }
    return {
      command,
      exitCode: result.exitCode,
      stdout: redact(String(result.stdout ?? ""), secrets),
      stderr: redact(String(result.stderr ?? ""), secrets),
      durationMs,
    };
  };
}

/**
 * A timeout for a child process that a blocked event loop cannot fake: when the timer fires, the
 * loop first gets one turn to collect an exit that is already waiting (a command that finished in
 * 20 ms while a synchronous wait held the loop for seconds is not a timeout), then the process is
 * cancelled through the same signal as a caller's abort.
 */
function watchDeadline(timeoutMs: number | undefined, callerSignal: AbortSignal | undefined) {
  const controller = new AbortController();
  let expired = false;
  let timer: NodeJS.Timeout | undefined;
  const onAbort = () => controller.abort(callerSignal?.reason);
  if (callerSignal?.aborted) onAbort();
  else callerSignal?.addEventListener("abort", onAbort, { once: true });
  return {
    signal: controller.signal,
    watch(child: { exitCode: number | null; signalCode: string | null }) {
      if (timeoutMs === undefined) return;
      timer = setTimeout(() => {
        setImmediate(() => {
          if (child.exitCode !== null || child.signalCode !== null) return;
          expired = true;
          controller.abort(new Error("timeout"));
        });
      }, timeoutMs);
    },
    timedOut: () => expired,
    clear: () => {
      clearTimeout(timer);
      callerSignal?.removeEventListener("abort", onAbort);
    },
  };
}

/** A shared bound on running commands: pass one to several `limitRunner` calls. */
export type CommandLimit = <T>(fn: () => Promise<T>) => Promise<T>;

export const createCommandLimit = (concurrency: number): CommandLimit => pLimit(concurrency);

/**
 * Wraps a runner so at most `limit` commands run at once (CON-4). Pass one `CommandLimit` to the
 * runners of several drivers to bound them together.
 */
export function limitRunner(runner: CommandRunner, limit: number | CommandLimit): CommandRunner {
  const run = typeof limit === "number" ? createCommandLimit(limit) : limit;
  return (file, args, options) => run(() => runner(file, args, options));
}

/** The last meaningful line of a command's stderr (tools print progress and log lines before it). */
export function lastErrorLine(stderr: string): string {
  const lines = stderr
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l.length > 0);
  return lines.at(-1) ?? "";
}
