import { createHash, randomInt } from "node:crypto";
import {
  type Backing,
  BmiError,
  type CallOptions,
  type CommandResult,
  type CommandRunner,
  createExecaRunner,
  DEFAULT_IQN_PREFIX,
  type ExportAccess,
  ExportAccessSchema,
  type ExportCapabilities,
  type ExportDriver,
  type ExportedTarget,
  type ExportRequest,
  Host,
  IqnPrefix,
  type Logger,
  lastErrorLine,
  Port,
  parseInput,
  registrar,
  silentLogger,
  TargetName,
  TOKENS,
  targetNameFor,
} from "@bmi/core";
import { z } from "zod";
import { isInitiatorName, parseTargets, type TgtTarget } from "./show-parser.js";

/** tids are drawn from [1, 2^30): tgtd accepts any positive int, and a draw never repeats in practice. */
const TID_SPACE = 2 ** 30;
const subsystem = "export" as const;
/** BMI serves the disk as LUN 1; LUN 0 is tgt's controller. */
const LUN = 1;

/** tgtadm's words when tgtd is not there to answer (not running, crashed, restarting). */
const DAEMON_UNREACHABLE =
  /can't send (the )?request|failed to send request|Transport endpoint|Connection refused|No such file or directory/i;

export interface TgtExportOptions {
  /** The address initiators connect to (reported in results and written into boot scripts). */
  portal: string;
  /** The iSCSI port tgtd listens on. Default 3260. */
  port?: number;
  /** tgtd's control port (`tgtadm -C`), for a tgtd started with `-C`. Default: tgtadm's own (0). */
  controlPort?: number;
  /** Per tgtadm call. Default 10 s. */
  timeoutMs?: number;
  /** The tgtadm executable. Default `tgtadm` on PATH. */
  tgtadm?: string;
  /**
   * Target naming for `targetNameFor()`: `{ iqnPrefix }` gives `<prefix>:<rbd name>`; `"bare"` keeps
   * the original BMI's bare `<uid>img<id>` names so nodes booted by an existing BMI keep booting.
   */
  naming?: { iqnPrefix: string } | "bare";
  /** Defaults for rbd backings that carry no `conf` / `clientId` (tgt's `--bsopts conf=...;id=...`). */
  rbd?: { conf?: string; clientId?: string };
  /** Runs tgtadm; default an execa runner. Tests pass a recording runner, a remote host a remote one. */
  runner?: CommandRunner;
  logger?: Logger;
  /** Chooses target ids (default: random in [1, 2^30), see `allocateTid`). Tests pass a counter. */
  tids?: () => number;
}

/** The tgt ExportDriver plus what callers of this driver in particular need. */
export interface TgtExportDriver extends ExportDriver {
  /** The target name for an RBD image under the configured naming. */
  targetNameFor(rbdName: string): string;
}

const SafePath = z
  .string()
  .regex(/^\/[A-Za-z0-9_./-]*$/, { error: "must be an absolute path of letters, digits, '_', '.', '/', '-'" })
  .refine((p) => !p.split("/").includes(".."), { error: "must not contain '..'" });
const ClientId = z
  .string()
  .regex(/^[A-Za-z0-9_.-]{1,64}$/, { error: "must be letters, digits, '_', '.', '-'" });
const CephName = z.string().regex(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$/, {
  error: "must be letters, digits, '_', '.', '-'",
});

const OptionsSchema = z.object({
  portal: Host,
  port: Port.default(3260),
  controlPort: z.number().int().min(0).max(32767).optional(),
  timeoutMs: z.number().int().positive().default(10_000),
  tgtadm: z.string().min(1).default("tgtadm"),
  naming: z
    .union([z.literal("bare"), z.object({ iqnPrefix: IqnPrefix })])
    .default({ iqnPrefix: DEFAULT_IQN_PREFIX }),
  rbd: z.object({ conf: SafePath.optional(), clientId: ClientId.optional() }).optional(),
});

const BackingSchema = z.discriminatedUnion("kind", [
  z.object({
    kind: z.literal("rbd"),
    pool: CephName,
    image: CephName,
    conf: SafePath.optional(),
    clientId: ClientId.optional(),
  }),
  z.object({ kind: z.literal("file"), path: SafePath }),
  z.object({ kind: z.literal("memory"), image: z.string() }),
]);

