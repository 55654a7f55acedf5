import { BmiError, type CommandResult, type Logger } from "@bmi/core";
import type { TgtAccess } from "./access.js";
import type { KnownTarget, KnownTargets } from "./known-targets.js";
import { kit } from "./tgt-options.js";
import type { Tgtadm } from "./tgtadm.js";

const subsystem = kit.subsystem;

export interface RemoveParts {
  tgtadm: Tgtadm;
  targets: KnownTargets;
  access: TgtAccess;
  log: Logger;
}

/** Deletes targets by name: by the tid we remember, else after one full show. */
export function createTargetRemover(parts: RemoveParts) {
  const { tgtadm, targets, access, log } = parts;

  /** Deletes by the tid we know; undefined when we know none or it was stale (deleted behind our back). */
  const deleteKnown = async (name: string, force: boolean, signal?: AbortSignal) => {
    const cached = targets.get(name);
    if (!cached) return undefined;
    // tgtd itself refuses (still active) while initiators are logged in and no force is given.
    const deleted = await tgtadm.deleteTarget(cached.tid, force, signal);
    if (deleted.exitCode !== 0 && /can't find the target/.test(deleted.stderr)) {
      targets.forget(name);
      return undefined;
    }
    return { found: cached, deleted };
  };

  /** Looks the target up with a full show, refuses while sessions are open unless forced, deletes it. */
  const deleteShown = async (name: string, force: boolean, signal?: AbortSignal) => {
    const target = (await targets.show(signal)).find((t) => t.name === name);
    if (!target) {
      throw new BmiError("not_found", `target ${name} does not exist`, {
        subsystem,
        details: { target: name },
      });
    }
    if (target.sessions.length > 0 && !force) {
      throw new BmiError(
        "busy",
        `target ${name} has ${target.sessions.length} initiator session(s) logged in; log them out or force`,
        { subsystem, details: { target: name, sessions: target.sessions.map((s) => s.initiator) } },
      );
    }
    const found: KnownTarget = { tid: target.tid, accounts: target.accounts };
    return { found, deleted: await tgtadm.deleteTarget(target.tid, force, signal) };
  };

  const deleteFailure = (name: string, deleted: CommandResult): BmiError => {
    const error = tgtadm.failure(`delete target ${name}`, deleted, { target: name });
    if (error.code !== "busy") return error;
    return new BmiError("busy", `target ${name} has initiators logged in; log them out or force`, {
      subsystem,
      cause: error,
      details: { target: name },
    });
  };

  return {
    /** Removes a validated target name; the caller holds the target's lock. */
    async unexport(name: string, force: boolean, signal?: AbortSignal): Promise<void> {
      const { found, deleted } =
        (await deleteKnown(name, force, signal)) ?? (await deleteShown(name, force, signal));
      if (deleted.exitCode !== 0) throw deleteFailure(name, deleted);
      targets.forget(name);
      await access.release(name, found.accounts, signal);
      log.debug({ op: "unexport", target: name, tid: found.tid, forced: force }, "target deleted");
    },
  };
}
