import { targetNameFor } from "../config/settings.js";
import { imageIdFromCephName } from "../domain/names.js";
import { toBmiError } from "../errors/index.js";
import { type BmiContext, bootSpecOf, exportRequestFor } from "./context.js";
import { withLocks } from "./locks.js";

export type DriftKind =
  | "missing_image" // a row whose RBD image is gone
  | "orphan_image" // an RBD image named like ours (`<uid>img<id>`) without a row
  | "orphan_snapshot" // a temporary snapshot left by an interrupted operation
  | "missing_target" // an export record whose target the server lost
  | "orphan_target" // a target named like ours without an export record
  | "missing_boot_files" // a provisioned node without boot files
  | "orphan_boot_files" // boot files of a node that is not provisioned
  | "missing_attachment" // a provisioned node whose NIC is not on the provisioning network
  | "orphan_attachment" // a node left on the provisioning network by an interrupted operation
  | "interrupted_operation"; // a journalled operation that neither finished nor was undone

export interface Drift {
  kind: DriftKind;
  /** The image, target, node or operation concerned. */
  subject: string;
  detail: string;
  /** What `reconcile({ repair: true })` does about it; null when it needs a human. */
  repair: string | null;
}

export interface ReconcileReport {
  drift: Drift[];
  repaired: Drift[];
  failed: { drift: Drift; error: string }[];
}

interface Fix {
  drift: Drift;
  apply?: () => Promise<unknown>;
}

/**
 * Compares the store with storage, targets, boot files and HIL attachments (COR-9). Reports
 * drift; with `repair`, removes what nothing refers to and re-creates what records say must exist.
 * The only rows repair deletes are disk rows of an interrupted operation that died before making
 * their clone; any other row whose image is missing is reported for a human to decide.
 */
export async function reconcile(
  ctx: BmiContext,
  options: { repair?: boolean } = {},
): Promise<ReconcileReport> {
  return withLocks(ctx.store, ["reconcile"], ctx.settings.lockLeaseMs, async () => {
    const interrupted = openOperations(ctx);
    const fixes = [
      ...(await imageDrift(ctx, interrupted)),
      ...(await targetDrift(ctx)),
      ...(await bootDrift(ctx)),
      ...(await attachmentDrift(ctx, interrupted)),
      ...journalDrift(interrupted, ctx),
    ];
    const report: ReconcileReport = { drift: fixes.map((f) => f.drift), repaired: [], failed: [] };
    if (!options.repair) return report;
    // Targets go before images: an exported image has watchers and cannot be removed.
    const order: DriftKind[] = [
      "orphan_target",
      "missing_target",
      "orphan_snapshot",
      "orphan_image",
      "missing_image",
      "missing_boot_files",
      "orphan_boot_files",
      "orphan_attachment",
      "missing_attachment",
      "interrupted_operation",
    ];
    const sorted = fixes
      .filter((f) => f.apply)
      .sort((a, b) => order.indexOf(a.drift.kind) - order.indexOf(b.drift.kind));
    for (const fix of sorted) {
      try {
        await fix.apply?.();
        report.repaired.push(fix.drift);
        ctx.logger.info({ drift: fix.drift.kind, subject: fix.drift.subject }, "drift repaired");
      } catch (error) {
        const message = toBmiError(error).message;
        report.failed.push({ drift: fix.drift, error: message });
        ctx.logger.warn(
          { drift: fix.drift.kind, subject: fix.drift.subject, err: message },
          "drift repair failed",
        );
      }
    }
    return report;
  });
}

