import { resolve } from "node:path";
import {
  type Backing,
  type CallOptions,
  type CommandRunner,
  type ImageDetails,
  registrar,
  type SnapshotDetails,
  type SnapshotRef,
  type StorageDriver,
  TOKENS,
} from "@bmi/core";
import { z } from "zod";
import { CommonOptionsSchema, FilePath, imageName, kit, rbdBacking, snapRef, TRASH_NAME } from "./options.js";
import { inDriverPool, nameInPool } from "./pool-names.js";
import { createRbdCli, parseJson, type RbdCli } from "./rbd-cli.js";
import { rbdError } from "./rbd-errors.js";
import { pooledJson, RbdChildren, RbdInfo, RbdList, RbdSnapList } from "./rbd-json.js";

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

const filePath = (path: unknown) => resolve(kit.input(FilePath, path, "path"));

/** A StorageDriver over the `rbd` CLI (argument arrays only, every call bounded in time). */
export function createCephStorage(options: CephStorageOptions): StorageDriver {
  const o = kit.input(OptionsSchema, options, "ceph storage options");
  const cli = createRbdCli(o);
  const { spec, snapSpec } = cli;
  const dataMs = o.dataTimeoutMs;
  return {
    name: "ceph",
    capabilities: { cowClone: true, liveSnapshot: true, cloneUnprotected: o.cloneFormat === 2 },
    exists: (image, call) => exists(cli, imageName(image), call),
    async list(call) {
      const result = await cli.ok(["ls", "--format", "json", o.pool], `rbd ls ${o.pool}`, call, {
        pool: o.pool,
      });
      return parseJson(RbdList, result, `rbd ls ${o.pool}`).sort();
    },
    info: (image, call) => info(cli, imageName(image), call),
    async create(image, sizeBytes, call) {
      const name = imageName(image);
      const size = kit.input(z.number().int().nonnegative(), sizeBytes, "sizeBytes");
      // rbd's --size defaults to MiB; the B suffix makes it bytes.
      await cli.ok(["create", "--size", `${size}B`, spec(name)], `rbd create ${spec(name)}`, call, {
        image: name,
      });
    },
    async remove(image, call) {
      const name = imageName(image);
      await cli.ok(["rm", "--no-progress", spec(name)], `rbd rm ${spec(name)}`, call, { image: name });
    },
    async clone(parent, child, call) {
      const ref = snapRef(parent, "parent");
      const name = imageName(child, "child");
      const args = ["clone", "--rbd-default-clone-format", String(o.cloneFormat), snapSpec(ref), spec(name)];
      await cli.ok(args, `rbd clone ${snapSpec(ref)} ${spec(name)}`, call, { ...ref, child: name });
    },
    async flatten(image, call) {
      const name = imageName(image);
      const args = ["flatten", "--no-progress", spec(name)];
      await cli.okUnless("no_parent", args, `rbd flatten ${spec(name)}`, call, { image: name }, dataMs);
    },
    async copy(source, target, call) {
      const from =
        typeof source === "string" ? spec(imageName(source, "source")) : snapSpec(snapRef(source, "source"));
      const to = imageName(target, "target");
      await cli.ok(
        ["cp", "--no-progress", from, spec(to)],
        `rbd cp ${from} ${spec(to)}`,
        call,
        { target: to },
        dataMs,
      );
    },
    async createSnapshot(ref, call) {
      const r = snapRef(ref);
      await cli.ok(["snap", "create", "--no-progress", snapSpec(r)], `rbd snap create ${snapSpec(r)}`, call, {
        ...r,
      });
    },
    listSnapshots: (image, call) => listSnapshots(cli, imageName(image), call),
    async removeSnapshot(ref, call) {
      const r = snapRef(ref);
      await cli.ok(["snap", "rm", "--no-progress", snapSpec(r)], `rbd snap rm ${snapSpec(r)}`, call, {
        ...r,
      });
    },
    async protectSnapshot(ref, call) {
      const r = snapRef(ref);
      const what = `rbd snap protect ${snapSpec(r)}`;
      await cli.okUnless("already_protected", ["snap", "protect", snapSpec(r)], what, call, { ...r });
    },
    async unprotectSnapshot(ref, call) {
      const r = snapRef(ref);
      const what = `rbd snap unprotect ${snapSpec(r)}`;
      await cli.okUnless("already_unprotected", ["snap", "unprotect", snapSpec(r)], what, call, { ...r });
    },
    children: (ref, call) => children(cli, snapRef(ref), call),
    backingFor: (image): Backing => rbdBacking(o.pool, o, image),
    async importFile(path, image, call) {
      const file = filePath(path);
      const name = imageName(image);
      const args = ["import", "--no-progress", file, spec(name)];
      await cli.ok(args, `rbd import ${spec(name)}`, call, { image: name }, dataMs);
    },
    async exportFile(image, path, call) {
      const name = imageName(image);
      const file = filePath(path);
      const args = ["export", "--no-progress", spec(name), file];
      await cli.ok(args, `rbd export ${spec(name)}`, call, { image: name }, dataMs);
    },
  };
}

