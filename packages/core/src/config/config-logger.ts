import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { type Logger, pino } from "pino";
import { createLogger, silentLogger } from "../log/index.js";
import type { BmiConfig } from "./load-config.js";

/** The original's log file name inside `[logs] path`. */
export const LOG_FILE_NAME = "ims.log";

export interface ConfigLogger {
  logger: Logger;
  /** The file it appends to; null without `[logs] path`. */
  file: string | null;
  /** Flushes and closes the log file. */
  close(): void;
}

/**
 * The logger `[logs]` asks for, as the original did: lines appended to `<path>ims.log`, level
 * debug with `debug = true` (else info), also echoed to `console` with `verbose = true` (or
 * `forceConsole`, e.g. `bmi --verbose`, which also means debug). Secrets are redacted as
 * everywhere. Nothing to write to gives the silent logger.
 */
export function loggerFromConfig(
  logs: BmiConfig["logs"],
  options: { console?: { write(line: string): unknown }; forceConsole?: boolean } = {},
): ConfigLogger {
  const level = logs.debug || options.forceConsole ? "debug" : "info";
  const streams: pino.StreamEntry[] = [];
  let file: string | null = null;
  let destination: ReturnType<typeof pino.destination> | undefined;
  if (logs.path !== null) {
    mkdirSync(logs.path, { recursive: true });
    file = join(logs.path, LOG_FILE_NAME);
    // Synchronous appends: a CLI command's lines are on disk when it exits, even on a crash.
    destination = pino.destination({ dest: file, sync: true, append: true });
    streams.push({ level, stream: destination });
  }
  if ((logs.verbose || options.forceConsole) && options.console) {
    const console = options.console;
    streams.push({ level, stream: { write: (line: string) => console.write(line) } });
  }
  if (streams.length === 0) return { logger: silentLogger, file, close: () => {} };
  return {
    logger: createLogger({ level }, pino.multistream(streams)),
    file,
    close: () => destination?.end(),
  };
}