async function imageDrift(ctx: BmiContext, interrupted: OpenOperation[]): Promise<Fix[]> {
  const { storage } = ctx.drivers;
  const { uid, snapshotName } = ctx.settings;
  const rows = ctx.store.listImages();
  const known = new Set(rows.map((r) => r.cephName));
  const pool = new Set(await storage.list());
  const fixes: Fix[] = [];
  for (const row of rows) {
    if (!pool.has(row.cephName)) {
      // A disk row written by an operation that died before its clone: nothing else refers to it.
      const project = ctx.store.getProjectById(row.projectId)?.name;
      const halfMade =
        row.kind === "disk" &&
        !ctx.store.getProvisioningByDisk(row.id) &&
        interrupted.some((op) => op.data.disk === row.name && op.data.project === project);
      if (halfMade) {
        fixes.push({
          drift: {
            kind: "missing_image",
            subject: row.cephName,
            detail: `disk row ${row.name} (id ${row.id}) of an interrupted operation has no RBD image`,
            repair: "delete the row (and its export record)",
          },
          apply: async () =>
            ctx.store.transaction(() => {
              if (ctx.store.getExport(row.id)) ctx.store.deleteExport(row.id);
              ctx.store.deleteImage(row.id);
            }),
        });
        continue;
      }
      fixes.push({
        drift: {
          kind: "missing_image",
          subject: row.cephName,
          detail: `row ${row.name} (id ${row.id}) has no RBD image`,
          repair: null,
        },
      });
    }
  }
  const tempPrefix = `${snapshotName}-tmp-`;
  for (const name of pool) {
    if (!known.has(name) && imageIdFromCephName(uid, name) !== undefined) {
      fixes.push({
        drift: {
          kind: "orphan_image",
          subject: name,
          detail: "RBD image without a row",
          repair: "remove its snapshots and the image",
        },
        apply: async () => {
          for (const snap of await storage.listSnapshots(name)) {
            const ref = { image: name, snapshot: snap.name };
            if (snap.protected) await storage.unprotectSnapshot(ref);
            await storage.removeSnapshot(ref);
          }
          await storage.remove(name);
        },
      });
    }
  }
  // Temporary snapshots live on our images and on imported sources. On an image not named like
  // ours, only a snapshot named after one of our own journalled operations is ours: another BMI
  // sharing the pool (another uid) makes the same kind of snapshot, and its clones are not orphans.
  const ourOperations = new Set(ctx.store.listJournal().map((e) => e.operationId.slice(0, 8)));
  const isOurs = (image: string, snapshot: string) =>
    known.has(image) || ourOperations.has(snapshot.slice(tempPrefix.length));
  for (const name of pool) {
    if (!(known.has(name) || imageIdFromCephName(uid, name) === undefined)) continue;
    const snaps = await storage.listSnapshots(name).catch(() => []);
    for (const snap of snaps.filter((s) => s.name.startsWith(tempPrefix) && isOurs(name, s.name))) {
      const ref = { image: name, snapshot: snap.name };
      // A disk snapshot whose clones are all recorded images awaits flattenPending(): a state, not drift.
      const children = known.has(name) ? await storage.children(ref).catch(() => []) : [];
      if (children.length > 0 && children.every((c) => known.has(c))) continue;
      fixes.push({
        drift: {
          kind: "orphan_snapshot",
          subject: `${name}@${snap.name}`,
          detail: "temporary snapshot left by an interrupted operation",
          repair: "remove the clones made from it that no row knows, then the snapshot",
        },
        apply: async () => {
          const children = await storage.children(ref);
          if (children.some((c) => known.has(c)))
            throw new Error(`${name}@${snap.name} still has recorded clones`);
          for (const child of children) await storage.remove(child);
          if (snap.protected) await storage.unprotectSnapshot(ref);
          await storage.removeSnapshot(ref);
        },
      });
    }
  }
  return fixes;
}

async function targetDrift(ctx: BmiContext): Promise<Fix[]> {
  const { uid, iscsi } = ctx.settings;
  const live = await ctx.drivers.export.list();
  const liveNames = new Set(live.map((t) => t.target));
  const fixes: Fix[] = [];
  const recorded = new Set<string>();
  for (const record of ctx.store.listExports()) {
    const image = ctx.store.getImageById(record.imageId);
    if (!image) continue;
    const request = exportRequestFor(ctx, image);
    recorded.add(request.target);
    if (!liveNames.has(request.target)) {
      fixes.push({
        drift: {
          kind: "missing_target",
          subject: request.target,
          detail: `target of ${image.name} is not on the server`,
          repair: "export it again",
        },
        apply: () => ctx.drivers.export.restore([request]),
      });
    }
  }
  for (const target of live) {
    if (recorded.has(target.target)) continue;
    const rbd = target.target.slice(target.target.lastIndexOf(":") + 1);
    if (imageIdFromCephName(uid, rbd) === undefined || target.target !== targetNameFor(rbd, iscsi.naming))
      continue;
    fixes.push({
      drift: {
        kind: "orphan_target",
        subject: target.target,
        detail: "target without an export record",
        repair: "remove the target",
      },
      apply: () => ctx.drivers.export.unexport(target.target, { force: true }),
    });
  }
  return fixes;
}

