import { z } from "zod";
import { targetNameFor } from "../config/settings.js";
import { imageIdFromCephName } from "../domain/names.js";
import { parseInput } from "../domain/validate.js";
import { BmiError, type ErrorCode, isBmiError, toBmiError } from "../errors/index.js";
import type { BootEntry } from "../ports/boot.js";
import { type ExportAccess, sameInitiators } from "../ports/export.js";
import type { NetworkAttachment } from "../ports/isolation.js";
import type { ExportRecord, JournalEntry } from "../store/index.js";
import type { BmiContext } from "./context.js";
import { nodeLock, withLocks } from "./locks.js";
import { assertRepairable, type Provenance, readProvenance } from "./provenance.js";
import { bootSpecOf, exportRequestFor } from "./steps/index.js";

export type DriftKind =
  | "missing_image" // a row whose RBD image is gone
  | "orphan_image" // an RBD image without a row, left by an unfinished operation of this database
  | "orphan_snapshot" // a temporary snapshot left by an interrupted operation
  | "half_made_disk" // a disk row and clone of an operation that died before it finished
  | "missing_target" // an export record whose target the server lost
  | "orphan_target" // a target without an export record, left by an unfinished operation
  | "access_mismatch" // a target admitting other initiators than its record (or its node) says
  | "missing_boot_files" // a provisioned node without boot files
  | "orphan_boot_files" // boot files of a node that is not provisioned, left by an unfinished operation
  | "missing_attachment" // a provisioned node whose NIC is not on the provisioning network
  | "orphan_attachment" // a node left on the provisioning network by an interrupted operation
  | "ownership_changed" // a provisioned node that HIL now gives to another project (or to none)
  | "stale_lock" // a lock row whose holder died or whose lease ended
  | "interrupted_operation" // a journalled operation that neither finished nor was undone
  | "incomplete_undo" // a failed operation whose compensation was skipped or failed
  | "unknown"; // named like ours, but nothing in this database proves we made it: left alone

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
  /**
   * Repairs that failed, with the error's code: `retryable` ones (e.g. `busy` while Ceph still
   * holds a crashed client's watch on an image) may succeed on a later run.
   */
  failed: { drift: Drift; error: string; code: ErrorCode; retryable: boolean }[];
}

const ReconcileOptions = z.strictObject({
  repair: z.boolean().optional(),
  /** Subjects of `unknown` drift to remove all the same: the operator's explicit word. */
  remove: z.array(z.string().min(1).max(512)).max(10_000).optional(),
});
export type ReconcileOptions = z.input<typeof ReconcileOptions>;

interface Fix {
  drift: Drift;
  apply?: () => Promise<unknown>;
}

/** Repairs run in this order: targets before images (an exported image has watchers). */
const REPAIR_ORDER: DriftKind[] = [
  "ownership_changed",
  "orphan_target",
  "missing_target",
  "access_mismatch",
  "orphan_snapshot",
  "half_made_disk",
  "orphan_image",
  "unknown",
  "missing_image",
  "missing_boot_files",
  "orphan_boot_files",
  "orphan_attachment",
  "missing_attachment",
  "stale_lock",
  "interrupted_operation",
  "incomplete_undo",
];

/**
 * Compares the store with storage, targets, boot files, HIL attachments and owners (COR-9).
 * Reports drift; with `repair`, re-creates what records say must exist and removes only what
 * this database's journal proves an unfinished operation of ours left behind. Repair never
 * removes a target with sessions (no force), an image with watchers, or the boot files of a node
 * HIL says is powered on; it refuses to run at all on a database that looks new or restored.
 */
