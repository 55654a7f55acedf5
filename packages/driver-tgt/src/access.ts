import { createHash } from "node:crypto";
import { BmiError, type ExportAccess, type ExportRequest, type Logger } from "@bmi/core";
import type { KnownTargets } from "./known-targets.js";
import { createMutex } from "./mutex.js";
import { isInitiatorName, type TgtTarget } from "./show-parser.js";
import { kit } from "./tgt-options.js";
import type { Tgtadm } from "./tgtadm.js";

const subsystem = kit.subsystem;

/** What we remember about a target we created, for idempotency checks tgt cannot answer (secrets). */
type SecretDigest = string;
const digest = (secret: string): SecretDigest => createHash("sha256").update(secret).digest("hex");

/** The ACL rules tgt gets for an access: ALL, or the addresses then the initiator names. */
export const aclOf = (access: ExportAccess): string[] =>
  access.initiators === "ALL"
    ? ["ALL"]
    : [...(access.initiators.addresses ?? []), ...(access.initiators.names ?? [])];

/** tgt's ACL lines as access rules (an empty ACL admits nobody: no addresses, no names). */
export function initiatorsOf(acl: readonly string[]): ExportAccess["initiators"] {
  if (acl.includes("ALL")) return "ALL";
  const names = acl.filter(isInitiatorName);
  const addresses = acl.filter((rule) => !isInitiatorName(rule));
  return { ...(addresses.length > 0 ? { addresses } : {}), ...(names.length > 0 ? { names } : {}) };
}

/** Who may log in to our targets: initiator ACLs and CHAP accounts, applied, compared and dropped. */
export interface TgtAccess {
  /** Binds the request's ACL rules and CHAP account to target `tid`. */
  apply(tid: number, request: ExportRequest, signal?: AbortSignal): Promise<void>;
  /**
   * Replaces a live target's ACL: the old rules out first, so in between it admits fewer
   * initiators, never more. CHAP stays as it is.
   */
  replaceInitiators(
    target: TgtTarget,
    initiators: ExportAccess["initiators"],
    signal?: AbortSignal,
  ): Promise<void>;
  /** Whether an existing target's ACL and CHAP are what `access` asks for (so export is idempotent). */
  matches(existing: TgtTarget, access: ExportAccess): boolean;
  /** Forgets the CHAP secret set for a deleted target, and deletes the accounts no target uses. */
  release(target: string, users: string[], signal?: AbortSignal): Promise<void>;
}

export function createTgtAccess(tgtadm: Tgtadm, targets: KnownTargets, log: Logger): TgtAccess {
  // CHAP accounts are global in tgtd, so their check-then-change runs alone.
  const accountsLock = createMutex();
  const secrets = new Map<string, SecretDigest>();
  const chap = createChapAccounts(tgtadm, targets);

  /** Adds (bind) or removes (unbind) one ACL rule, an initiator address or name. */
  const changeRule = async (
    op: "bind" | "unbind",
    tid: number,
    rule: string,
    target: string,
    signal?: AbortSignal,
  ) => {
    const flag = isInitiatorName(rule) ? "--initiator-name" : "--initiator-address";
    const done = await tgtadm.run(["--mode", "target", "--op", op, "--tid", String(tid), flag, rule], {
      signal,
    });
    if (done.exitCode !== 0) {
      throw tgtadm.failure(`${op === "bind" ? "allow" : "disallow"} ${rule} on ${target}`, done, { target });
    }
  };

  const allowInitiators = async (tid: number, request: ExportRequest, signal?: AbortSignal) => {
    for (const rule of aclOf(request.access)) await changeRule("bind", tid, rule, request.target, signal);
    if (request.access.initiators === "ALL") {
      log.warn(
        { op: "export", target: request.target },
        "target is open to ALL initiators (explicit choice)",
      );
    }
  };

  return {
    async apply(tid, request, signal) {
      await allowInitiators(tid, request, signal);
      const wanted = request.access.chap;
      if (wanted) {
        await accountsLock(() => chap.bind(tid, wanted, signal));
        secrets.set(request.target, digest(wanted.secret));
      } else {
        secrets.delete(request.target);
      }
    },

    async replaceInitiators(target, initiators, signal) {
      const want = aclOf({ initiators });
      for (const rule of target.acl.filter((r) => !want.includes(r))) {
        await changeRule("unbind", target.tid, rule, target.name, signal);
      }
      for (const rule of want.filter((r) => !target.acl.includes(r))) {
        await changeRule("bind", target.tid, rule, target.name, signal);
      }
      log.debug({ op: "setInitiators", target: target.name, rules: want.length }, "target access changed");
    },

    matches(existing, access) {
      const want = [...aclOf(access)].sort();
      const have = [...existing.acl].sort();
      if (JSON.stringify(want) !== JSON.stringify(have)) return false;
      const wanted = access.chap;
      if (!wanted) return existing.accounts.length === 0;
      if (existing.accounts.length !== 1 || existing.accounts[0] !== wanted.user) return false;
      // tgt never shows secrets; we compare with what we set, when this process set it.
      const known = secrets.get(existing.name);
      return known === undefined || known === digest(wanted.secret);
    },

    async release(target, users, signal) {
      secrets.delete(target);
      if (users.length === 0) return;
      await accountsLock(() => chap.dropUnused(users, signal));
    },
  };
}