async function bootDrift(ctx: BmiContext): Promise<Fix[]> {
  const entries = await ctx.drivers.boot.list();
  const withFiles = new Set(entries.map((e) => e.node));
  const provisioned = ctx.store.listProvisionings();
  const fixes: Fix[] = [];
  for (const p of provisioned) {
    if (withFiles.has(p.node)) continue;
    const spec = bootSpecOf(p);
    fixes.push({
      drift: {
        kind: "missing_boot_files",
        subject: p.node,
        detail: `node ${p.node} is provisioned but has no boot files`,
        repair: "write them again",
      },
      apply: () => ctx.drivers.boot.write(spec),
    });
  }
  const nodes = new Set(provisioned.map((p) => p.node));
  for (const entry of entries) {
    if (nodes.has(entry.node)) continue;
    fixes.push({
      drift: {
        kind: "orphan_boot_files",
        subject: entry.node,
        detail: `boot files of unprovisioned node ${entry.node}`,
        repair: "remove them",
      },
      apply: () => ctx.drivers.boot.remove(entry.node),
    });
  }
  return fixes;
}

interface OpenOperation {
  id: string;
  operation: string;
  /** The operation's subject (project, node, disk...) as journalled. */
  data: Record<string, unknown>;
}

/** Operations journalled as started that never finished, failed nor were reconciled (the process died). */
function openOperations(ctx: BmiContext): OpenOperation[] {
  const open = new Map<string, OpenOperation>();
  for (const entry of ctx.store.listJournal()) {
    if (entry.step !== null) continue;
    if (entry.status === "started")
      open.set(entry.operationId, { id: entry.operationId, operation: entry.operation, data: entry.data });
    else open.delete(entry.operationId);
  }
  return [...open.values()];
}

/**
 * HIL attachments of the nodes BMI touched: a provisioned node must be on the provisioning network;
 * a node that an interrupted provision or deprovision left there without a record must not.
 */
async function attachmentDrift(ctx: BmiContext, interrupted: OpenOperation[]): Promise<Fix[]> {
  const network = ctx.settings.provisioningNetwork;
  const { isolation } = ctx.drivers;
  if (!network || !isolation.capabilities.networks) return [];
  const provisioned = new Map(ctx.store.listProvisionings().map((p) => [p.node, p]));
  const nodes = new Set(provisioned.keys());
  for (const op of interrupted) if (typeof op.data.node === "string") nodes.add(op.data.node);
  const channel = ctx.settings.provisioningChannel;
  const fixes: Fix[] = [];
  for (const node of [...nodes].sort()) {
    const attached = (await isolation.attachments(node)).filter((a) => a.network === network);
    const record = provisioned.get(node);
    if (record?.network) {
      if (attached.some((a) => a.nic === record.nic)) continue;
      const attachment = { node, nic: record.nic, network: record.network, channel };
      fixes.push({
        drift: {
          kind: "missing_attachment",
          subject: node,
          detail: `provisioned node ${node} (NIC ${record.nic}) is not on ${record.network}`,
          repair: "attach it again",
        },
        apply: () => isolation.attach(attachment),
      });
      continue;
    }
    for (const a of attached) {
      fixes.push({
        drift: {
          kind: "orphan_attachment",
          subject: node,
          detail: `node ${node} (NIC ${a.nic}) is on ${network} without a provisioning record`,
          repair: "detach it",
        },
        apply: () => isolation.detach({ ...a, channel: a.channel ?? channel }),
      });
    }
  }
  return fixes;
}

function journalDrift(interrupted: OpenOperation[], ctx: BmiContext): Fix[] {
  return interrupted.map(({ id, operation }) => ({
    drift: {
      kind: "interrupted_operation" as const,
      subject: id,
      detail: `${operation} started but never finished nor was undone (the process died?)`,
      repair: "mark it reconciled once the other repairs ran",
    },
    // Its leftovers are the other kinds of drift; once those are repaired the entry is closed.
    apply: async () => {
      ctx.store.appendJournal({ operationId: id, operation, step: null, status: "reconciled", data: {} });
    },
  }));
}
