import type { Command } from "commander";
import { type DoctorCheck, doctorSteps } from "../doctor.js";
import { EXIT } from "../exit-codes.js";
import { done } from "../output.js";
import type { CliContext } from "./context.js";
import { runTasks } from "./progress.js";

/** `bmi doctor`: every check, one by one (live on a terminal), each OK or FAIL with its fix. */
export function registerDoctor(program: Command, ctx: CliContext): void {
  program
    .command("doctor")
    .description(
      "check that the config loads and Ceph, tgtd, the TFTP root and HIL work; says how to fix what does not (changes nothing)",
    )
    .action(
      ctx.action(async (g) => {
        const steps = doctorSteps({ ...(g.config ? { path: g.config } : {}), env: ctx.env });
        const checks: DoctorCheck[] = [];
        const tasks = steps.map((step) => ({
          title: `${step.name}…`,
          run: async (view: { title: string }) => {
            const result = await step.run();
            checks.push(result);
            view.title = `${step.name}: ${result.detail}`;
            if (!result.ok) throw new Error(`${step.name}: ${result.detail}`);
          },
        }));
        await runTasks(ctx, g, tasks).catch(() => {});
        const ok = checks.every((c) => c.ok);
        return done({ ok, checks }, checks.map(checkLine), ok ? EXIT.ok : EXIT.serverFault);
      }),
    );
}

function checkLine(c: DoctorCheck): string {
  return `${c.ok ? "OK  " : "FAIL"} ${c.name.padEnd(8)} ${c.detail}${c.fix ? `\n     fix: ${c.fix}` : ""}`;
}
