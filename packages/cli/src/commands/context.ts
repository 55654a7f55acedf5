import type { Writable } from "node:stream";
import {
  type Bmi,
  type BmiConfig,
  type ConfigLogger,
  type Logger,
  loadConfig,
  loggerFromConfig,
} from "@bmi/core";
import { type ConfigDrivers, createBmiFromConfig } from "@bmi/wiring";
import type { Command } from "commander";
import { EXIT } from "../exit-codes.js";
import { type Format, type Result, render } from "../output.js";

/** What a command works on: the facade, the loaded config, and what opening the store warned. */
export interface Connection {
  bmi: Bmi;
  config: BmiConfig;
  warnings: readonly string[];
  /** The drivers the config wired (absent for a BMI built another way, e.g. in memory). */
  drivers?: ConfigDrivers;
  close(): void | Promise<void>;
}

export interface ConnectOptions {
  logger: Logger;
  env: Record<string, string | undefined>;
  /** Create the database if it does not exist (only `bmi db init`). */
  createStore: boolean;
}

/** Builds the BMI a command uses; the default wires the deployment `bmi_config.cfg` describes. */
export type Connect = (config: BmiConfig, options: ConnectOptions) => Connection;

export interface RunOptions {
  stdout?: Writable;
  stderr?: Writable;
  /** Environment for `BMI_CONFIG`, `HIL_USERNAME`, `HIL_PASSWORD`; default `process.env`. */
  env?: Record<string, string | undefined>;
  /**
   * Stops the command (default: the first SIGINT or SIGTERM): a running operation is cancelled
   * and undone, `bmi serve` drains (see `--drain`); then the database is closed.
   */
  signal?: AbortSignal;
  /** Called once `bmi serve` listens (tests use it to learn the port). */
  onListening?: (url: string) => void;
  /** Another way to build the BMI from the config (e.g. an in-memory one in unit tests). */
  connect?: Connect;
}

/** The options every command sees (global ones and its own `-c`). */
export interface Globals {
  config?: string;
  json?: boolean;
  format?: Format;
  verbose?: boolean;
  column?: string[];
}

export interface CliContext {
  readonly stdout: Writable;
  readonly stderr: Writable;
  readonly env: Record<string, string | undefined>;
  /** The stop signal: every operation carries it, so SIGTERM cancels it and it ends undone. */
  readonly signal: AbortSignal;
  /** `{ signal }`, the options every facade call takes. */
  readonly call: { signal: AbortSignal };
  readonly onListening: ((url: string) => void) | undefined;
  exitCode: number;
  config(g: Globals): BmiConfig;
  /** `[logs]` (file `<path>ims.log`, level, console echo); `--verbose` adds debug lines on stderr. */
  logger(g: Globals, config: BmiConfig, overrides?: Partial<BmiConfig["logs"]>): Logger;
  connect(g: Globals, options?: { createStore?: boolean }): Connection;
  format(g: Globals): Format;
  /** Live progress on stderr: only for people (table output) at a terminal. */
  progress(g: Globals): boolean;
  /** Wraps a command body: output in the asked format, and the exit code. */
  action<A extends unknown[]>(
    body: (g: Globals, ...args: A) => Promise<Result> | Result,
  ): (...args: unknown[]) => Promise<void>;
  /** Closes every database and log file the command opened. */
  close(): Promise<void>;
}

export function createContext(options: RunOptions, signal: AbortSignal): CliContext {
  const stdout = options.stdout ?? process.stdout;
  const stderr = options.stderr ?? process.stderr;
  const env = options.env ?? process.env;
  const connect: Connect = options.connect ?? defaultConnect;
  const opened: Connection[] = [];
  const logFiles: ConfigLogger[] = [];
  const ctx: CliContext = {
    stdout,
    stderr,
    env,
    signal,
    call: { signal },
    onListening: options.onListening,
    exitCode: EXIT.ok,
    config(g) {
      const { config, warnings } = loadConfig({ ...(g.config ? { path: g.config } : {}), env });
      if (ctx.format(g) === "table") for (const w of warnings) stderr.write(`bmi: warning: ${w}\n`);
      return config;
    },
    logger(g, config, overrides = {}) {
      const configured = loggerFromConfig(
        { ...config.logs, ...overrides },
        { console: stderr, forceConsole: g.verbose === true },
      );
      logFiles.push(configured);
      return configured.logger;
    },
    connect(g, { createStore = false } = {}) {
      const config = ctx.config(g);
      const connection = connect(config, { logger: ctx.logger(g, config), env, createStore });
      opened.push(connection);
      return connection;
    },
    format: (g) => (g.json ? "json" : (g.format ?? "table")),
    progress: (g) => ctx.format(g) === "table" && (stderr as { isTTY?: boolean }).isTTY === true,
    action:
      (body) =>
      async (...args) => {
        const command = args[args.length - 1] as Command;
        const g = command.optsWithGlobals<Globals>();
        const result = await body(g, ...(args.slice(0, -1) as never));
        stdout.write(render(result, ctx.format(g), g.column ?? []));
        ctx.exitCode = result.exitCode ?? EXIT.ok;
      },
    async close() {
      for (const connection of opened) await connection.close();
      for (const log of logFiles) log.close();
    },
  };
  return ctx;
}

function defaultConnect(config: BmiConfig, options: ConnectOptions): Connection {
  const wired = createBmiFromConfig(config, options);
  const { bmi, drivers, store, close } = wired;
  return { bmi, config, warnings: store.warnings, drivers, close };
}
