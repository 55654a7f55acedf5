import { BmiError } from "../../errors/index.js";
import type { BootEntry } from "../../ports/boot.js";
import { type ExportAccess, sameInitiators } from "../../ports/export.js";
import type { BmiContext } from "../context.js";
import type { Saga } from "../saga.js";

type Initiators = ExportAccess["initiators"];

/**
 * The saga steps that give an exported disk's target other initiator rules and record them; the
 * undo puts the old ones back. Nothing happens when the record already has those rules.
 */
async function initiatorSteps(
  ctx: BmiContext,
  saga: Saga,
  imageId: number,
  initiators: Initiators,
  step: string,
): Promise<void> {
  const record = await ctx.store.exports.get(imageId);
  if (!record || sameInitiators(record.access.initiators, initiators)) return;
  const exporter = ctx.drivers.export;
  if (!exporter.setInitiators) {
    throw new BmiError(
      "unsupported",
      `the ${exporter.name} export driver cannot change a target's initiators (per-node access needs it)`,
      { subsystem: "export" },
    );
  }
  const target = record.target.name;
  const before = record.access.initiators;
  await saga.step(
    step,
    () => exporter.setInitiators?.(target, initiators),
    () => exporter.setInitiators?.(target, before),
    { resources: [`target:${target}`] },
  );
  await saga.step(
    `record ${step}`,
    () => ctx.store.exports.put({ ...record, access: { ...record.access, initiators } }),
    () => ctx.store.exports.put(record),
  );
}

/** The initiators a provisioned node's target admits under per-node access, or null without it. */
export function nodeInitiators(ctx: BmiContext, entry: BootEntry | null): Initiators | null {
  if (ctx.settings.iscsi.perNode !== "address") return null;
  if (!entry?.address) {
    throw new BmiError(
      "unsupported",
      `per-node iSCSI access needs a fixed address for node ${entry?.node ?? "?"}, and the ${ctx.drivers.boot.name} boot driver gave none (set [tftp] node_addresses)`,
      { subsystem: "boot", retryable: false },
    );
  }
  return { addresses: [entry.address] };
}

/**
 * Per-node access (`[iscsi] per_node_access = address`): the node's target admits only the
 * address its boot files gave it, so another node of the provisioning network cannot log in.
 */
export async function restrictToNodeSteps(
  ctx: BmiContext,
  saga: Saga,
  imageId: number,
  entry: BootEntry,
): Promise<void> {
  const initiators = nodeInitiators(ctx, entry);
  if (initiators) await initiatorSteps(ctx, saga, imageId, initiators, "restrict target to node");
}

/**
 * The target of a disk no longer booting a node gets the configured access back. Run before the
 * boot files go: they hold the node's address, which the next node may be given.
 */
export const reopenTargetSteps = (ctx: BmiContext, saga: Saga, imageId: number): Promise<void> =>
  initiatorSteps(ctx, saga, imageId, ctx.settings.iscsi.access.initiators, "reopen target");
