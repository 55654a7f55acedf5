import { type Logger, type LoggerOptions, pino } from "pino";

export type { Logger } from "pino";

/**
 * Paths pino censors in every log line. Secrets are also never put into log bindings on purpose;
 * this is the safety net.
 */
export const REDACT_PATHS = [
  "password",
  "secret",
  "key",
  "token",
  "authorization",
  "*.password",
  "*.secret",
  "*.key",
  "*.token",
  "*.authorization",
  "*.*.password",
  "*.*.secret",
  "chap.secret",
  "*.chap.secret",
  "headers.authorization",
  "chap_secret",
  "*.chap_secret",
  "*.*.chap_secret",
  "config.net_isolator.password",
  "config.iscsi.password",
  "config.iscsi.chap_secret",
];

export function createLogger(options: LoggerOptions = {}, destination?: pino.DestinationStream): Logger {
  const merged: LoggerOptions = {
    level: process.env.BMI_LOG_LEVEL ?? "info",
    ...options,
    redact: { paths: REDACT_PATHS, censor: "[REDACTED]" },
  };
  return destination ? pino(merged, destination) : pino(merged);
}

/** A logger that writes nothing: the default for library users who pass none. */
export const silentLogger: Logger = pino({ level: "silent" });