export async function reconcile(ctx: BmiContext, options: ReconcileOptions = {}): Promise<ReconcileReport> {
  const args = parseInput(ReconcileOptions, options, "options");
  return withLocks(ctx.store, ["reconcile"], ctx.settings.lockLeaseMs, async () => {
    const pool = new Set(await ctx.drivers.storage.list());
    /** Subjects whose repair failed in this run: their failed operation stays open. */
    const failedSubjects = new Set<string>();
    if (args.repair) await assertRepairable(ctx, pool);
    const journal = await ctx.store.journal.list();
    const proof = readProvenance(journal);
    const interrupted = openOperations(journal);
    const incomplete = incompleteUndos(journal);
    const changed = await ownershipChanges(ctx);
    const fixes = [
      ...(await ownershipDrift(ctx, changed)),
      ...(await imageDrift(ctx, pool, proof, interrupted)),
      ...(await snapshotDrift(ctx, pool, proof)),
      ...(await targetDrift(ctx, proof)),
      ...(await accessDrift(ctx, changed)),
      ...(await bootDrift(ctx, proof, changed)),
      ...(await attachmentDrift(ctx, [...interrupted, ...incomplete], changed, proof)),
      ...(await lockDrift(ctx)),
      ...journalDrift(interrupted, ctx),
      ...incompleteUndoDrift(ctx, incomplete, failedSubjects),
    ];
    const named = new Set(args.remove ?? []);
    for (const fix of fixes) {
      if (fix.drift.kind === "unknown" && !named.has(fix.drift.subject)) delete fix.apply;
    }
    const report: ReconcileReport = { drift: fixes.map((f) => f.drift), repaired: [], failed: [] };
    if (args.repair) await applyFixes(ctx, fixes, report, failedSubjects);
    return report;
  });
}

async function applyFixes(
  ctx: BmiContext,
  fixes: Fix[],
  report: ReconcileReport,
  failedSubjects: Set<string>,
): Promise<void> {
  const sorted = fixes
    .filter((f) => f.apply)
    .sort((a, b) => REPAIR_ORDER.indexOf(a.drift.kind) - REPAIR_ORDER.indexOf(b.drift.kind));
  for (const fix of sorted) {
    try {
      await fix.apply?.();
      report.repaired.push(fix.drift);
      ctx.logger.info({ drift: fix.drift.kind, subject: fix.drift.subject }, "drift repaired");
    } catch (error) {
      const { message, code, retryable } = toBmiError(error);
      report.failed.push({ drift: fix.drift, error: message, code, retryable });
      failedSubjects.add(fix.drift.subject);
      ctx.logger.warn(
        { drift: fix.drift.kind, subject: fix.drift.subject, err: message },
        "drift repair failed",
      );
    }
  }
}

/** `unknown` drift: reported, and removed only when the operator names its subject. */
const unknownFix = (subject: string, detail: string, remove: () => Promise<unknown>): Fix => ({
  drift: {
    kind: "unknown",
    subject,
    detail: `${detail}; nothing in this database proves BMI made it`,
    repair: "none unless named explicitly (reconcile --repair --remove <subject>)",
  },
  apply: remove,
});

/**
 * A clone cut short inside rbd_clone (its process killed after the pool's directory entry, before
 * the header) is listed but cannot be opened: it has no snapshots, and rbd_remove still removes it.
 */
async function snapshotsOf(ctx: BmiContext, name: string) {
  return ctx.drivers.storage.listSnapshots(name).catch((error: unknown) => {
    if (isBmiError(error, "not_found")) return [];
    throw error;
  });
}

async function removeImageAndSnapshots(ctx: BmiContext, name: string): Promise<void> {
  const { storage } = ctx.drivers;
  for (const snap of await snapshotsOf(ctx, name)) {
    const ref = { image: name, snapshot: snap.name };
    if (snap.protected) await storage.unprotectSnapshot(ref);
    await storage.removeSnapshot(ref);
  }
  // rbd refuses while the image has watchers (a node may be using it): that failure is reported.
  await storage.remove(name);
}

