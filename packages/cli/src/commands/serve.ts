import { BmiError } from "@bmi/core";
import type { Command } from "commander";
import { done } from "../output.js";
import { DEFAULT_DRAIN_MS, startRestServer } from "../server.js";
import type { CliContext } from "./context.js";
import { port, seconds } from "./options.js";

/** `bmi serve`: the REST server on [rest_api] ip:port until the stop signal, then a drain. */
export function registerServe(program: Command, ctx: CliContext): void {
  program
    .command("serve")
    .description(
      "serve REST on [rest_api] ip:port (alias [http]): the /v1 JSON API (OpenAPI), the original routes, /metrics, /health",
    )
    .option("--ip <address>", "bind address (default [rest_api] ip)")
    .option("--port <port>", "port (default [rest_api] port; 0 = any free port)", port)
    .option(
      "--drain <seconds>",
      "on SIGTERM/SIGINT, let running requests finish this long, then cancel and undo them",
      seconds,
      DEFAULT_DRAIN_MS / 1000,
    )
    .action(
      ctx.action(async (g, o: { ip?: string; port?: number; drain: number }) => {
        const { bmi, config, drivers } = ctx.connect({ ...g, verbose: false });
        // The server logs to [logs] path at [logs] debug's level, and always to stderr, which is
        // what its operator (or systemd's journal) watches; --verbose adds the debug lines.
        const logger = ctx.logger(g, config, { verbose: true });
        if (!config.rest_api && o.port === undefined) {
          throw new BmiError(
            "invalid_input",
            "no [rest_api] section (ip, port) in the config and no --port given",
            {
              subsystem: "config",
            },
          );
        }
        const server = await startRestServer({
          bmi,
          config,
          logger,
          drivers,
          ...(o.ip ? { host: o.ip } : {}),
          ...(o.port !== undefined ? { port: o.port } : {}),
        });
        if (ctx.format(g) === "table") ctx.stdout.write(`bmi REST server listening on ${server.url}\n`);
        ctx.onListening?.(server.url);
        await untilAborted(ctx.signal);
        const drained = await server.close({ graceMs: o.drain * 1000 });
        logger.info(drained, "stopped");
        return done({ url: server.url, stopped: true, ...drained }, ["stopped"]);
      }),
    );
}

function untilAborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => signal.addEventListener("abort", () => resolve(), { once: true }));
}
