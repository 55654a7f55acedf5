import { imageIdFromCephName } from "../domain/names.js";
import { BmiError } from "../errors/index.js";
import type { JournalEntry } from "../store/index.js";
import type { BmiContext } from "./context.js";

/**
 * What this database's journal proves about objects outside it. reconcile() may remove an
 * object only when an operation journalled here touched it (made it, or was removing it) and
 * did not finish: the process died, or it failed and an undo did not complete. Anything else
 * named like ours may belong to another BMI, to a database restored from a backup, or to a
 * mistyped `[db] path`, and is reported as `unknown`.
 */
export interface Provenance {
  /** Whether an unfinished operation of this database touched `resource` (`image:<rbd>`, `target:<iqn>`, ...). */
  leftBehind(resource: string): boolean;
  /** Operation ids (first 8 characters, as in temporary snapshot names) of this database. */
  readonly operationPrefixes: ReadonlySet<string>;
}

export function readProvenance(journal: JournalEntry[]): Provenance {
  const finalStatus = new Map<string, string>();
  for (const entry of journal) if (entry.step === null) finalStatus.set(entry.operationId, entry.status);
  const unfinished = new Set<string>();
  for (const entry of journal) {
    const resources = entry.data.resources;
    if (!Array.isArray(resources) || finalStatus.get(entry.operationId) === "finished") continue;
    for (const resource of resources) if (typeof resource === "string") unfinished.add(resource);
  }
  return {
    leftBehind: (resource) => unfinished.has(resource),
    operationPrefixes: new Set(journal.map((e) => e.operationId.slice(0, 8))),
  };
}

/**
 * Repair refuses to run on a database that looks new or restored, where every image, target
 * and boot file in use would look like an orphan: no admin project (only `bmi db init` makes
 * it), or RBD images `<uid>img<N>` above the highest id this database ever allocated.
 */
export async function assertRepairable(ctx: BmiContext, pool: Iterable<string>): Promise<void> {
  const admin = ctx.settings.adminProject;
  if (!(await ctx.store.projects.get(admin))) {
    throw refuse(
      `the database has no admin project ${admin}, so it looks new (a mistyped [db] path?)`,
      "check [db] path; on a new deployment run `bmi db init` first",
      { adminProject: admin },
    );
  }
  const highWater = await ctx.store.images.idHighWater();
  const ids = [...pool].map((name) => imageIdFromCephName(ctx.settings.uid, name) ?? 0);
  const newest = Math.max(0, ...ids);
  if (newest > highWater) {
    throw refuse(
      `the pool holds ${ctx.settings.uid}img${newest}, but this database never allocated an id above ${highWater}, so it looks restored from a backup or belongs to another BMI`,
      "use the current database (or set [bmi] uid to this database's own); reconcile without repair shows what differs",
      { highWater, newestInPool: newest },
    );
  }
}

function refuse(why: string, what: string, details: Record<string, unknown>): BmiError {
  return new BmiError(
    "conflict",
    `reconcile will not repair: ${why}; repairing could destroy live disks. ${what}`,
    {
      subsystem: "store",
      retryable: false,
      details,
    },
  );
}
