import type { Provisioning, ProvisionResult } from "@bmi/core";
import { type Command, Option } from "commander";
import { done, list, show } from "../output.js";
import { found, NODE_COLUMNS } from "./columns.js";
import type { CliContext } from "./context.js";
import { columnsCommand, duration } from "./options.js";
import { withProgress } from "./progress.js";

interface ProvisionFlags {
  image?: string;
  firmware?: "bios" | "uefi";
  power?: "cycle" | "on" | "none";
  wait?: boolean;
  timeout?: number;
}

/** The options `pro` and `provision-many` share: how to boot what they provisioned. */
export function withBootOptions(command: Command): Command {
  return command
    .addOption(new Option("--firmware <firmware>").choices(["bios", "uefi"]))
    .addOption(
      new Option("--power <action>", "after provisioning, power the node through its BMC (boot device PXE)")
        .choices(["cycle", "on", "none"])
        .default("none"),
    )
    .option("--wait", "with --power: wait until the node has booted from its disk, showing the stages")
    .option("--timeout <duration>", "how long --wait may take, e.g. 90s, 10m (default 10m)", duration);
}

/** The SDK's boot fields from the flags. */
export function bootInput(o: ProvisionFlags) {
  return {
    ...(o.image ? { image: o.image } : {}),
    ...(o.firmware ? { firmware: o.firmware } : {}),
    ...(o.power && o.power !== "none" ? { power: o.power } : {}),
    ...(o.wait ? { wait: true } : {}),
    ...(o.timeout !== undefined ? { timeoutMs: o.timeout } : {}),
  };
}

export function provisionedLine(r: Provisioning): string {
  return `node ${r.node} boots disk ${r.disk} through ${r.nic} (${r.mac}) from ${r.target.name}`;
}

export function bootLine(r: ProvisionResult): string[] {
  if (!r.boot) return [];
  const stages = r.boot.stages.map((s) => `${s.stage} ${(s.atMs / 1000).toFixed(1)} s`);
  return [`node ${r.node} booted in ${(r.boot.durationMs / 1000).toFixed(1)} s: ${stages.join(", ")}`];
}

/** `bmi provision|pro`, `deprovision|dpro`, `nodes`, `node ls|show`: which node boots which disk. */
export function registerNodes(program: Command, ctx: CliContext): void {
  withBootOptions(
    program
      .command("provision")
      .alias("pro")
      .description(
        "make a node boot from a disk: checks the node is the project's in HIL, writes its boot files (provision)",
      )
      .argument("<project>")
      .argument("<node>")
      .argument("<disk>")
      .argument("[nic]", "the booting NIC's label (default: the node's first NIC)")
      .option("--image <image>", "create the disk from this image first"),
  ).action(
    ctx.action(
      async (g, project: string, node: string, disk: string, nic: string | undefined, o: ProvisionFlags) => {
        const { bmi } = ctx.connect(g);
        const input = { project, node, disk, ...(nic ? { nic } : {}), ...bootInput(o) };
        const record = await withProgress(
          ctx,
          g,
          bmi,
          `provision ${node} ← ${disk}`,
          () => bmi.provision(input, ctx.call),
          provisionedLine,
        );
        return done(record, [provisionedLine(record), ...bootLine(record)]);
      },
    ),
  );
  registerDeprovision(program, ctx);
  const listNodes = ctx.action(async (g, project?: string) =>
    list(await ctx.connect(g).bmi.listProvisionings(project ? { project } : {}), NODE_COLUMNS),
  );
  const listCommand = (command: Command) => columnsCommand(command, ["[project]"], listNodes);
  listCommand(program.command("nodes").description("list provisioned nodes: node, disk, NIC, MAC, target"));
  const nodeGroup = program.command("node").description("provisioned nodes (also: bmi nodes)");
  listCommand(nodeGroup.command("ls").description("list provisioned nodes"));
  const showNode = ctx.action(async (g, project: string, node: string) => {
    const row = (await ctx.connect(g).bmi.listProvisionings({ project })).find((p) => p.node === node);
    return show(found(row, `provisioned node ${node} in project ${project}`), NODE_COLUMNS);
  });
  const showCommand = nodeGroup.command("show").description("show one provisioned node");
  columnsCommand(showCommand, ["<project>", "<node>"], showNode);
}

function registerDeprovision(program: Command, ctx: CliContext): void {
  program
    .command("deprovision")
    .alias("dpro")
    .description("remove a node's boot files and provisioning record (deprovision)")
    .argument("<project>")
    .argument("<node>")
    .argument("[nic]", "accepted for compatibility; must match the provisioned NIC")
    .option("--delete-disk", "also delete the node's disk")
    .option("--power-off", "power the node off through its BMC first")
    .option(
      "--force",
      "administrator: release a node that HIL has since given to another project (no ownership check)",
    )
    .action(
      ctx.action(async (g, project: string, node: string, nic: string | undefined, o: DeprovisionFlags) => {
        const { bmi } = ctx.connect(g);
        const disk = (await bmi.listProvisionings({ project })).find((p) => p.node === node)?.disk;
        const input = {
          project,
          node,
          ...(nic ? { nic } : {}),
          ...(o.deleteDisk ? { deleteDisk: true } : {}),
          ...(o.powerOff ? { powerOff: true } : {}),
          ...(o.force ? { force: true } : {}),
        };
        await withProgress(ctx, g, bmi, `deprovision ${node}`, () => bmi.deprovision(input, ctx.call));
        return done({ project, node, deprovisioned: true, diskDeleted: o.deleteDisk === true }, [
          `node ${node} deprovisioned${o.deleteDisk ? ` and disk ${disk ?? ""} deleted` : ""}`,
        ]);
      }),
    );
}

interface DeprovisionFlags {
  deleteDisk?: boolean;
  powerOff?: boolean;
  force?: boolean;
}
