import { z } from "zod";
import type { Disk, NodeInfo, Project, Provisioning } from "../domain/model.js";
import { DiskName, ImageName, NicLabel, NodeName, ProjectName } from "../domain/names.js";
import { parseInput } from "../domain/validate.js";
import { BmiError } from "../errors/index.js";
import type { BootSpec } from "../ports/boot.js";
import { type BmiContext, operation, requireKind, requireProject } from "./context.js";
import { createDiskSteps, deleteDiskSteps, toDisk } from "./disks.js";
import { imageLock, nodeLock } from "./locks.js";
import type { Saga } from "./saga.js";
import {
  bootSpecOf,
  exportSteps,
  reopenTargetSteps,
  restrictToNodeSteps,
  targetInfoFor,
} from "./steps/index.js";

const ProvisionInput = z.strictObject({
  project: ProjectName,
  node: NodeName,
  disk: DiskName,
  /** Create the disk from this image first (one-shot provisioning); without it the disk must exist. */
  image: ImageName.optional(),
  /** The NIC that boots; defaults to the node's first NIC (as the original's ≤0.6 did). */
  nic: NicLabel.optional(),
  firmware: z.enum(["bios", "uefi"]).optional(),
  /**
   * A node the project provisioned with another disk is switched to this one in one saga (its
   * boot files rewritten, the record moved; the old disk stays), as the original BMI did.
   * Without it that is refused with `conflict`.
   */
  switchDisk: z.boolean().optional(),
});
export type ProvisionInput = z.input<typeof ProvisionInput>;

/**
 * Makes a node boot from a disk: checks in the isolation service that the project owns the node
 * (SEC-2), creates the disk if asked, makes sure its target is exported, writes the node's boot
 * files, attaches the NIC to the provisioning network and records it all (OPS-1).
 * Provisioning a node again with its current disk succeeds without change (COR-4).
 */
export async function provision(ctx: BmiContext, input: ProvisionInput): Promise<Provisioning> {
  const args = parseInput(ProvisionInput, input, "input");
  const locks = [nodeLock(args.node), imageLock(args.project, args.disk)];
  const before = args.switchDisk ? await ctx.store.provisionings.get(args.node) : null;
  if (before && before.project === args.project && before.disk !== args.disk) {
    locks.push(imageLock(before.project, before.disk));
  }
  return operation(
    ctx,
    "provision",
    { project: args.project, node: args.node, disk: args.disk },
    locks,
    async (saga) => {
      const project = await requireProject(ctx, args.project);
      const existing = await ctx.store.provisionings.get(args.node);
      if (existing) {
        if (existing.project === args.project && existing.disk === args.disk) {
          // Idempotent, but not blind: the node is still the project's and the NIC is the one it boots from.
          await authorizeSameNic(ctx, saga, args, existing);
          return existing;
        }
        if (args.switchDisk && existing.project === args.project) {
          return switchDiskSteps(ctx, saga, args, existing);
        }
        throw new BmiError(
          "conflict",
          `node ${args.node} is already provisioned with disk ${existing.disk}${existing.project === args.project ? "" : " by another project"}; deprovision it first`,
          { retryable: false, details: { node: args.node } },
        );
      }
      const node = await saga.step("authorize node", () =>
        ctx.drivers.isolation.authorize(args.project, args.node),
      );
      const nic = bootNic(node, args.node, args.nic);
      if ((await ctx.drivers.boot.read(args.node)) !== null) {
        throw new BmiError(
          "conflict",
          `boot files for node ${args.node} exist without a provisioning record; run reconcile() first`,
          {
            subsystem: "boot",
            retryable: false,
          },
        );
      }

      const disk = await diskToBoot(ctx, saga, project, args);
      const target = disk.target ?? targetInfoFor(ctx, disk);
      const firmware = args.firmware ?? ctx.settings.defaultFirmware;
      const spec: BootSpec = { node: args.node, macs: [nic.mac], target, firmware, label: args.disk };
      const entry = await saga.step(
        "write boot files",
        () => ctx.drivers.boot.write(spec),
        () => ctx.drivers.boot.remove(args.node),
        { resources: [`boot:${args.node}`] },
      );
      await restrictToNodeSteps(ctx, saga, disk.id, entry);

      const network = ctx.settings.provisioningNetwork;
      const { isolation } = ctx.drivers;
      if (network && isolation.capabilities.networks) {
        const attachment = {
          node: args.node,
          nic: nic.label,
          network,
          channel: ctx.settings.provisioningChannel,
        };
        await saga.step(
          "attach provisioning network",
          () => isolation.attach(attachment),
          () => isolation.detach(attachment),
          { resources: [`attachment:${args.node}`] },
        );
      }

      const record: Provisioning = {
        node: args.node,
        project: args.project,
        disk: args.disk,
        diskId: disk.id,
        nic: nic.label,
        mac: nic.mac,
        firmware,
        target,
        network: network && isolation.capabilities.networks ? network : null,
        createdAt: new Date().toISOString(),
      };
      await saga.step(
        "record provisioning",
        () => ctx.store.provisionings.put(record),
        () => ctx.store.provisionings.delete(args.node),
      );
      return record;
    },
  );
}

