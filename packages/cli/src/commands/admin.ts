import { loadConfig, redactedConfig } from "@bmi/core";
import type { Command } from "commander";
import { EXIT } from "../exit-codes.js";
import { done } from "../output.js";
import type { CliContext } from "./context.js";

/** `bmi reconcile` and `bmi config`. */
export function registerAdmin(program: Command, ctx: CliContext): void {
  program
    .command("reconcile")
    .description(
      "compare database, RBD images, targets and boot files; report drift (exit 4 while drift remains)",
    )
    .option("--repair", "repair what this database proves an unfinished operation of ours left behind")
    .option(
      "--remove <subject...>",
      "with --repair: also remove these `unknown` objects (images, targets, boot files) by name",
    )
    .action(
      ctx.action(async (g, o: { repair?: boolean; remove?: string[] }) => {
        const options = { repair: o.repair === true, ...(o.remove ? { remove: o.remove } : {}) };
        const report = await ctx.connect(g).bmi.reconcile(options, ctx.call);
        const repaired = new Set(report.repaired.map((d) => `${d.kind}:${d.subject}`));
        const remaining = report.drift.filter((d) => !repaired.has(`${d.kind}:${d.subject}`));
        const lines = [
          report.drift.length === 0 ? "no drift" : `${report.drift.length} drift(s):`,
          ...report.drift.map((d) => {
            const how = d.repair && !o.repair ? ` (repair: ${d.repair})` : "";
            return `${repaired.has(`${d.kind}:${d.subject}`) ? "repaired" : "found"}\t${d.kind}\t${d.subject}\t${d.detail}${how}`;
          }),
          ...report.failed.map(
            (f) =>
              `FAILED\t${f.drift.kind}\t${f.drift.subject}\t${f.error}${f.retryable ? " (may succeed if run again later)" : ""}`,
          ),
        ];
        return done(report, lines, remaining.length > 0 ? EXIT.conflict : EXIT.ok);
      }),
    );
  program
    .command("config")
    .description("print the loaded configuration with secrets redacted")
    .action(
      ctx.action((g) => {
        const loaded = loadConfig({ ...(g.config ? { path: g.config } : {}), env: ctx.env });
        if (ctx.format(g) === "table")
          for (const w of loaded.warnings) ctx.stderr.write(`bmi: warning: ${w}\n`);
        // The effective values, and which of the original's older names were read as which.
        const shown = redactedConfig(loaded.config);
        return done({ ...shown, mapped: loaded.mapped }, [
          JSON.stringify(shown, null, 2),
          ...loaded.mapped.map((m) => `# ${m}`),
        ]);
      }),
    );
}
