import type { PowerState } from "@bmi/core";
import type { Command } from "commander";
import { type Column, show } from "../output.js";
import type { CliContext } from "./context.js";
import { withColumns } from "./options.js";

interface PowerRow {
  project: string;
  node: string;
  power: PowerState;
}

const COLUMNS: Column<PowerRow>[] = [
  { name: "node", get: (r) => r.node },
  { name: "project", get: (r) => r.project },
  { name: "power", get: (r) => r.power },
];

/** `bmi power on|off|cycle|status <project> <node>`: a node's power through HIL and its BMC. */
export function registerPower(program: Command, ctx: CliContext): void {
  const power = program
    .command("power")
    .description("a node's power through its BMC (HIL's OBM; the project must own the node)");
  const actions = {
    on: "power the node on",
    off: "power the node off (hard)",
    cycle: "reset the node (soft, ACPI; --force: hard), or power it on if it is off",
  } as const;
  for (const [action, description] of Object.entries(actions) as [keyof typeof actions, string][]) {
    const command = withColumns(power.command(action).description(description))
      .argument("<project>")
      .argument("<node>");
    if (action === "cycle") command.option("--force", "a hard reset instead of a soft one");
    command.action(
      ctx.action(async (g, project: string, node: string, o: { force?: boolean }) => {
        const input = { project, node, action, ...(o.force ? { force: true } : {}) };
        const state = await ctx.connect(g).bmi.power(input, ctx.call);
        return show({ project, node, power: state }, COLUMNS);
      }),
    );
  }
  withColumns(power.command("status").description("the node's power state as its BMC reports it"))
    .argument("<project>")
    .argument("<node>")
    .action(
      ctx.action(async (g, project: string, node: string) => {
        const state = await ctx.connect(g).bmi.powerStatus({ project, node }, ctx.call);
        return show({ project, node, power: state }, COLUMNS);
      }),
    );
}