async function exists(cli: RbdCli, name: string, call: CallOptions | undefined): Promise<boolean> {
  const result = await cli.run(["info", "--format", "json", cli.spec(name)], call);
  if (result.exitCode === 0) return true;
  const error = rbdError(result, `rbd info ${cli.spec(name)}`, { image: name });
  if (error.code === "not_found" && error.details.reason === "missing") return false;
  throw error;
}

async function info(cli: RbdCli, name: string, call: CallOptions | undefined): Promise<ImageDetails> {
  const what = `rbd info ${cli.spec(name)}`;
  const result = await cli.ok(["info", "--format", "json", cli.spec(name)], what, call, { image: name });
  const { size, parent } = parseJson(RbdInfo, result, what);
  if (!parent) return { name, sizeBytes: size, parent: null };
  const at = pooledJson(parent);
  const parentImage = nameInPool(cli.pool, at);
  let snapshot = parent.snapshot;
  if ((parent.trash || TRASH_NAME.test(parent.snapshot)) && inDriverPool(cli.pool, at)) {
    // Clone v2: a removed parent snapshot lives on in the trash under a uuid (and Pacific still
    // prints "trash": false); report the name it had.
    snapshot = (await trashedSnapshotName(cli, parent.image, parent.snapshot, call)) ?? snapshot;
  }
  return { name, sizeBytes: size, parent: { image: parentImage, snapshot } };
}

async function trashedSnapshotName(cli: RbdCli, image: string, uuid: string, call: CallOptions | undefined) {
  const what = `rbd snap ls --all ${cli.spec(image)}`;
  const result = await cli.ok(["snap", "ls", "--all", "--format", "json", cli.spec(image)], what, call, {
    image,
  });
  return parseJson(RbdSnapList, result, what).find((s) => s.name === uuid)?.namespace?.original_name;
}

async function listSnapshots(
  cli: RbdCli,
  name: string,
  call: CallOptions | undefined,
): Promise<SnapshotDetails[]> {
  const what = `rbd snap ls ${cli.spec(name)}`;
  const result = await cli.ok(["snap", "ls", "--format", "json", cli.spec(name)], what, call, {
    image: name,
  });
  return parseJson(RbdSnapList, result, what)
    .filter((s) => (s.namespace?.type ?? "user") === "user")
    .map((s) => ({ name: s.name, protected: s.protected ?? false }));
}

async function children(cli: RbdCli, r: SnapshotRef, call: CallOptions | undefined): Promise<string[]> {
  const what = `rbd children ${cli.snapSpec(r)}`;
  const result = await cli.ok(["children", "--format", "json", cli.snapSpec(r)], what, call, { ...r });
  return parseJson(RbdChildren, result, what)
    .map((c) => nameInPool(cli.pool, pooledJson(c)))
    .sort();
}

/** Registers a Ceph StorageDriver in a tsyringe container under `TOKENS.storage`. */
export const registerCephStorage = registrar(TOKENS.storage, createCephStorage);