async function imageDrift(
  ctx: BmiContext,
  pool: Set<string>,
  proof: Provenance,
  interrupted: OpenOperation[],
): Promise<Fix[]> {
  const rows = await ctx.store.images.list();
  const known = new Set(rows.map((r) => r.cephName));
  const fixes: Fix[] = [];
  for (const row of rows) {
    const halfMade =
      row.kind === "disk" &&
      !(await ctx.store.provisionings.getByDisk(row.id)) &&
      (await madeByUnfinished(ctx, row, proof, interrupted));
    if (halfMade && pool.has(row.cephName)) fixes.push(halfMadeDiskFix(ctx, row));
    else if (halfMade) fixes.push(halfMadeRowFix(ctx, row));
    else if (!pool.has(row.cephName)) {
      const detail = `row ${row.name} (id ${row.id}) has no RBD image`;
      fixes.push({ drift: { kind: "missing_image", subject: row.cephName, detail, repair: null } });
    }
  }
  const highWater = await ctx.store.images.idHighWater();
  for (const name of pool) {
    const id = imageIdFromCephName(ctx.settings.uid, name);
    if (known.has(name) || id === undefined) continue;
    const remove = () => removeImageAndSnapshots(ctx, name);
    if (id <= highWater && proof.leftBehind(`image:${name}`)) {
      fixes.push({
        drift: {
          kind: "orphan_image",
          subject: name,
          detail: "RBD image without a row, left by an unfinished operation",
          repair: "remove its snapshots and the image (refused while it has watchers)",
        },
        apply: remove,
      });
    } else {
      const why =
        id > highWater ? `id ${id} is above every id this database allocated (${highWater})` : "no row";
      fixes.push(unknownFix(name, `RBD image named like ours (${why})`, remove));
    }
  }
  return fixes;
}

/** Whether the disk row was inserted by an operation of this database that never finished. */
async function madeByUnfinished(
  ctx: BmiContext,
  row: { name: string; projectId: number },
  proof: Provenance,
  interrupted: OpenOperation[],
): Promise<boolean> {
  if (proof.leftBehind(`row:${row.projectId}/${row.name}`)) return true;
  // Journals written before rows were journalled as resources: the interrupted operation's subject.
  const project = (await ctx.store.projects.getById(row.projectId))?.name;
  return interrupted.some(
    (op) => op.data.disk === row.name && op.data.project === project && !op.data.resourcesJournalled,
  );
}

function halfMadeRowFix(ctx: BmiContext, row: { id: number; name: string; cephName: string }): Fix {
  return {
    drift: {
      kind: "missing_image",
      subject: row.cephName,
      detail: `disk row ${row.name} (id ${row.id}) of an interrupted operation has no RBD image`,
      repair: "delete the row (and its export record)",
    },
    apply: async () => forgetRow(ctx, row.id),
  };
}

function forgetRow(ctx: BmiContext, id: number): Promise<void> {
  return ctx.store.transaction(async (tx) => {
    if (await tx.exports.get(id)) await tx.exports.delete(id);
    await tx.images.delete(id);
  });
}

function halfMadeDiskFix(ctx: BmiContext, row: { id: number; name: string; cephName: string }): Fix {
  return {
    drift: {
      kind: "half_made_disk",
      subject: row.cephName,
      detail: `disk ${row.name} (id ${row.id}) was being made by an operation that never finished`,
      repair: "remove its target (refused with sessions), its rows and its clone",
    },
    apply: async () => {
      const target = targetNameFor(row.cephName, ctx.settings.iscsi.naming);
      await ctx.drivers.export.unexport(target, { force: false }).catch((error) => {
        if (!isBmiError(error, "not_found")) throw error;
      });
      await forgetRow(ctx, row.id);
      await removeImageAndSnapshots(ctx, row.cephName);
    },
  };
}

/**
 * Temporary snapshots live on our images and on imported sources. On an image not named like
 * ours, only a snapshot named after one of our own journalled operations is ours: another BMI
 * sharing the pool (another uid) makes the same kind of snapshot, and its clones are not orphans.
 */
async function snapshotDrift(ctx: BmiContext, pool: Set<string>, proof: Provenance): Promise<Fix[]> {
  const { storage } = ctx.drivers;
  const tempPrefix = `${ctx.settings.snapshotName}-tmp-`;
  const known = new Set((await ctx.store.images.list()).map((r) => r.cephName));
  const fixes: Fix[] = [];
  for (const name of pool) {
    if (!(known.has(name) || imageIdFromCephName(ctx.settings.uid, name) === undefined)) continue;
    const snaps = await storage.listSnapshots(name).catch(() => []);
    for (const snap of snaps) {
      if (
        !snap.name.startsWith(tempPrefix) ||
        !proof.operationPrefixes.has(snap.name.slice(tempPrefix.length))
      )
        continue;
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
          const clones = await storage.children(ref);
          if (clones.some((c) => known.has(c)))
            throw new Error(`${name}@${snap.name} still has recorded clones`);
          for (const clone of clones) await storage.remove(clone);
          if (snap.protected) await storage.unprotectSnapshot(ref);
          await storage.removeSnapshot(ref);
        },
      });
    }
  }
  return fixes;
}

