import type { BmiConfig, CommandRunner, Logger } from "@bmi/core";
import type { TgtExportOptions } from "./tgt-export.js";

/** The driver's options from a loaded `bmi_config.cfg` (`[iscsi]`, and `[fs]` for rbd backings). */
export function tgtOptionsFromConfig(
  config: BmiConfig,
  extra: { runner?: CommandRunner; logger?: Logger } = {},
): TgtExportOptions {
  const { iscsi, fs } = config;
  return {
    portal: iscsi.ip,
    port: iscsi.port,
    controlPort: iscsi.tgt_control_port,
    timeoutMs: iscsi.timeout_ms,
    naming: iscsi.bare_target_names ? "bare" : { iqnPrefix: iscsi.iqn_prefix },
    rbd: { conf: fs.conf_file, clientId: fs.id },
    ...extra,
  };
}
