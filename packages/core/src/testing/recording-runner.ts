import type { CommandOptions, CommandResult, CommandRunner } from "../exec/runner.js";

export interface RecordedCommand {
  file: string;
  args: readonly string[];
  options: CommandOptions;
}

export type ScriptedReply = Partial<Omit<CommandResult, "command" | "durationMs">> | Error;

/**
 * A CommandRunner that records every call and answers from a script (kysely's injected-driver
 * pattern): tests assert on the exact argument arrays without mocking modules. Wrap a real runner
 * (`delegate`) to record and still run.
 */
export function createRecordingRunner(
  reply: (file: string, args: readonly string[]) => ScriptedReply | undefined = () => ({}),
  delegate?: CommandRunner,
): CommandRunner & { calls: RecordedCommand[] } {
  const calls: RecordedCommand[] = [];
  const runner = async (file: string, args: readonly string[], options: CommandOptions = {}) => {
    calls.push({ file, args: [...args], options });
    const scripted = reply(file, args);
    if (scripted instanceof Error) throw scripted;
    if (scripted === undefined && delegate) return delegate(file, args, options);
    return {
      command: [file, ...args].join(" "),
      exitCode: scripted?.exitCode ?? 0,
      stdout: scripted?.stdout ?? "",
      stderr: scripted?.stderr ?? "",
      durationMs: 0,
    };
  };
  return Object.assign(runner, { calls });
}
