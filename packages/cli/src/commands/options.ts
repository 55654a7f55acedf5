import { type Command, InvalidArgumentError } from "commander";

/**
 * `-c/--column` (repeatable, or comma-separated) on a list or show command. `db ls` keeps the
 * original's `-c` (clones), so it gets the long form only.
 */
export function withColumns(command: Command, short = true): Command {
  return command.option(
    `${short ? "-c, " : ""}--column <name>`,
    "show only this column (repeat it for more)",
    (value: string, previous: string[] = []) => [...previous, value],
  );
}

/** A list or show command: its arguments, `-c/--column`, and the action that renders its rows. */
export function columnsCommand(
  command: Command,
  args: readonly string[],
  action: (...args: unknown[]) => Promise<void>,
): Command {
  for (const arg of args) command.argument(arg);
  return withColumns(command).action(action);
}

/** An integer option within bounds; anything else is a usage error naming the option's rule. */
export function integer(min: number, max: number): (value: string) => number {
  return (value) => {
    const parsed = Number(value);
    if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(parsed) || parsed < min || parsed > max) {
      throw new InvalidArgumentError(`must be a whole number from ${min} to ${max}`);
    }
    return parsed;
  };
}

/** A TCP port, 0 meaning "any free one". */
export const port = integer(0, 65_535);

/** A duration option: a finite number of seconds, 0 or more. */
export function seconds(value: string): number {
  const parsed = Number(value);
  if (value.trim() === "" || !Number.isFinite(parsed) || parsed < 0) {
    throw new InvalidArgumentError("must be a number of seconds, 0 or more");
  }
  return parsed;
}

const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const;

/** A duration such as `90s`, `10m`, `1h` or `500ms` (a bare number is seconds), in milliseconds. */
export function duration(value: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(value.trim());
  const ms = match ? Math.round(Number(match[1]) * UNIT_MS[(match[2] ?? "s") as keyof typeof UNIT_MS]) : 0;
  if (!match || ms < 1 || ms > 86_400_000) {
    throw new InvalidArgumentError("must be a duration such as 90s, 10m or 1h (at most 24h)");
  }
  return ms;
}