/** What we remember about a target we created, for idempotency checks tgt cannot answer (secrets). */
type SecretDigest = string;
const digest = (secret: string): SecretDigest => createHash("sha256").update(secret).digest("hex");

/** A FIFO mutex: calls under it run one at a time. */
function createMutex() {
  let tail: Promise<void> = Promise.resolve();
  return async <T>(work: () => Promise<T>): Promise<T> => {
    const previous = tail;
    let release: () => void = () => {};
    tail = new Promise<void>((resolve) => {
      release = resolve;
    });
    await previous;
    try {
      return await work();
    } finally {
      release();
    }
  };
}

/** One FIFO mutex per key: calls on one target name run one at a time, other names in parallel. */
function createKeyedMutex() {
  const locks = new Map<string, { run: ReturnType<typeof createMutex>; users: number }>();
  return async <T>(key: string, work: () => Promise<T>): Promise<T> => {
    let lock = locks.get(key);
    if (!lock) {
      lock = { run: createMutex(), users: 0 };
      locks.set(key, lock);
    }
    lock.users++;
    try {
      return await lock.run(work);
    } finally {
      if (--lock.users === 0) locks.delete(key);
    }
  };
}

const throwIfAborted = (signal: AbortSignal | undefined) => {
  if (signal?.aborted) throw new BmiError("cancelled", "the export operation was cancelled", { subsystem });
};

/**
 * An ExportDriver over `tgtadm`: one target per disk, the disk as LUN 1, access by initiator
 * address / name and optional CHAP. Each export is three to five small tgtadm calls whatever the
 * number of targets (never `tgt-admin --execute`, which re-applies every target: CON-3).
 */
