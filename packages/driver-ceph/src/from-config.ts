import type { BmiConfig, CommandRunner, StorageDriver } from "@bmi/core";
import type { CephStorageOptions } from "./ceph-storage.js";
import { createCephStorage } from "./ceph-storage.js";
import { createLibrbdStorage } from "./librbd-storage.js";

/** The driver's options from a loaded `bmi_config.cfg` (`[fs]`, alias `[ceph]`). */
export function cephOptionsFromConfig(config: BmiConfig, runner?: CommandRunner): CephStorageOptions {
  const { fs } = config;
  return {
    pool: fs.pool,
    conf: fs.conf_file,
    clientId: fs.id,
    ...(fs.keyring === null ? {} : { keyring: fs.keyring }),
    timeoutMs: fs.timeout_ms,
    ...(runner ? { runner } : {}),
  };
}

/** The back end `[ceph] client` names: `librbd` (in-process) or `cli` (the rbd binary; the runner applies). */
export function createStorageFromConfig(config: BmiConfig, runner?: CommandRunner): StorageDriver {
  const options = cephOptionsFromConfig(config, runner);
  if (config.fs.client === "librbd") {
    const { runner: _unused, ...librbd } = options;
    return createLibrbdStorage(librbd);
  }
  return createCephStorage(options);
}
