import {
  BmiError,
  type CallOptions,
  type CommandResult,
  type CommandRunner,
  createExecaRunner,
  type SnapshotRef,
} from "@bmi/core";
import type { z } from "zod";
import { type CommonOptionsSchema, cephTimeoutSeconds, kit } from "./options.js";
import { rbdError } from "./rbd-errors.js";

type Options = z.output<typeof CommonOptionsSchema> & { rbdPath: string; runner?: CommandRunner | undefined };

/** The rbd binary with the driver's cluster, credentials and timeouts: what every call shares. */
export interface RbdCli {
  pool: string;
  options: Options;
  spec(image: string): string;
  snapSpec(ref: SnapshotRef): string;
  /** Runs rbd; returns the result whatever the exit code. Runner errors become storage errors. */
  run(args: readonly string[], call: CallOptions | undefined, timeoutMs?: number): Promise<CommandResult>;
  /** Runs rbd and throws the mapped error on a non-zero exit. */
  ok(
    args: readonly string[],
    what: string,
    call: CallOptions | undefined,
    details?: Record<string, unknown>,
    timeoutMs?: number,
  ): Promise<CommandResult>;
  /**
   * Like `ok`, but an error whose reason is `reason` means the wanted state already holds
   * (already protected, already flat...), so a retried call succeeds.
   */
  okUnless(
    reason: string,
    args: readonly string[],
    what: string,
    call: CallOptions | undefined,
    details: Record<string, unknown>,
    timeoutMs?: number,
  ): Promise<void>;
}

/** rbd's own timeouts fire before the process is killed, so the reason comes from rbd (exit 110). */
function globalArgs(o: Options): string[] {
  const seconds = cephTimeoutSeconds(o.timeoutMs);
  return [
    ...(o.conf ? ["--conf", o.conf] : []),
    ...(o.clientId ? ["--id", o.clientId] : []),
    ...(o.keyring ? ["--keyring", o.keyring] : []),
    "--client-mount-timeout",
    seconds,
    "--rados-mon-op-timeout",
    seconds,
    "--rados-osd-op-timeout",
    seconds,
  ];
}

/** A runner failure as a storage error (a BmiError of another subsystem is re-labelled). */
function asStorageError(error: unknown, o: Options, command: string | undefined): BmiError {
  if (error instanceof BmiError) return kit.relabel(error);
  return new BmiError("unavailable", `could not run ${o.rbdPath} ${command}`, {
    subsystem: "storage",
    cause: error,
  });
}

export function createRbdCli(o: Options): RbdCli {
  const runner = o.runner ?? createExecaRunner({ subsystem: "storage", timeoutMs: o.timeoutMs });
  const global = globalArgs(o);
  const cli: RbdCli = {
    pool: o.pool,
    options: o,
    spec: (image) => `${o.pool}/${image}`,
    snapSpec: (ref) => `${o.pool}/${ref.image}@${ref.snapshot}`,
    async run(args, call, timeoutMs = o.timeoutMs) {
      kit.checkSignal(call, `rbd ${args[0]} (before it started)`);
      try {
        return await runner(o.rbdPath, [...global, ...args], { timeoutMs, signal: call?.signal });
      } catch (error) {
        throw asStorageError(error, o, args[0]);
      }
    },
    async ok(args, what, call, details = {}, timeoutMs) {
      const result = await cli.run(args, call, timeoutMs);
      if (result.exitCode !== 0) throw rbdError(result, what, details);
      return result;
    },
    async okUnless(reason, args, what, call, details, timeoutMs) {
      const result = await cli.run(args, call, timeoutMs);
      if (result.exitCode === 0) return;
      const error = rbdError(result, what, details);
      if (error.details.reason !== reason) throw error;
    },
  };
  return cli;
}

/** rbd's `--format json` output checked with `schema`; empty output is an empty list. */
export function parseJson<S extends z.ZodType>(schema: S, result: CommandResult, what: string): z.output<S> {
  const text = result.stdout.trim();
  let value: unknown;
  try {
    value = text === "" ? [] : JSON.parse(text);
  } catch (cause) {
    throw new BmiError("internal", `${what}: rbd printed output that is not JSON`, {
      subsystem: "storage",
      cause,
      details: { command: result.command, stdout: text.slice(0, 200) },
    });
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    throw new BmiError("internal", `${what}: rbd printed JSON of an unexpected shape`, {
      subsystem: "storage",
      cause: parsed.error,
      details: { command: result.command, stdout: text.slice(0, 200) },
    });
  }
  return parsed.data;
}
