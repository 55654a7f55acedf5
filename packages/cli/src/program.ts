import { createRequire } from "node:module";
import type { Writable } from "node:stream";
import { BmiError, toBmiError } from "@bmi/core";
import { Command, CommanderError, Option } from "commander";
import { registerAdmin } from "./commands/admin.js";
import { registerBatch } from "./commands/batch.js";
import { type CliContext, createContext, type RunOptions } from "./commands/context.js";
import { registerDb } from "./commands/db.js";
import { registerDisks } from "./commands/disk.js";
import { registerDoctor } from "./commands/doctor.js";
import { registerImages } from "./commands/image.js";
import { registerIscsi } from "./commands/iscsi.js";
import { registerNodes } from "./commands/node.js";
import { registerPower } from "./commands/power.js";
import { registerProjects } from "./commands/project.js";
import { registerServe } from "./commands/serve.js";
import { registerSnapshots } from "./commands/snapshot.js";
import { EXIT, exitCodeFor } from "./exit-codes.js";
import { FORMATS, formatOf, render } from "./output.js";

export type { Connect, Connection, ConnectOptions, RunOptions } from "./commands/context.js";

const EXAMPLES = `
Examples:
  $ export BMI_CONFIG=/etc/bmi/bmiconfig.cfg
  $ bmi db init                                  # create the database and the admin project
  $ bmi project create tenant-a
  $ bmi import tenant-a centos7                  # adopt the RBD image centos7 as a golden image
  $ bmi disk create tenant-a centos7 web-01-disk # clone + iSCSI target
  $ bmi pro tenant-a web-01 web-01-disk eth0     # boot files for the node (checked in HIL)
  $ bmi pro tenant-a web-02 web-02-disk --image centos7 --power cycle --wait --timeout 10m
  $ bmi power status tenant-a web-01
  $ bmi snap create tenant-a web-01-disk web-golden --force
  $ bmi dpro tenant-a web-01 --delete-disk
  $ bmi nodes tenant-a -f json                   # also yaml, csv, value; -c <column> to pick
  $ bmi doctor                                   # reads only: creates and changes nothing
  $ bmi serve                                    # the original REST routes on [rest_api] ip:port

Exit codes: 0 ok, 1 server fault, 2 usage or invalid input, 3 not found,
4 conflict / busy / already exists (and drift left by reconcile), 5 unauthenticated or forbidden.
`;

const VERSION = (createRequire(import.meta.url)("../package.json") as { version: string }).version;

function buildProgram(ctx: CliContext, jsonErrors: boolean): Command {
  const program = new Command("bmi")
    .description("Bare Metal Imaging: boot bare-metal nodes from copy-on-write Ceph clones over iSCSI")
    .version(VERSION, "-V, --version", "print the version")
    .option("--config <file>", "bmi_config.cfg (default: $BMI_CONFIG, else /etc/bmi/bmiconfig.cfg)")
    .addOption(new Option("-f, --format <format>", "output format (default: table)").choices(FORMATS))
    .option("--json", "the same as -f json: the result, or {error} with a stable code")
    .option("-v, --verbose", "log every step (JSON lines) to stderr")
    .addHelpText("after", EXAMPLES)
    .showHelpAfterError("(run with --help for usage)")
    .exitOverride()
    .configureOutput({
      writeOut: (s) => ctx.stdout.write(s),
      // Under JSON a usage error is printed as {error} on stdout instead (see run()).
      writeErr: (s) => {
        if (!jsonErrors) ctx.stderr.write(s);
      },
    });
  for (const register of [
    registerImages,
    registerProjects,
    registerDisks,
    registerNodes,
    registerBatch,
    registerPower,
    registerSnapshots,
    registerIscsi,
    registerDb,
    registerAdmin,
    registerDoctor,
    registerServe,
  ]) {
    register(program, ctx);
  }
  return program;
}

/**
 * Runs the `bmi` command line in-process and resolves with its exit code. Nothing calls
 * `process.exit`, so tests and other tools can embed it.
 */
export async function run(argv: readonly string[], options: RunOptions = {}): Promise<number> {
  const stderr = options.stderr ?? process.stderr;
  // Every operation carries the stop signal: SIGTERM cancels it between steps or during one, and
  // it ends undone before the database is closed below.
  const stopping = stopSignal(options.signal, stderr);
  const ctx = createContext(options, stopping.signal);
  const format = formatOf(argv);
  const machine = format === "json" || format === "yaml";
  try {
    await buildProgram(ctx, machine).parseAsync([...argv], { from: "user" });
    return ctx.exitCode;
  } catch (error) {
    if (error instanceof CommanderError && error.exitCode === 0) return EXIT.ok; // help, version
    const e =
      error instanceof CommanderError
        ? new BmiError("invalid_input", error.message.replace(/^error: /, ""), {
            details: { usage: error.code },
          })
        : toBmiError(error);
    if (machine) ctx.stdout.write(render({ kind: "done", value: { error: e.toJSON() }, lines: [] }, format));
    else if (!(error instanceof CommanderError)) stderr.write(`bmi: error: ${e.message} (${e.code})\n`);
    return error instanceof CommanderError ? EXIT.usage : exitCodeFor(e);
  } finally {
    stopping.dispose();
    await ctx.close();
  }
}

/**
 * The signal that stops the running command: the caller's, else the first SIGINT or SIGTERM.
 * After that first signal the handlers are removed, so a second one ends the process at once
 * (what reconcile is for); the first lets running operations finish or undo themselves.
 */
function stopSignal(
  given: AbortSignal | undefined,
  stderr: Writable,
): { signal: AbortSignal; dispose(): void } {
  if (given) return { signal: given, dispose: () => {} };
  const controller = new AbortController();
  const dispose = () => {
    process.off("SIGINT", stop);
    process.off("SIGTERM", stop);
  };
  const stop = (name: NodeJS.Signals) => {
    dispose();
    stderr.write(`bmi: ${name}: stopping once running operations end (send it again to stop at once)\n`);
    controller.abort();
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
  return { signal: controller.signal, dispose };
}