export function createTgtExport(options: TgtExportOptions): TgtExportDriver {
  const config = parseInput(OptionsSchema, options, "options", "export");
  if (options.runner !== undefined && typeof options.runner !== "function") {
    throw new BmiError("invalid_input", "invalid options.runner: must be a CommandRunner function", {
      subsystem,
      details: { field: "options.runner" },
    });
  }
  const runner = options.runner ?? createExecaRunner({ subsystem, timeoutMs: config.timeoutMs });
  const log = (options.logger ?? silentLogger).child({
    driver: "tgt",
    portal: `${config.portal}:${config.port}`,
  });
  const capabilities: ExportCapabilities = { backings: ["rbd", "file"], acl: true, chap: true };
  // One name at a time (export's list-then-add, unexport), different names in parallel; CHAP
  // accounts are global in tgtd, so their check-then-change runs alone.
  const perTarget = createKeyedMutex();
  const accountsLock = createMutex();
  /**
   * name → tid (and CHAP users) of the targets we made or last saw, so unexport needs no full
   * `show` (O(targets)). Every full show replaces it. A tid is only stale when the target was
   * deleted behind our back (another process, a tgtd restart); deleting then says "can't find
   * the target", which sends us to one full show.
   */
  let known = new Map<string, { tid: number; accounts: string[] }>();
  const secrets = new Map<string, SecretDigest>();

  interface RunOptions {
    signal?: AbortSignal;
    secrets?: string[];
  }

  const tgtadm = async (args: string[], run: RunOptions = {}): Promise<CommandResult> => {
    const control = config.controlPort === undefined ? [] : ["-C", String(config.controlPort)];
    return runner(config.tgtadm, [...control, "--lld", "iscsi", ...args], {
      timeoutMs: config.timeoutMs,
      signal: run.signal,
      secrets: run.secrets,
    });
  };

  /** Maps a failed tgtadm call to a typed error. tgtadm exits 22 for nearly everything; the text says why. */
  const failure = (what: string, result: CommandResult, details: Record<string, unknown> = {}): BmiError => {
    const reason = lastErrorLine(result.stderr).replace(/^tgtadm:\s*/, "");
    const cause = new Error(`${result.command}: exit ${result.exitCode}: ${reason}`);
    const all = { ...details, exitCode: result.exitCode, reason };
    if (DAEMON_UNREACHABLE.test(reason)) {
      return new BmiError(
        "unavailable",
        `cannot reach tgtd (control port ${config.controlPort ?? 0}) to ${what}`,
        {
          subsystem,
          cause,
          details: all,
        },
      );
    }
    if (/can't find the target/.test(reason)) {
      return new BmiError("not_found", `cannot ${what}: the target does not exist`, {
        subsystem,
        cause,
        details: all,
      });
    }
    if (/still active/.test(reason)) {
      return new BmiError("busy", `cannot ${what}: initiators are logged in`, {
        subsystem,
        cause,
        details: all,
      });
    }
    if (/already exists/.test(reason)) {
      return new BmiError("already_exists", `cannot ${what}: it already exists`, {
        subsystem,
        cause,
        details: all,
      });
    }
    if (/permission|not permitted/i.test(reason)) {
      return new BmiError("permission_denied", `not allowed to ${what} (tgtadm needs root)`, {
        subsystem,
        cause,
        details: all,
      });
    }
    return new BmiError("internal", `tgtadm failed to ${what} (exit ${result.exitCode})`, {
      subsystem,
      cause,
      details: all,
    });
  };

  const show = async (signal?: AbortSignal): Promise<TgtTarget[]> => {
    const result = await tgtadm(["--mode", "target", "--op", "show"], { signal });
    if (result.exitCode !== 0) throw failure("list targets", result);
    const targets = parseTargets(result.stdout);
    known = new Map(targets.map((t) => [t.name, { tid: t.tid, accounts: [...t.accounts] }]));
    return targets;
  };

  /** A tid no call of this process uses; collisions with other processes are retried by create. */
  /**
   * tgt needs the caller to choose a tid. A random one from a large space, rather than max + 1:
   * another process sharing this tgtd may delete a target and make a new one, and with max + 1 it
   * could reuse a tid this process still remembers for the old target (unexport would then delete
   * the wrong one). A clash with a live target is answered "already exists" and retried.
   */
  const allocateTid = options.tids ?? ((): number => randomInt(1, TID_SPACE));

  const validate = (request: ExportRequest): ExportRequest => {
    const target = parseInput(TargetName, request?.target, "target", subsystem);
    const backing = parseInput(BackingSchema, request?.backing, "backing", subsystem) as Backing;
    if (!capabilities.backings.includes(backing.kind)) {
      throw new BmiError("unsupported", `tgt cannot serve ${backing.kind} backings`, {
        subsystem,
        details: { field: "backing.kind", kind: backing.kind },
      });
    }
    const access = parseInput(ExportAccessSchema, request?.access, "access", subsystem) as ExportAccess;
    return { target, backing, access };
  };

  const backingArgs = (backing: Backing): string[] => {
    if (backing.kind === "file") return ["--bstype", "rdwr", "--backing-store", backing.path];
    if (backing.kind !== "rbd") throw new Error(`unreachable backing kind ${backing.kind}`);
    const conf = backing.conf ?? config.rbd?.conf;
    const id = backing.clientId ?? config.rbd?.clientId;
    const bsopts = [conf && `conf=${conf}`, id && `id=${id}`].filter(Boolean).join(";");
    return [
      "--bstype",
      "rbd",
      "--backing-store",
      `${backing.pool}/${backing.image}`,
      ...(bsopts ? ["--bsopts", bsopts] : []),
    ];
  };

  /** What the daemon can tell about a backing: rbd loses conf and id (tgt does not show bsopts). */
  const reportedBacking = (backing: Backing): Backing =>
    backing.kind === "rbd" ? { kind: "rbd", pool: backing.pool, image: backing.image } : backing;

  const backingOf = (target: TgtTarget): Backing | undefined => {
    const lun = target.luns.find((l) => l.lun === LUN);
    if (!lun?.backingPath) return undefined;
    if (lun.backingType === "rbd") {
      const slash = lun.backingPath.indexOf("/");
      return { kind: "rbd", pool: lun.backingPath.slice(0, slash), image: lun.backingPath.slice(slash + 1) };
    }
    return { kind: "file", path: lun.backingPath };
  };

  const view = (target: TgtTarget, backing: Backing): ExportedTarget => ({
    target: target.name,
    portal: config.portal,
    port: config.port,
    lun: LUN,
    backing,
    sessions: target.sessions.length,
  });

  const aclOf = (access: ExportAccess): string[] =>
    access.initiators === "ALL"
      ? ["ALL"]
      : [...(access.initiators.addresses ?? []), ...(access.initiators.names ?? [])];

  /** Whether an existing target is what `request` asks for (so export is idempotent). */
  const matches = (existing: TgtTarget, request: ExportRequest): boolean => {
    const backing = backingOf(existing);
    if (!backing || JSON.stringify(backing) !== JSON.stringify(reportedBacking(request.backing)))
      return false;
    const want = [...aclOf(request.access)].sort();
    const have = [...existing.acl].sort();
    if (JSON.stringify(want) !== JSON.stringify(have)) return false;
    const chap = request.access.chap;
    if (!chap) return existing.accounts.length === 0;
    if (existing.accounts.length !== 1 || existing.accounts[0] !== chap.user) return false;
    // tgt never shows secrets; we compare with what we set, when this process set it.
    const known = secrets.get(existing.name);
    return known === undefined || known === digest(chap.secret);
  };

  const clash = (request: ExportRequest) =>
    new BmiError(
      "already_exists",
      `target ${request.target} already exists with a different backing or access`,
      {
        subsystem,
        details: { target: request.target },
      },
    );

  const deleteTarget = async (tid: number, force: boolean, signal?: AbortSignal) =>
    tgtadm(["--mode", "target", "--op", "delete", ...(force ? ["--force"] : []), "--tid", String(tid)], {
      signal,
    });

  /** user → digest of the secret this process gave the tgtd account, so a known account is bound as is. */
  const accountSecrets = new Map<string, SecretDigest>();

  /**
   * Binds the CHAP account (global in tgtd; one account may serve many targets) to the target,
   * creating it when missing. An account whose secret we did not set (left from before a restart
   * of ours) is re-made with the requested secret and re-bound to the targets using it; one we
   * set with another secret while other targets use it is a conflict.
   */
  const bindChap = async (tid: number, chap: { user: string; secret: string }, signal?: AbortSignal) => {
    const hidden = { signal, secrets: [chap.secret] };
    const wanted = digest(chap.secret);
    const newAccount = () =>
      tgtadm(["--mode", "account", "--op", "new", "--user", chap.user, "--password", chap.secret], hidden);
    let created = await newAccount();
    const exists = created.exitCode !== 0 && /already exists/.test(created.stderr);
    if (exists && accountSecrets.get(chap.user) !== wanted) {
      const users = (await show(signal)).filter((t) => t.tid !== tid && t.accounts.includes(chap.user));
      if (users.length > 0 && accountSecrets.has(chap.user)) {
        throw new BmiError(
          "conflict",
          `CHAP user ${chap.user} is already used by other targets with another secret`,
          { subsystem, details: { user: chap.user, targets: users.map((t) => t.name) } },
        );
      }
      await tgtadm(["--mode", "account", "--op", "delete", "--user", chap.user], { signal });
      created = await newAccount();
      if (created.exitCode !== 0) throw failure(`create CHAP account ${chap.user}`, created);
      for (const user of users) {
        const rebound = await tgtadm(
          ["--mode", "account", "--op", "bind", "--tid", String(user.tid), "--user", chap.user],
          { signal },
        );
        if (rebound.exitCode !== 0)
          throw failure(`re-bind CHAP account ${chap.user} to ${user.name}`, rebound);
      }
    } else if (created.exitCode !== 0 && !exists) {
      throw failure(`create CHAP account ${chap.user}`, created);
    }
    accountSecrets.set(chap.user, wanted);
    const bound = await tgtadm(
      ["--mode", "account", "--op", "bind", "--tid", String(tid), "--user", chap.user],
      {
        signal,
      },
    );
    if (bound.exitCode !== 0) throw failure(`bind CHAP account ${chap.user}`, bound);
  };

  /** Deletes CHAP accounts no target uses any more (they hold secrets in tgtd's memory). */
  const dropUnusedAccounts = async (users: string[], signal?: AbortSignal) => {
    if (users.length === 0) return;
    await accountsLock(async () => {
      const inUse = new Set((await show(signal)).flatMap((t) => t.accounts));
      for (const user of users) {
        if (inUse.has(user)) continue;
        await tgtadm(["--mode", "account", "--op", "delete", "--user", user], { signal });
        accountSecrets.delete(user);
      }
    });
  };

  /** Creates target, LUN and access; undoes the target on any failure. Returns undefined if the name exists. */
  const create = async (
    request: ExportRequest,
    signal?: AbortSignal,
  ): Promise<ExportedTarget | undefined> => {
    let tid = allocateTid();
    for (let attempt = 0; ; attempt++) {
      const made = await tgtadm(
        ["--mode", "target", "--op", "new", "--tid", String(tid), "--targetname", request.target],
        { signal },
      );
      if (made.exitCode === 0) break;
      if (!/already exists/.test(made.stderr) || attempt >= 20) {
        throw failure(`create target ${request.target}`, made, { target: request.target });
      }
      // Either the name exists (idempotency decides) or the tid is taken: draw another.
      const targets = await show(signal);
      if (targets.some((t) => t.name === request.target)) return undefined;
      tid = allocateTid();
    }
    log.debug({ op: "export", target: request.target, tid }, "target created");
    try {
      const lun = await tgtadm(
        [
          "--mode",
          "logicalunit",
          "--op",
          "new",
          "--tid",
          String(tid),
          "--lun",
          String(LUN),
          ...backingArgs(request.backing),
        ],
        { signal },
      );
      if (lun.exitCode !== 0) {
        // tgtd gone (crashed, restarted) is not a backing-store problem: say so, retryably.
        if (DAEMON_UNREACHABLE.test(lastErrorLine(lun.stderr))) {
          throw failure(`add LUN 1 to ${request.target}`, lun, { target: request.target });
        }
        const where =
          request.backing.kind === "file" ? request.backing.path : `${request.backing.kind} image`;
        const reason = lastErrorLine(lun.stderr).replace(/^tgtadm:\s*/, "");
        // tgtd only says "invalid request" / "unknown error"; the reason is in its own log.
        throw new BmiError(
          /invalid request/.test(reason) ? "not_found" : "unavailable",
          `tgtd could not open the backing store ${where} for ${request.target} (missing image or file, or no access to it; see tgtd's log)`,
          {
            subsystem,
            cause: new Error(`${lun.command}: exit ${lun.exitCode}: ${reason}`),
            details: { target: request.target, exitCode: lun.exitCode, reason },
          },
        );
      }
      for (const rule of aclOf(request.access)) {
        const flag = isInitiatorName(rule) ? "--initiator-name" : "--initiator-address";
        const bound = await tgtadm(["--mode", "target", "--op", "bind", "--tid", String(tid), flag, rule], {
          signal,
        });
        if (bound.exitCode !== 0) throw failure(`allow ${rule} on ${request.target}`, bound);
      }
      if (request.access.initiators === "ALL") {
        log.warn(
          { op: "export", target: request.target },
          "target is open to ALL initiators (explicit choice)",
        );
      }
      const chap = request.access.chap;
      if (chap) {
        await accountsLock(() => bindChap(tid, chap, signal));
        secrets.set(request.target, digest(chap.secret));
      } else {
        secrets.delete(request.target);
      }
    } catch (error) {
      // Leave no half-made target behind, even when the call was cancelled.
      await deleteTarget(tid, true).catch(() => undefined);
      known.delete(request.target);
      throw error;
    }
    known.set(request.target, { tid, accounts: request.access.chap ? [request.access.chap.user] : [] });
    return {
      target: request.target,
      portal: config.portal,
      port: config.port,
      lun: LUN,
      backing: reportedBacking(request.backing),
      sessions: 0,
    };
  };

  const exportOne = async (request: ExportRequest, signal?: AbortSignal): Promise<ExportedTarget> => {
    const made = await create(request, signal);
    if (made) return made;
    const existing = (await show(signal)).find((t) => t.name === request.target);
    if (!existing) throw clash(request);
    if (!backingOf(existing) && existing.sessions.length === 0) {
      // Half-made by a process killed between "target new" and "logicalunit new": it serves
      // nothing and list() does not show it, so make it again rather than refuse forever.
      log.warn({ op: "export", target: request.target, tid: existing.tid }, "replacing a half-made target");
      const deleted = await deleteTarget(existing.tid, true, signal);
      if (deleted.exitCode !== 0)
        throw failure(`delete target ${request.target}`, deleted, { target: request.target });
      const again = await create(request, signal);
      if (again) return again;
      throw clash(request);
    }
    if (!matches(existing, request)) throw clash(request);
    return view(existing, reportedBacking(request.backing));
  };

  return {
    name: "tgt",
    capabilities,

    targetNameFor(rbdName: string): string {
      return targetNameFor(rbdName, config.naming);
    },

    async export(request: ExportRequest, call: CallOptions = {}) {
      throwIfAborted(call.signal);
      const valid = validate(request);
      return perTarget(valid.target, async () => {
        throwIfAborted(call.signal);
        return exportOne(valid, call.signal);
      });
    },

    async unexport(target: string, call: CallOptions & { force?: boolean } = {}) {
      throwIfAborted(call.signal);
      const name = parseInput(TargetName, target, "target", subsystem);
      await perTarget(name, async () => {
        const force = call.force === true;
        const cached = known.get(name);
        let found: { tid: number; accounts: string[] } | undefined = cached;
        let deleted: CommandResult | undefined;
        if (cached) {
          // Delete by the tid we know; tgtd itself refuses (still active) while initiators are
          // logged in and no force is given.
          deleted = await deleteTarget(cached.tid, force, call.signal);
          if (deleted.exitCode !== 0 && /can't find the target/.test(deleted.stderr)) {
            known.delete(name);
            deleted = undefined;
          }
        }
        if (deleted === undefined) {
          const target = (await show(call.signal)).find((t) => t.name === name);
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
          found = { tid: target.tid, accounts: target.accounts };
          deleted = await deleteTarget(target.tid, force, call.signal);
        }
        if (deleted.exitCode !== 0 || !found) {
          const error = failure(`delete target ${name}`, deleted, { target: name });
          throw error.code === "busy"
            ? new BmiError("busy", `target ${name} has initiators logged in; log them out or force`, {
                subsystem,
                cause: error,
                details: { target: name },
              })
            : error;
        }
        known.delete(name);
        secrets.delete(name);
        await dropUnusedAccounts(found.accounts, call.signal);
        log.debug({ op: "unexport", target: name, tid: found.tid, forced: force }, "target deleted");
      });
    },

    async list(call: CallOptions = {}) {
      throwIfAborted(call.signal);
      const out: ExportedTarget[] = [];
      for (const target of await show(call.signal)) {
        const backing = backingOf(target);
        // A target without our LUN 1 is not one we serve (someone else's, or half-made).
        if (backing) out.push(view(target, backing));
      }
      return out;
    },

    async sessions(targetName: string, call: CallOptions = {}) {
      throwIfAborted(call.signal);
      const name = parseInput(TargetName, targetName, "target", subsystem);
      const target = (await show(call.signal)).find((t) => t.name === name);
      if (!target) {
        throw new BmiError("not_found", `target ${name} does not exist`, {
          subsystem,
          details: { target: name },
        });
      }
      // tgt numbers I_T nexuses in login order, so ids tell the firmware's session from the OS's.
      return target.sessions
        .map((s) => ({
          id: s.nexus,
          initiator: s.initiator,
          addresses: [...s.addresses],
          ...(s.alias === undefined ? {} : { alias: s.alias }),
        }))
        .sort((a, b) => a.id - b.id);
    },

    async restore(requests: ExportRequest[], call: CallOptions = {}) {
      throwIfAborted(call.signal);
      const valid = requests.map(validate);
      const targets = await show(call.signal);
      const present = new Set(targets.map((t) => t.name));
      const created: string[] = [];
      for (const request of valid) {
        throwIfAborted(call.signal);
        if (present.has(request.target)) continue;
        await perTarget(request.target, () => exportOne(request, call.signal));
        present.add(request.target);
        created.push(request.target);
      }
      log.info({ op: "restore", created: created.length, known: valid.length }, "targets restored");
      return created;
    },
  };
}

/** Registers a tgt ExportDriver in a container under `TOKENS.export`. */
export const registerTgtExport = registrar(TOKENS.export, createTgtExport);
