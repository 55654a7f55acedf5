import {
  BmiError,
  type CommandResult,
  type ExportedTarget,
  type ExportRequest,
  type Logger,
} from "@bmi/core";
import type { TgtAccess } from "./access.js";
import { backingArgs, backingOf, exportedTarget, reportedBacking } from "./backing.js";
import type { KnownTargets } from "./known-targets.js";
import type { TgtTarget } from "./show-parser.js";
import { kit, LUN, type TgtConfig } from "./tgt-options.js";
import { DAEMON_UNREACHABLE, reasonOf, type Tgtadm } from "./tgtadm.js";

/** What creating targets needs from the rest of the driver. */
export interface TargetParts {
  config: TgtConfig;
  tgtadm: Tgtadm;
  targets: KnownTargets;
  access: TgtAccess;
  log: Logger;
  /** A tid no call of this process uses; collisions with other processes are retried by create. */
  allocateTid: () => number;
}

/** How many tids are drawn before a create that keeps clashing gives up. */
const TID_ATTEMPTS = 20;

const clash = (request: ExportRequest) =>
  new BmiError(
    "already_exists",
    `target ${request.target} already exists with a different backing or access`,
    {
      subsystem: kit.subsystem,
      details: { target: request.target },
    },
  );

/** tgtd only says "invalid request" / "unknown error" when it cannot open a backing; the reason is in its own log. */
function lunFailure(tgtadm: Tgtadm, request: ExportRequest, lun: CommandResult): BmiError {
  // tgtd gone (crashed, restarted) is not a backing-store problem: say so, retryably.
  if (DAEMON_UNREACHABLE.test(reasonOf(lun))) {
    return tgtadm.failure(`add LUN 1 to ${request.target}`, lun, { target: request.target });
  }
  const where = request.backing.kind === "file" ? request.backing.path : `${request.backing.kind} image`;
  const reason = reasonOf(lun);
  return new BmiError(
    /invalid request/.test(reason) ? "not_found" : "unavailable",
    `tgtd could not open the backing store ${where} for ${request.target} (missing image or file, or no access to it; see tgtd's log)`,
    {
      subsystem: kit.subsystem,
      cause: new Error(`${lun.command}: exit ${lun.exitCode}: ${reason}`),
      details: { target: request.target, exitCode: lun.exitCode, reason },
    },
  );
}

/** Makes targets: a new tid, LUN 1 on the backing, the access rules; idempotent per request. */
export function createTargetMaker(parts: TargetParts) {
  const { config, tgtadm, targets, access, log } = parts;

  /** `target new` under a fresh tid; undefined when the name exists already. */
  const newTarget = async (request: ExportRequest, signal?: AbortSignal): Promise<number | undefined> => {
    let tid = parts.allocateTid();
    for (let attempt = 0; ; attempt++) {
      const made = await tgtadm.run(
        ["--mode", "target", "--op", "new", "--tid", String(tid), "--targetname", request.target],
        { signal },
      );
      if (made.exitCode === 0) return tid;
      if (!/already exists/.test(made.stderr) || attempt >= TID_ATTEMPTS) {
        throw tgtadm.failure(`create target ${request.target}`, made, { target: request.target });
      }
      // Either the name exists (idempotency decides) or the tid is taken: draw another.
      if ((await targets.show(signal)).some((t) => t.name === request.target)) return undefined;
      tid = parts.allocateTid();
    }
  };

  const addLun = async (tid: number, request: ExportRequest, signal?: AbortSignal) => {
    const args = ["--mode", "logicalunit", "--op", "new", "--tid", String(tid), "--lun", String(LUN)];
    const lun = await tgtadm.run([...args, ...backingArgs(request.backing, config.rbd)], { signal });
    if (lun.exitCode !== 0) throw lunFailure(tgtadm, request, lun);
  };

  /** Creates target, LUN and access; undoes the target on any failure. Returns undefined if the name exists. */
  const create = async (
    request: ExportRequest,
    signal?: AbortSignal,
  ): Promise<ExportedTarget | undefined> => {
    const tid = await newTarget(request, signal);
    if (tid === undefined) return undefined;
    log.debug({ op: "export", target: request.target, tid }, "target created");
    try {
      await addLun(tid, request, signal);
      await access.apply(tid, request, signal);
    } catch (error) {
      // Leave no half-made target behind, even when the call was cancelled.
      await tgtadm.deleteTarget(tid, true).catch(() => undefined);
      targets.forget(request.target);
      throw error;
    }
    targets.remember(request.target, {
      tid,
      accounts: request.access.chap ? [request.access.chap.user] : [],
    });
    const { initiators } = request.access;
    return exportedTarget(config, request.target, reportedBacking(request.backing), 0, initiators);
  };

  /** Whether an existing target is what `request` asks for (so export is idempotent). */
  const matches = (existing: TgtTarget, request: ExportRequest): boolean => {
    const backing = backingOf(existing);
    if (!backing || JSON.stringify(backing) !== JSON.stringify(reportedBacking(request.backing)))
      return false;
    return access.matches(existing, request.access);
  };

  return {
    /** Exports one validated request; the caller holds the target's lock. */
    async exportOne(request: ExportRequest, signal?: AbortSignal): Promise<ExportedTarget> {
      const made = await create(request, signal);
      if (made) return made;
      const existing = (await targets.show(signal)).find((t) => t.name === request.target);
      if (!existing) throw clash(request);
      if (!backingOf(existing) && existing.sessions.length === 0) {
        // Half-made by a process killed between "target new" and "logicalunit new": it serves
        // nothing and list() does not show it, so make it again rather than refuse forever.
        log.warn({ op: "export", target: request.target, tid: existing.tid }, "replacing a half-made target");
        const deleted = await tgtadm.deleteTarget(existing.tid, true, signal);
        if (deleted.exitCode !== 0)
          throw tgtadm.failure(`delete target ${request.target}`, deleted, { target: request.target });
        const again = await create(request, signal);
        if (again) return again;
        throw clash(request);
      }
      if (!matches(existing, request)) throw clash(request);
      return exportedTarget(
        config,
        existing.name,
        reportedBacking(request.backing),
        existing.sessions.length,
        request.access.initiators,
      );
    },
  };
}
