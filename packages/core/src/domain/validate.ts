import type { z } from "zod";
import { BmiError, type Subsystem } from "../errors/index.js";

/**
 * Parses `value` with `schema`, or throws a client-fault `invalid_input` BmiError whose message
 * names the field and says what was wrong. Use it first thing in every public entry point, so
 * nothing runs on bad input.
 */
export function parseInput<S extends z.ZodType>(
  schema: S,
  value: unknown,
  field: string,
  subsystem: Subsystem = "core",
): z.output<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issues = result.error.issues.map((issue) => {
    const path = issue.path.length > 0 ? `${field}.${issue.path.join(".")}` : field;
    return { path, message: issue.message };
  });
  const first = issues[0] ?? { path: field, message: "is invalid" };
  const more =
    issues.length > 1 ? ` (and ${issues.length - 1} more problem${issues.length > 2 ? "s" : ""})` : "";
  return throwInvalid(`invalid ${first.path}: ${first.message}${more}`, subsystem, {
    field: first.path,
    issues,
  });
}

function throwInvalid(message: string, subsystem: Subsystem, details: Record<string, unknown>): never {
  throw new BmiError("invalid_input", message, { subsystem, details });
}
