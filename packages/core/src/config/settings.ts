import type { Firmware } from "../domain/model.js";
import type { ExportAccess } from "../ports/export.js";

/**
 * What the operations need to know, independent of where it came from (`bmi_config.cfg`, code,
 * a test). `settingsFromConfig()` derives it from a loaded config.
 */
export interface BmiSettings {
  /** `[bmi] uid`: RBD names are `<uid>img<id>`. */
  uid: string;
  /** `[bmi] snapshot`: the protected snapshot every clone is made from (S). */
  snapshotName: string;
  iscsi: {
    /** The portal address written into boot scripts (`[iscsi] ip`); may differ from the BMI host. */
    portal: string;
    port: number;
    lun: number;
    /**
     * Target naming: `{ iqnPrefix }` gives `<prefix>:<rbd name>`; `"bare"` keeps the original
     * BMI's bare RBD names so nodes booted by an existing BMI keep booting.
     */
    naming: { iqnPrefix: string } | "bare";
    /** Default access rules for new targets. `initiators: "ALL"` is logged as a warning. */
    access: ExportAccess;
    /**
     * `address` (`[iscsi] per_node_access`): provision narrows a node's target to the fixed
     * address the boot driver gave the node (`BootEntry.address`); deprovision restores `access`.
     */
    perNode?: "address";
  };
  /** The HIL network a node's NIC joins while provisioned; null = leave networks alone. */
  provisioningNetwork: string | null;
  /** HIL channel for the provisioning network (the original used `vlan/native`). */
  provisioningChannel?: string;
  /** Firmware assumed when a provision request names none. */
  defaultFirmware: Firmware;
  /** The project the admin CLI acts as (the original's `bmi_infra`). */
  adminProject: string;
  /** Bound on external commands running at once (CON-4). */
  concurrency: number;
  /** How long a per-node / per-image lock lease lasts before another process may take it over. */
  lockLeaseMs: number;
}

export const DEFAULT_IQN_PREFIX = "iqn.2026-11.org.bmi";

/** Settings for tests and labs; every field can be overridden. */
export function defaultSettings(overrides: Partial<BmiSettings> = {}): BmiSettings {
  return {
    uid: "1",
    snapshotName: "bmi_created_snapshot",
    iscsi: {
      portal: "127.0.0.1",
      port: 3260,
      lun: 1,
      naming: { iqnPrefix: DEFAULT_IQN_PREFIX },
      access: { initiators: "ALL" },
    },
    provisioningNetwork: null,
    defaultFirmware: "bios",
    adminProject: "bmi_infra",
    concurrency: 8,
    lockLeaseMs: 10 * 60_000,
    ...overrides,
  };
}

/** The target name of an RBD image under the configured naming. */
export function targetNameFor(rbdName: string, naming: BmiSettings["iscsi"]["naming"]): string {
  return naming === "bare" ? rbdName : `${naming.iqnPrefix}:${rbdName}`;
}