/** tgtd's CHAP accounts, and the secrets this process gave them. Callers hold the accounts lock. */
function createChapAccounts(tgtadm: Tgtadm, targets: KnownTargets) {
  /** user → digest of the secret this process gave the tgtd account, so a known account is bound as is. */
  const accountSecrets = new Map<string, SecretDigest>();
  const bindAccount = (tid: number, user: string, signal?: AbortSignal) =>
    tgtadm.run(["--mode", "account", "--op", "bind", "--tid", String(tid), "--user", user], { signal });

  /** Re-makes an account with the wanted secret and re-binds the targets using it (ours, another's). */
  const remake = async (tid: number, chap: { user: string; secret: string }, signal?: AbortSignal) => {
    const users = (await targets.show(signal)).filter((t) => t.tid !== tid && t.accounts.includes(chap.user));
    if (users.length > 0 && accountSecrets.has(chap.user)) {
      throw new BmiError(
        "conflict",
        `CHAP user ${chap.user} is already used by other targets with another secret`,
        {
          subsystem,
          details: { user: chap.user, targets: users.map((t) => t.name) },
        },
      );
    }
    await tgtadm.run(["--mode", "account", "--op", "delete", "--user", chap.user], { signal });
    const created = await newAccount(chap, signal);
    if (created.exitCode !== 0) throw tgtadm.failure(`create CHAP account ${chap.user}`, created);
    for (const user of users) {
      const rebound = await bindAccount(user.tid, chap.user, signal);
      if (rebound.exitCode !== 0)
        throw tgtadm.failure(`re-bind CHAP account ${chap.user} to ${user.name}`, rebound);
    }
  };

  const newAccount = (chap: { user: string; secret: string }, signal?: AbortSignal) =>
    tgtadm.run(["--mode", "account", "--op", "new", "--user", chap.user, "--password", chap.secret], {
      signal,
      secrets: [chap.secret],
    });

  return {
    /**
     * Binds the CHAP account (global in tgtd; one account may serve many targets) to the target,
     * creating it when missing. An account whose secret we did not set (left from before a restart
     * of ours) is re-made with the requested secret and re-bound to the targets using it; one we
     * set with another secret while other targets use it is a conflict.
     */
    async bind(tid: number, chap: { user: string; secret: string }, signal?: AbortSignal) {
      const wanted = digest(chap.secret);
      const created = await newAccount(chap, signal);
      const exists = created.exitCode !== 0 && /already exists/.test(created.stderr);
      if (exists && accountSecrets.get(chap.user) !== wanted) {
        await remake(tid, chap, signal);
      } else if (created.exitCode !== 0 && !exists) {
        throw tgtadm.failure(`create CHAP account ${chap.user}`, created);
      }
      accountSecrets.set(chap.user, wanted);
      const bound = await bindAccount(tid, chap.user, signal);
      if (bound.exitCode !== 0) throw tgtadm.failure(`bind CHAP account ${chap.user}`, bound);
    },

    /** Deletes CHAP accounts no target uses any more (they hold secrets in tgtd's memory). */
    async dropUnused(users: string[], signal?: AbortSignal) {
      const inUse = new Set((await targets.show(signal)).flatMap((t) => t.accounts));
      for (const user of users) {
        if (inUse.has(user)) continue;
        await tgtadm.run(["--mode", "account", "--op", "delete", "--user", user], { signal });
        accountSecrets.delete(user);
      }
    },
  };
}
