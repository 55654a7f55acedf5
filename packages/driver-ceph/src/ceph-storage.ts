import { resolve } from "node:path";
import {
  type Backing,
  BmiError,
  type CallOptions,
  type CommandResult,
  type CommandRunner,
  createExecaRunner,
  type ImageDetails,
  parseInput,
  registrar,
  type SnapshotDetails,
  type SnapshotRef,
  type StorageDriver,
  TOKENS,
} from "@bmi/core";
import { z } from "zod";
import {
  CommonOptionsSchema,
  cephTimeoutSeconds,
  FilePath,
  imageName,
  rbdBacking,
  snapRef,
  TRASH_NAME,
} from "./options.js";
import { rbdError } from "./rbd-errors.js";
import { RbdChildren, RbdInfo, RbdList, RbdSnapList } from "./rbd-json.js";

/** Options of {@link createCephStorage}. Plain values; a config loader maps `[ceph]` onto them. */
export interface CephStorageOptions {
  /** The RBD pool BMI's images live in. */
  pool: string;
  /** ceph.conf path (`--conf`); default: Ceph's own lookup (CEPH_CONF, /etc/ceph/ceph.conf). */
  conf?: string;
  /** Client id without `client.` (`--id`), e.g. `bmi`. Default: Ceph's default (`admin`). */
  clientId?: string;
  /** Keyring path (`--keyring`); default: the `keyring =` of the client's conf section. */
  keyring?: string;
  /**
   * Bound on every metadata call (default 30 s). rbd's own mount / mon-op / OSD-op timeouts are
   * set a little below it, so an unreachable cluster gives a clear `timeout` error, not a hang.
   */
  timeoutMs?: number;
  /** Bound on calls that move data: flatten, copy, import, export (default 30 min). */
  dataTimeoutMs?: number;
  /** Clone format: 1 (parent snapshot must be protected; the original BMI) or 2. Default 1. */
  cloneFormat?: 1 | 2;
  /** The rbd binary (default `rbd` from PATH). */
  rbdPath?: string;
  /** Runs the commands (default: execa). Inject a recording runner in tests, a limited one in production. */
  runner?: CommandRunner;
}

const OptionsSchema = CommonOptionsSchema.extend({
  rbdPath: FilePath.default("rbd"),
  runner: z
    .custom<CommandRunner>((v) => typeof v === "function", { error: "must be a CommandRunner function" })
    .optional(),
});