type ProvisionArgs = z.output<typeof ProvisionInput>;

/** The disk a node is to boot: an idle disk of the project (exported if it is not), or a new one from `image`. */
async function diskToBoot(ctx: BmiContext, saga: Saga, project: Project, args: ProvisionArgs): Promise<Disk> {
  const row = await ctx.store.images.get(project.id, args.disk);
  if (row) {
    requireKind(row, ["disk"], project, "provision");
    const disk = await toDisk(ctx, row);
    if (disk.node) {
      throw new BmiError(
        "busy",
        `disk ${args.disk} already boots node ${disk.node}; a disk serves one node`,
        {
          subsystem: "store",
        },
      );
    }
    return disk.target ? disk : { ...disk, target: await exportSteps(ctx, saga, disk) };
  }
  if (args.image) return createDiskSteps(ctx, saga, project, args.image, args.disk);
  throw new BmiError(
    "not_found",
    `disk ${args.disk} not found in project ${project.name} (pass image to create it)`,
    {
      subsystem: "store",
    },
  );
}

/**
 * `switchDisk`: the node boots another disk of the same project. The NIC is checked as on every
 * provision and must stay the one the node boots from; the boot files are rewritten (the undo
 * writes the old ones back) and the record points at the new disk. The old disk is kept.
 */
async function switchDiskSteps(
  ctx: BmiContext,
  saga: Saga,
  args: ProvisionArgs,
  existing: Provisioning,
): Promise<Provisioning> {
  const project = await requireProject(ctx, args.project);
  const nic = await authorizeSameNic(ctx, saga, args, existing);
  const disk = await diskToBoot(ctx, saga, project, args);
  const target = disk.target ?? targetInfoFor(ctx, disk);
  const firmware = args.firmware ?? existing.firmware;
  const spec: BootSpec = { node: args.node, macs: [nic.mac], target, firmware, label: args.disk };
  const entry = await saga.step(
    "switch boot files",
    () => ctx.drivers.boot.write(spec),
    () => ctx.drivers.boot.write(bootSpecOf(existing)),
    { resources: [`boot:${args.node}`] },
  );
  await restrictToNodeSteps(ctx, saga, disk.id, entry);
  await reopenTargetSteps(ctx, saga, existing.diskId);
  const record: Provisioning = {
    ...existing,
    disk: args.disk,
    diskId: disk.id,
    mac: nic.mac,
    firmware,
    target,
    createdAt: new Date().toISOString(),
  };
  await saga.step(
    "record provisioning",
    () => ctx.store.provisionings.put(record),
    () => ctx.store.provisionings.put(existing),
  );
  return record;
}

/**
 * For a node already provisioned: HIL still says the project owns it, and the NIC asked for (or
 * the one it boots from) is that NIC. Changing the NIC takes a deprovision first.
 */
async function authorizeSameNic(
  ctx: BmiContext,
  saga: Saga,
  args: ProvisionArgs,
  existing: Provisioning,
): Promise<NodeInfo["nics"][number]> {
  const node = await saga.step("authorize node", () =>
    ctx.drivers.isolation.authorize(args.project, args.node),
  );
  const nic = bootNic(node, args.node, args.nic ?? existing.nic);
  if (nic.label !== existing.nic) {
    throw new BmiError(
      "conflict",
      `node ${args.node} boots from NIC ${existing.nic}, not ${nic.label}; deprovision it to change the NIC`,
      { subsystem: "isolation", retryable: false, details: { node: args.node, nic: existing.nic } },
    );
  }
  return nic;
}

/**
 * The NIC a node boots from: the one named, else its first usable one. A NIC the service knows
 * with a MAC address that is not one is named as such, not reported as missing.
 */
