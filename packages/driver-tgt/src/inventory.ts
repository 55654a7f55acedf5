import { BmiError, type ExportedTarget, type InitiatorSession } from "@bmi/core";
import { initiatorsOf } from "./access.js";
import { backingOf, exportedTarget } from "./backing.js";
import type { KnownTargets } from "./known-targets.js";
import { kit, type TgtConfig } from "./tgt-options.js";

/** The targets we serve, and who is logged in to one. */
export function createInventory(config: TgtConfig, targets: KnownTargets) {
  return {
    async list(signal?: AbortSignal): Promise<ExportedTarget[]> {
      const out: ExportedTarget[] = [];
      for (const target of await targets.show(signal)) {
        const backing = backingOf(target);
        // A target without our LUN 1 is not one we serve (someone else's, or half-made).
        if (!backing) continue;
        out.push(
          exportedTarget(config, target.name, backing, target.sessions.length, initiatorsOf(target.acl)),
        );
      }
      return out;
    },

    /** The sessions of a validated target name, oldest first. */
    async sessions(name: string, signal?: AbortSignal): Promise<InitiatorSession[]> {
      const target = (await targets.show(signal)).find((t) => t.name === name);
      if (!target) {
        throw new BmiError("not_found", `target ${name} does not exist`, {
          subsystem: kit.subsystem,
          details: { target: name },
        });
      }
      // tgt numbers I_T nexuses in login order; the alias tells the firmware's from the OS's.
      return target.sessions
        .map((s) => ({
          id: s.nexus,
          initiator: s.initiator,
          addresses: [...s.addresses],
          ...(s.alias === undefined ? {} : { alias: s.alias }),
        }))
        .sort((a, b) => a.id - b.id);
    },
  };
}
