import type { TgtTarget } from "./show-parser.js";
import type { Tgtadm } from "./tgtadm.js";

/** What we remember of a target: its tid and the CHAP users bound to it. */
export interface KnownTarget {
  tid: number;
  accounts: string[];
}

/**
 * name → tid (and CHAP users) of the targets we made or last saw, so unexport needs no full
 * `show` (O(targets)). Every full show replaces it. A tid is only stale when the target was
 * deleted behind our back (another process, a tgtd restart); deleting then says "can't find
 * the target", which sends us to one full show.
 */
export interface KnownTargets {
  get(name: string): KnownTarget | undefined;
  remember(name: string, target: KnownTarget): void;
  forget(name: string): void;
  /** A full `show`, which also replaces what we remember. */
  show(signal?: AbortSignal): Promise<TgtTarget[]>;
}

export function createKnownTargets(tgtadm: Tgtadm): KnownTargets {
  let known = new Map<string, KnownTarget>();
  return {
    get: (name) => known.get(name),
    remember: (name, target) => {
      known.set(name, target);
    },
    forget: (name) => {
      known.delete(name);
    },
    async show(signal) {
      const targets = await tgtadm.show(signal);
      known = new Map(targets.map((t) => [t.name, { tid: t.tid, accounts: [...t.accounts] }]));
      return targets;
    },
  };
}