function bootNic(node: NodeInfo, name: string, label: string | undefined): NodeInfo["nics"][number] {
  const nic = label === undefined ? node.nics[0] : node.nics.find((n) => n.label === label);
  if (nic) return nic;
  const unusable = node.unusableNics ?? [];
  if (label !== undefined ? unusable.includes(label) : unusable.length > 0) {
    const which = label ?? unusable.join(", ");
    throw new BmiError(
      "conflict",
      `NIC ${which} of node ${name} has a MAC address in HIL that is not a valid MAC, so no boot files can name it; correct it in HIL`,
      { subsystem: "isolation", retryable: false, details: { node: name, nic: which } },
    );
  }
  throw new BmiError(
    "not_found",
    label !== undefined ? `NIC ${label} not found on node ${name}` : `node ${name} has no NIC`,
    { subsystem: "isolation", details: { node: name, ...(label !== undefined ? { nic: label } : {}) } },
  );
}

const DeprovisionInput = z.strictObject({
  project: ProjectName,
  node: NodeName,
  /** The NIC the caller believes boots the node (the original's `nic`): refused if it is another. */
  nic: NicLabel.optional(),
  /** Also delete the node's disk (its clone, target and row). */
  deleteDisk: z.boolean().optional(),
  /**
   * Skip the ownership check in HIL: for an administrator releasing a node that HIL has since
   * given to another project (or to none). The provisioning record must still be the project's.
   */
  force: z.boolean().optional(),
  /** A node that is not provisioned counts as deprovisioned (the original's answer) instead of `not_found`. */
  missingOk: z.boolean().optional(),
});
export type DeprovisionInput = z.input<typeof DeprovisionInput>;

/** Undoes provision: detaches the network, removes the boot files and the record (and the disk if asked). */
export async function deprovision(ctx: BmiContext, input: DeprovisionInput): Promise<void> {
  const args = parseInput(DeprovisionInput, input, "input");
  const current = await ctx.store.provisionings.get(args.node);
  const locks = [nodeLock(args.node)];
  if (current) locks.push(imageLock(current.project, current.disk));
  await operation(ctx, "deprovision", { project: args.project, node: args.node }, locks, async (saga) => {
    const record = await ctx.store.provisionings.get(args.node);
    if (!record) {
      if (args.missingOk) return;
      throw new BmiError("not_found", `node ${args.node} is not provisioned`, { subsystem: "store" });
    }
    if (record.project !== args.project) {
      throw new BmiError("forbidden", `node ${args.node} is not provisioned by project ${args.project}`);
    }
    // Checked under the node's lock, so it holds for the record this deprovision removes.
    if (args.nic !== undefined && args.nic !== record.nic) {
      throw new BmiError(
        "invalid_input",
        `node ${args.node} is provisioned through NIC ${record.nic}, not ${args.nic}`,
        {
          subsystem: "isolation",
          details: { field: "nic", nic: record.nic },
        },
      );
    }
    const project = await requireProject(ctx, args.project);
    await deprovisionSteps(ctx, saga, record, args.force ?? false);
    if (args.deleteDisk) await deleteDiskSteps(ctx, saga, project, record.disk, true, record.node);
  });
}

/** The steps of deprovision, shared with deleteDisk's `deprovision`. The caller holds the node's and the disk's locks. */
export async function deprovisionSteps(
  ctx: BmiContext,
  saga: Saga,
  record: Provisioning,
  force: boolean,
): Promise<void> {
  if (force)
    ctx.logger.warn(
      { node: record.node, project: record.project },
      "deprovision forced: ownership not checked",
    );
  else await saga.step("authorize node", () => ctx.drivers.isolation.authorize(record.project, record.node));
  const { isolation, boot } = ctx.drivers;
  if (record.network && isolation.capabilities.networks) {
    const attachment = {
      node: record.node,
      nic: record.nic,
      network: record.network,
      channel: ctx.settings.provisioningChannel,
    };
    await saga.step(
      "detach provisioning network",
      () => isolation.detach(attachment),
      () => isolation.attach(attachment),
      { resources: [`attachment:${record.node}`] },
    );
  }
  // Before the boot files go: they hold the node's address, which the next node may be given.
  await reopenTargetSteps(ctx, saga, record.diskId);
  const spec = bootSpecOf(record);
  await saga.step(
    "remove boot files",
    () => boot.remove(record.node),
    () => boot.write(spec),
    { resources: [`boot:${record.node}`] },
  );
  await saga.step(
    "forget provisioning",
    () => ctx.store.provisionings.delete(record.node),
    () => ctx.store.provisionings.put(record),
  );
}

export async function listProvisionings(
  ctx: BmiContext,
  input: { project?: string } = {},
): Promise<Provisioning[]> {
  const { project } = parseInput(z.strictObject({ project: ProjectName.optional() }), input, "input");
  return (await ctx.store.provisionings.list()).filter((p) => project === undefined || p.project === project);
}

export type BatchResult<T> =
  | { ok: true; node: string; value: T }
  | { ok: false; node: string; error: BmiError };