async function targetDrift(ctx: BmiContext, proof: Provenance): Promise<Fix[]> {
  const { uid, iscsi } = ctx.settings;
  const live = await ctx.drivers.export.list();
  const liveNames = new Set(live.map((t) => t.target));
  const fixes: Fix[] = [];
  const recorded = new Set<string>();
  for (const record of await ctx.store.exports.list()) {
    const image = await ctx.store.images.getById(record.imageId);
    if (!image) continue;
    const request = exportRequestFor(ctx, image, record);
    recorded.add(request.target);
    if (liveNames.has(request.target)) continue;
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
  for (const target of live) {
    if (recorded.has(target.target)) continue;
    const rbd = target.target.slice(target.target.lastIndexOf(":") + 1);
    if (imageIdFromCephName(uid, rbd) === undefined || target.target !== targetNameFor(rbd, iscsi.naming))
      continue;
    // Never forced: tgt refuses to remove a target with logged-in initiators, and so do we.
    const remove = () => ctx.drivers.export.unexport(target.target, { force: false });
    if (!proof.leftBehind(`target:${target.target}`)) {
      fixes.push(
        unknownFix(
          target.target,
          `target named like ours without an export record (${target.sessions} sessions)`,
          remove,
        ),
      );
      continue;
    }
    fixes.push({
      drift: {
        kind: "orphan_target",
        subject: target.target,
        detail: `target without an export record, left by an unfinished operation (${target.sessions} sessions)`,
        repair: "remove the target (refused while initiators are logged in)",
      },
      apply: remove,
    });
  }
  return fixes;
}

/**
 * Targets whose initiator rules are not what they should be: the record's, or under per-node
 * access the address of the node the disk boots (its boot files say which). Repair sets the
 * target's rules and the record to that. A node HIL gave away is left to `ownership_changed`.
 */
async function accessDrift(ctx: BmiContext, changed: Map<string, unknown>): Promise<Fix[]> {
  const live = new Map((await ctx.drivers.export.list()).map((t) => [t.target, t]));
  const entries = new Map((await ctx.drivers.boot.list()).map((e) => [e.node, e]));
  const fixes: Fix[] = [];
  for (const record of await ctx.store.exports.list()) {
    const have = live.get(record.target.name)?.initiators;
    if (have === undefined) continue; // lost (missing_target) or a driver that cannot tell
    const node = await ctx.store.provisionings.getByDisk(record.imageId);
    if (node && changed.has(node.node)) continue;
    const want = wantedInitiators(ctx, record, node ? (entries.get(node.node) ?? null) : undefined);
    if (sameInitiators(have, want) && sameInitiators(record.access.initiators, want)) continue;
    const set = ctx.drivers.export.setInitiators;
    fixes.push({
      drift: {
        kind: "access_mismatch",
        subject: record.target.name,
        detail: `target admits ${describeInitiators(have)}, its record says ${describeInitiators(record.access.initiators)}${node ? ` (it boots node ${node.node})` : ""}`,
        repair: set ? `let in ${describeInitiators(want)} only, and record that` : null,
      },
      ...(set
        ? {
            apply: () => applyInitiators(ctx, record, want),
          }
        : {}),
    });
  }
  return fixes;
}

/**
 * What a target should admit: under per-node access, a provisioned node's address while its boot
 * files (`entry`) give it one; else what the record says. A disk booting no node keeps its record:
 * deprovision reopens the target in its own saga, and a crash in between is an open operation.
 */
function wantedInitiators(
  ctx: BmiContext,
  record: ExportRecord,
  entry: BootEntry | null | undefined,
): ExportAccess["initiators"] {
  if (ctx.settings.iscsi.perNode !== "address" || !entry?.address) return record.access.initiators;
  return { addresses: [entry.address] };
}

/** Gives a target other initiator rules and records them (a repair: no saga, no undo). */
async function applyInitiators(
  ctx: BmiContext,
  record: ExportRecord,
  initiators: ExportAccess["initiators"],
): Promise<void> {
  await ctx.drivers.export.setInitiators?.(record.target.name, initiators);
  await ctx.store.exports.put({ ...record, access: { ...record.access, initiators } });
}

const describeInitiators = (initiators: ExportAccess["initiators"]): string =>
  initiators === "ALL" ? "ALL" : [...(initiators.addresses ?? []), ...(initiators.names ?? [])].join(", ");

/** Provisioned nodes whose owner in HIL is no longer the provisioning project (null: no owner). */
async function ownershipChanges(ctx: BmiContext): Promise<Map<string, string | null>> {
  const changed = new Map<string, string | null>();
  for (const p of await ctx.store.provisionings.list()) {
    try {
      const owner = (await ctx.drivers.isolation.node(p.node)).project;
      if (owner !== p.project) changed.set(p.node, owner);
    } catch (error) {
      if (!isBmiError(error, "not_found")) throw error;
      changed.set(p.node, null);
    }
  }
  return changed;
}

/**
 * A node moved to another project must stop booting the old tenant's disk: repair deprovisions
 * it (detach, boot files removed, record deleted) and keeps the disk for its own project.
 */
function ownershipDrift(ctx: BmiContext, changed: Map<string, string | null>): Promise<Fix[]> {
  return Promise.all(
    [...changed].map(async ([node, owner]) => {
      const record = await ctx.store.provisionings.get(node);
      const now = owner === null ? "no project (or is gone from HIL)" : `project ${owner}`;
      return {
        drift: {
          kind: "ownership_changed" as const,
          subject: node,
          detail: `node ${node} was provisioned by ${record?.project} with disk ${record?.disk}, but HIL gives it to ${now}`,
          repair:
            "deprovision it (detach, remove boot files, forget the record); the disk stays in its project",
        },
        apply: () =>
          withLocks(ctx.store, [nodeLock(node)], ctx.settings.lockLeaseMs, async () => {
            const current = await ctx.store.provisionings.get(node);
            if (!current) return;
            const { isolation } = ctx.drivers;
            if (current.network && isolation.capabilities.networks) {
              const channel = ctx.settings.provisioningChannel;
              await isolation.detach({ node, nic: current.nic, network: current.network, channel });
            }
            // Before the boot files (and the node's address) go: the next node may get that address.
            const exported = await ctx.store.exports.get(current.diskId);
            const configured = ctx.settings.iscsi.access.initiators;
            if (exported && !sameInitiators(exported.access.initiators, configured)) {
              await applyInitiators(ctx, exported, configured);
            }
            await ctx.drivers.boot.remove(node);
            await ctx.store.provisionings.delete(node);
          }),
      };
    }),
  );
}

async function bootDrift(ctx: BmiContext, proof: Provenance, changed: Map<string, unknown>): Promise<Fix[]> {
  const entries = await ctx.drivers.boot.list();
  const withFiles = new Set(entries.map((e) => e.node));
  const provisioned = await ctx.store.provisionings.list();
  const fixes: Fix[] = [];
  for (const p of provisioned) {
    // A node HIL gave to someone else must never be given boot files for the old tenant's disk.
    if (withFiles.has(p.node) || changed.has(p.node)) continue;
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
  for (const { node } of entries) {
    if (nodes.has(node)) continue;
    const remove = () => removeBootFilesUnlessPowered(ctx, node);
    if (!proof.leftBehind(`boot:${node}`)) {
      fixes.push(unknownFix(node, `boot files of unprovisioned node ${node}`, remove));
      continue;
    }
    fixes.push({
      drift: {
        kind: "orphan_boot_files",
        subject: node,
        detail: `boot files of unprovisioned node ${node}, left by an unfinished operation`,
        repair: "remove them (not while HIL says the node is powered on)",
      },
      apply: remove,
    });
  }
  return fixes;
}

async function removeBootFilesUnlessPowered(ctx: BmiContext, node: string): Promise<void> {
  // A node without a BMC (not_found) cannot be running from them. Without a power driver, or
  // with the node's OBM switched off in HIL (conflict), nothing can tell, and the journal's proof
  // (or the operator naming the node) decides alone. A BMC that does not answer: try later.
  const state = await ctx.drivers.power?.powerState(node).catch((error: unknown) => {
    if (isBmiError(error, "not_found")) return "off" as const;
    if (isBmiError(error, "conflict")) return undefined;
    throw error;
  });
  if (state === "on" || state === "unknown") {
    throw new BmiError(
      "busy",
      `node ${node} is ${state === "on" ? "powered on" : "in an unknown power state"} (its BMC says so); its boot files stay`,
      {
        subsystem: "power",
        details: { node, power: state },
      },
    );
  }
  await ctx.drivers.boot.remove(node);
}

interface OpenOperation {
  id: string;
  operation: string;
  /** The operation's subject (project, node, disk...) as journalled. */
  data: Record<string, unknown>;
}

/** Operations journalled as started that never finished, failed nor were reconciled (the process died). */
function openOperations(journal: JournalEntry[]): OpenOperation[] {
  const open = new Map<string, OpenOperation>();
  const withResources = new Set<string>();
  for (const entry of journal) {
    if (Array.isArray(entry.data.resources)) withResources.add(entry.operationId);
    if (entry.step !== null) continue;
    if (entry.status === "started")
      open.set(entry.operationId, { id: entry.operationId, operation: entry.operation, data: entry.data });
    else open.delete(entry.operationId);
  }
  return [...open.values()].map((op) =>
    withResources.has(op.id) ? { ...op, data: { ...op.data, resourcesJournalled: true } } : op,
  );
}

/**
 * HIL attachments against BMI's records: a provisioned node must be on the provisioning network;
 * a node there without a record must not. Candidates are the nodes of the network's attachment
 * list in HIL (every node on it, where the driver can list it) and the nodes of operations that
 * were interrupted or failed without a complete undo. A node left there by one of those
 * operations is an orphan, detached on repair; any other is `unknown` (another BMI's, or put
 * there by hand) and detached only when named.
 */
async function attachmentDrift(
  ctx: BmiContext,
  unfinished: OpenOperation[],
  changed: Map<string, unknown>,
  proof: Provenance,
): Promise<Fix[]> {
  const network = ctx.settings.provisioningNetwork;
  const { isolation } = ctx.drivers;
  if (!network || !isolation.capabilities.networks) return [];
  const provisioned = new Map((await ctx.store.provisionings.list()).map((p) => [p.node, p]));
  const ours = new Set(
    unfinished.map((op) => op.data.node).filter((n): n is string => typeof n === "string"),
  );
  const onNetwork = await attachedTo(ctx, network, [...provisioned.keys(), ...ours]);
  const nodes = new Set([...provisioned.keys(), ...ours, ...onNetwork.keys()]);
  const channel = ctx.settings.provisioningChannel;
  const fixes: Fix[] = [];
  for (const node of [...nodes].sort()) {
    if (changed.has(node)) continue;
    const attached = onNetwork.get(node) ?? [];
    const record = provisioned.get(node);
    if (record) {
      if (!record.network || attached.some((a) => a.nic === record.nic)) continue;
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
      const detach = () => isolation.detach({ ...a, channel: a.channel ?? channel });
      const detail = `node ${node} (NIC ${a.nic}) is on ${network} without a provisioning record`;
      if (!(ours.has(node) || proof.leftBehind(`attachment:${node}`))) {
        fixes.push(unknownFix(node, detail, detach));
        continue;
      }
      fixes.push({
        drift: {
          kind: "orphan_attachment",
          subject: node,
          detail: `${detail}, left by an operation that did not finish or was not undone`,
          repair: "detach it",
        },
        apply: detach,
      });
    }
  }
  return fixes;
}

/**
 * Who is on the provisioning network, by node: the whole list from HIL where the driver can
 * give it (per project BMI knows, for an account that may not list the network whole), else
 * the given nodes one by one.
 */
async function attachedTo(
  ctx: BmiContext,
  network: string,
  nodes: string[],
): Promise<Map<string, NetworkAttachment[]>> {
  const { isolation } = ctx.drivers;
  const byNode = new Map<string, NetworkAttachment[]>();
  const add = (a: NetworkAttachment) => byNode.set(a.node, [...(byNode.get(a.node) ?? []), a]);
  if (isolation.networkAttachments) {
    const projects = (await ctx.store.projects.list()).map((p) => p.name);
    for (const a of await isolation.networkAttachments(network, { projects })) add(a);
    return byNode;
  }
  for (const node of new Set(nodes)) {
    for (const a of await isolation.attachments(node)) if (a.network === network) add(a);
  }
  return byNode;
}

/** Lock rows of dead processes or ended leases (the reconcile lock we hold is live, so never listed). */
async function lockDrift(ctx: BmiContext): Promise<Fix[]> {
  return (await ctx.store.locks.list())
    .filter((lock) => lock.stale)
    .map((lock) => ({
      drift: {
        kind: "stale_lock" as const,
        subject: lock.key,
        detail: `lock ${lock.key} of process ${lock.owner.pid} on ${lock.owner.host}, which is gone or whose lease ended`,
        repair: "remove the lock row",
      },
      apply: async () => ctx.store.locks.break(lock.key, lock.owner.id),
    }));
}

interface IncompleteUndo extends OpenOperation {
  /** The steps whose undo was skipped or failed, with why. */
  undos: { step: string; status: string; error: string }[];
}

/**
 * Failed operations whose compensation was skipped or failed (an attach still queued in HIL when
 * its undo ran, a detach HIL refused...), and that no reconcile has closed yet.
 */
function incompleteUndos(journal: JournalEntry[]): IncompleteUndo[] {
  const last = new Map<string, JournalEntry>();
  const undos = new Map<string, IncompleteUndo["undos"]>();
  for (const entry of journal) {
    if (entry.step === null) last.set(entry.operationId, entry);
    else if (entry.status === "undo_failed" || entry.status === "compensation_skipped") {
      const error = (entry.data.error as { message?: unknown } | undefined)?.message;
      const list = undos.get(entry.operationId) ?? [];
      list.push({ step: entry.step, status: entry.status, error: typeof error === "string" ? error : "" });
      undos.set(entry.operationId, list);
    }
  }
  const out: IncompleteUndo[] = [];
  for (const [id, list] of undos) {
    const final = last.get(id);
    if (final?.status !== "failed") continue;
    out.push({ id, operation: final.operation, data: final.data, undos: list });
  }
  return out;
}

function incompleteUndoDrift(ctx: BmiContext, ops: IncompleteUndo[], failedSubjects: Set<string>): Fix[] {
  return ops.map(({ id, operation, data, undos }) => {
    const node = typeof data.node === "string" ? data.node : undefined;
    const steps = undos.map(
      (u) => `${u.step} (${u.status === "undo_failed" ? "failed" : "skipped"}: ${u.error})`,
    );
    return {
      drift: {
        kind: "incomplete_undo" as const,
        subject: id,
        detail: `${operation}${node ? ` of node ${node}` : ""} failed and its undo did not complete: ${steps.join("; ")}`,
        repair:
          "mark it reconciled once the other repairs (detach, remove) ran; stays open while one of them fails",
      },
      apply: async () => {
        if (node !== undefined && failedSubjects.has(node)) {
          throw new BmiError("conflict", `a repair of node ${node} failed; operation ${id} stays open`, {
            retryable: true,
            details: { node, operationId: id },
          });
        }
        await markReconciled(ctx, id, operation);
      },
    };
  });
}

/** Closes an open operation in the journal once its leftovers were dealt with. */
function markReconciled(ctx: BmiContext, operationId: string, operation: string) {
  return ctx.store.journal.append({ operationId, operation, step: null, status: "reconciled", data: {} });
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
      await markReconciled(ctx, id, operation);
    },
  }));
}
