import type { BmiConfig, CommandRunner } from "@bmi/core";
import type { CephStorageOptions } from "./ceph-storage.js";

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