/** A StorageDriver over the `rbd` CLI (argument arrays only, every call bounded in time). */
export function createCephStorage(options: CephStorageOptions): StorageDriver {
  const o = parseInput(OptionsSchema, options, "ceph storage options", "storage");
  const runner = o.runner ?? createExecaRunner({ subsystem: "storage", timeoutMs: o.timeoutMs });
  const pool = o.pool;
  // rbd's own timeouts fire before the process is killed, so the reason comes from rbd (exit 110).
  const cephTimeoutSec = cephTimeoutSeconds(o.timeoutMs);
  const globalArgs = [
    ...(o.conf ? ["--conf", o.conf] : []),
    ...(o.clientId ? ["--id", o.clientId] : []),
    ...(o.keyring ? ["--keyring", o.keyring] : []),
    "--client-mount-timeout",
    cephTimeoutSec,
    "--rados-mon-op-timeout",
    cephTimeoutSec,
    "--rados-osd-op-timeout",
    cephTimeoutSec,
  ];

  const spec = (image: string) => `${pool}/${image}`;
  const snapSpec = (ref: SnapshotRef) => `${pool}/${ref.image}@${ref.snapshot}`;

  /** Runs rbd; returns the result whatever the exit code. Runner errors become storage errors. */
  async function rbd(args: readonly string[], call: CallOptions | undefined, timeoutMs = o.timeoutMs) {
    if (call?.signal?.aborted) {
      throw new BmiError("cancelled", `rbd ${args[0]} was cancelled before it started`, {
        subsystem: "storage",
      });
    }
    try {
      return await runner(o.rbdPath, [...globalArgs, ...args], { timeoutMs, signal: call?.signal });
    } catch (error) {
      if (error instanceof BmiError) {
        if (error.subsystem === "storage") throw error;
        throw new BmiError(error.code, error.message, {
          subsystem: "storage",
          cause: error,
          retryable: error.retryable,
          details: error.details,
        });
      }
      throw new BmiError("unavailable", `could not run ${o.rbdPath} ${args[0]}`, {
        subsystem: "storage",
        cause: error,
      });
    }
  }

  /** Runs rbd and throws a mapped error on a non-zero exit. */
  async function rbdOk(
    args: readonly string[],
    what: string,
    call: CallOptions | undefined,
    details = {},
    timeoutMs?: number,
  ) {
    const result = await rbd(args, call, timeoutMs);
    if (result.exitCode !== 0) throw rbdError(result, what, details);
    return result;
  }

  function parseJson<S extends z.ZodType>(schema: S, result: CommandResult, what: string): z.output<S> {
    const text = result.stdout.trim();
    let value: unknown;
    try {
      value = text === "" ? [] : JSON.parse(text);
    } catch (cause) {
      throw new BmiError("internal", `${what}: rbd printed output that is not JSON`, {
        subsystem: "storage",
        cause,
        details: { command: result.command, stdout: text.slice(0, 200) },
      });
    }
    const parsed = schema.safeParse(value);
    if (!parsed.success) {
      throw new BmiError("internal", `${what}: rbd printed JSON of an unexpected shape`, {
        subsystem: "storage",
        cause: parsed.error,
        details: { command: result.command, stdout: text.slice(0, 200) },
      });
    }
    return parsed.data;
  }

  async function infoOf(image: string, call?: CallOptions): Promise<RbdInfo> {
    const result = await rbdOk(["info", "--format", "json", spec(image)], `rbd info ${spec(image)}`, call, {
      image,
    });
    return parseJson(RbdInfo, result, `rbd info ${spec(image)}`);
  }

  async function trashedSnapshotName(image: string, uuid: string, call?: CallOptions) {
    const what = `rbd snap ls --all ${spec(image)}`;
    const result = await rbdOk(["snap", "ls", "--all", "--format", "json", spec(image)], what, call, {
      image,
    });
    return parseJson(RbdSnapList, result, what).find((s) => s.name === uuid)?.namespace?.original_name;
  }

  return {
    name: "ceph",
    capabilities: { cowClone: true, liveSnapshot: true, cloneUnprotected: o.cloneFormat === 2 },

    async exists(image, call) {
      const name = imageName(image);
      const result = await rbd(["info", "--format", "json", spec(name)], call);
      if (result.exitCode === 0) return true;
      const error = rbdError(result, `rbd info ${spec(name)}`, { image: name });
      if (error.code === "not_found" && error.details.reason === "missing") return false;
      throw error;
    },

    async list(call) {
      const result = await rbdOk(["ls", "--format", "json", pool], `rbd ls ${pool}`, call, { pool });
      return parseJson(RbdList, result, `rbd ls ${pool}`).sort();
    },

    async info(image, call): Promise<ImageDetails> {
      const name = imageName(image);
      const info = await infoOf(name, call);
      const parent = info.parent;
      if (!parent) return { name, sizeBytes: info.size, parent: null };
      // A parent in another pool is named pool/image so it is never mistaken for one of ours.
      const parentImage = parent.pool === pool ? parent.image : `${parent.pool}/${parent.image}`;
      let snapshot = parent.snapshot;
      if ((parent.trash || TRASH_NAME.test(parent.snapshot)) && parent.pool === pool) {
        // Clone v2: a removed parent snapshot lives on in the trash under a uuid (and Pacific still
        // prints "trash": false); report the name it had.
        snapshot = (await trashedSnapshotName(parent.image, parent.snapshot, call)) ?? snapshot;
      }
      return { name, sizeBytes: info.size, parent: { image: parentImage, snapshot } };
    },

    async create(image, sizeBytes, call) {
      const name = imageName(image);
      const size = parseInput(z.number().int().nonnegative(), sizeBytes, "sizeBytes", "storage");
      // rbd's --size defaults to MiB; the B suffix makes it bytes.
      await rbdOk(["create", "--size", `${size}B`, spec(name)], `rbd create ${spec(name)}`, call, {
        image: name,
      });
    },

    async remove(image, call) {
      const name = imageName(image);
      await rbdOk(["rm", "--no-progress", spec(name)], `rbd rm ${spec(name)}`, call, { image: name });
    },

    async clone(parent, child, call) {
      const ref = snapRef(parent, "parent");
      const name = imageName(child, "child");
      await rbdOk(
        ["clone", "--rbd-default-clone-format", String(o.cloneFormat), snapSpec(ref), spec(name)],
        `rbd clone ${snapSpec(ref)} ${spec(name)}`,
        call,
        { ...ref, child: name },
      );
    },

    async flatten(image, call) {
      const name = imageName(image);
      const what = `rbd flatten ${spec(name)}`;
      const result = await rbd(["flatten", "--no-progress", spec(name)], call, o.dataTimeoutMs);
      if (result.exitCode === 0) return;
      const error = rbdError(result, what, { image: name });
      // Already flat: the wanted state holds, so a retried flatten succeeds.
      if (error.details.reason === "no_parent") return;
      throw error;
    },

    async copy(source, target, call) {
      const from =
        typeof source === "string" ? spec(imageName(source, "source")) : snapSpec(snapRef(source, "source"));
      const to = imageName(target, "target");
      await rbdOk(
        ["cp", "--no-progress", from, spec(to)],
        `rbd cp ${from} ${spec(to)}`,
        call,
        { target: to },
        o.dataTimeoutMs,
      );
    },

    async createSnapshot(ref, call) {
      const r = snapRef(ref);
      await rbdOk(["snap", "create", "--no-progress", snapSpec(r)], `rbd snap create ${snapSpec(r)}`, call, {
        ...r,
      });
    },

    async listSnapshots(image, call): Promise<SnapshotDetails[]> {
      const name = imageName(image);
      const what = `rbd snap ls ${spec(name)}`;
      const result = await rbdOk(["snap", "ls", "--format", "json", spec(name)], what, call, { image: name });
      return parseJson(RbdSnapList, result, what)
        .filter((s) => (s.namespace?.type ?? "user") === "user")
        .map((s) => ({ name: s.name, protected: s.protected ?? false }));
    },

    async removeSnapshot(ref, call) {
      const r = snapRef(ref);
      await rbdOk(["snap", "rm", "--no-progress", snapSpec(r)], `rbd snap rm ${snapSpec(r)}`, call, { ...r });
    },

    async protectSnapshot(ref, call) {
      const r = snapRef(ref);
      const result = await rbd(["snap", "protect", snapSpec(r)], call);
      if (result.exitCode === 0) return;
      const error = rbdError(result, `rbd snap protect ${snapSpec(r)}`, { ...r });
      if (error.details.reason === "already_protected") return;
      throw error;
    },

    async unprotectSnapshot(ref, call) {
      const r = snapRef(ref);
      const result = await rbd(["snap", "unprotect", snapSpec(r)], call);
      if (result.exitCode === 0) return;
      const error = rbdError(result, `rbd snap unprotect ${snapSpec(r)}`, { ...r });
      if (error.details.reason === "already_unprotected") return;
      throw error;
    },

    async children(ref, call) {
      const r = snapRef(ref);
      const what = `rbd children ${snapSpec(r)}`;
      const result = await rbdOk(["children", "--format", "json", snapSpec(r)], what, call, { ...r });
      return parseJson(RbdChildren, result, what)
        .map((c) => (c.pool === pool && !c.pool_namespace ? c.image : `${c.pool}/${c.image}`))
        .sort();
    },

    backingFor: (image): Backing => rbdBacking(pool, o, image),

    async importFile(path, image, call) {
      const file = resolve(parseInput(FilePath, path, "path", "storage"));
      const name = imageName(image);
      await rbdOk(
        ["import", "--no-progress", file, spec(name)],
        `rbd import ${spec(name)}`,
        call,
        { image: name },
        o.dataTimeoutMs,
      );
    },

    async exportFile(image, path, call) {
      const name = imageName(image);
      const file = resolve(parseInput(FilePath, path, "path", "storage"));
      await rbdOk(
        ["export", "--no-progress", spec(name), file],
        `rbd export ${spec(name)}`,
        call,
        { image: name },
        o.dataTimeoutMs,
      );
    },
  };
}

/** Registers a Ceph StorageDriver in a tsyringe container under `TOKENS.storage`. */
export const registerCephStorage = registrar(TOKENS.storage, createCephStorage);
