import { z } from "zod";
import { NodeName, ProjectName } from "../domain/names.js";
import { parseInput } from "../domain/validate.js";
import { BmiError } from "../errors/index.js";
import type { PowerDriver, PowerState } from "../ports/index.js";
import { type BmiContext, operation } from "./context.js";
import { nodeLock } from "./locks.js";

const PowerInput = z.strictObject({
  project: ProjectName,
  node: NodeName,
  action: z.enum(["on", "off", "cycle"]),
  /** For `cycle`: a hard reset instead of a soft (ACPI) one. */
  force: z.boolean().optional(),
  /** Set the boot device first: `pxe` boots BMI's disk over the network, `disk` the local one. */
  bootDevice: z.enum(["pxe", "disk"]).optional(),
});
export type PowerInput = z.input<typeof PowerInput>;

const NodeInput = z.strictObject({ project: ProjectName, node: NodeName });

export function requirePower(ctx: BmiContext): PowerDriver {
  const { power } = ctx.drivers;
  if (!power) {
    throw new BmiError("unsupported", "no power driver is configured: BMI cannot power nodes", {
      subsystem: "power",
    });
  }
  return power;
}

/**
 * Powers a node the project owns (checked in the isolation service before any BMC call), under
 * the node's lock, journalled like every operation. Power actions have no undo: a node that was
 * powered on stays on if a later step fails.
 */
export function powerNode(ctx: BmiContext, input: PowerInput): Promise<PowerState> {
  const args = parseInput(PowerInput, input, "input");
  const power = requirePower(ctx);
  const subject = { project: args.project, node: args.node, action: args.action };
  return operation(ctx, "power", subject, [nodeLock(args.node)], async (saga) => {
    await saga.step("authorize node", () => ctx.drivers.isolation.authorize(args.project, args.node));
    const { bootDevice } = args;
    if (bootDevice) {
      if (!power.capabilities.bootDevice) {
        throw new BmiError("unsupported", `power driver ${power.name} cannot set the boot device`, {
          subsystem: "power",
        });
      }
      await saga.step("set boot device", () => power.setBootDevice(args.node, bootDevice));
    }
    await saga.step(`power ${args.action}`, () => {
      if (args.action === "on") return power.powerOn(args.node);
      if (args.action === "off") return power.powerOff(args.node);
      return power.powerCycle(args.node, { force: args.force ?? false });
    });
    return saga.step("read power state", () => power.powerState(args.node));
  });
}

/** The node's power state as its BMC reports it, for a project that owns the node. */
export async function powerStatus(
  ctx: BmiContext,
  input: { project: string; node: string },
): Promise<PowerState> {
  const args = parseInput(NodeInput, input, "input");
  const power = requirePower(ctx);
  await ctx.drivers.isolation.authorize(args.project, args.node);
  return power.powerState(args.node);
}
