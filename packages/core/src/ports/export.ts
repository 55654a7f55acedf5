import type { CallOptions } from "./common.js";
import type { Backing, BackingKind } from "./storage.js";

export interface ExportCapabilities {
  /** Backing kinds this driver can serve; the core refuses to wire a storage driver it can't serve. */
  backings: readonly BackingKind[];
  /** Initiator ACLs by address or initiator name. */
  acl: boolean;
  chap: boolean;
}

/** One initiator logged in to a target (tgt's I_T nexus). Ids grow with each new login. */
export interface InitiatorSession {
  id: number;
  /** The initiator's IQN: iPXE's, then the OS's (the same one, from the iBFT, in a new session). */
  initiator: string;
  addresses: string[];
  /**
   * The InitiatorAlias it sent, `null` if none; absent when the driver cannot tell. Tells the
   * programs apart: iPXE sends none, open-iscsi its host name ("(none)" in an initramfs).
   */
  alias?: string | null;
}

/**
 * Who may log in. BMI opened every target to ALL; we keep that possible, but only as an explicit
 * choice (SEC-6), which the core logs.
 */
export interface ExportAccess {
  initiators: "ALL" | { addresses?: string[]; names?: string[] };
  /** Incoming CHAP. The secret is never logged nor put into process arguments where avoidable. */
  chap?: { user: string; secret: string };
}

export interface ExportRequest {
  /** The target name, decided by the core (IQN with the configured prefix, or bare in compat mode). */
  target: string;
  backing: Backing;
  access: ExportAccess;
}

/** A target as the target server has it. */
export interface ExportedTarget {
  target: string;
  /** Where initiators connect (the portal the daemon listens on). */
  portal: string;
  port: number;
  /** BMI serves the disk as LUN 1 (LUN 0 is tgt's controller). */
  lun: number;
  backing: Backing;
  /** Logged-in initiator sessions; unexport without `force` refuses while > 0. */
  sessions: number;
  /** Who may log in, as the daemon has it (drivers with ACLs report it; reconcile compares it). */
  initiators?: ExportAccess["initiators"];
}

/**
 * An iSCSI target server (tgt in production). Errors: `already_exists`, `not_found`, `busy`
 * (sessions open), `invalid_input`, `unavailable`, `timeout`, with subsystem `export`.
 */
export interface ExportDriver {
  readonly name: string;
  readonly capabilities: ExportCapabilities;

  /** Creates the target and LUN 1 and applies the access rules. Idempotent for an identical request. */
  export(request: ExportRequest, options?: CallOptions): Promise<ExportedTarget>;
  /** Removes the target. Throws `busy` with sessions unless `force`; `not_found` if absent. */
  unexport(target: string, options?: CallOptions & { force?: boolean }): Promise<void>;
  list(options?: CallOptions): Promise<ExportedTarget[]>;
  /**
   * Replaces the initiator rules of an existing target (CHAP stays as it is); `not_found` if it
   * does not exist. Logged-in sessions are not cut: the rules apply to the next login.
   */
  setInitiators?(
    target: string,
    initiators: ExportAccess["initiators"],
    options?: CallOptions,
  ): Promise<void>;
  /**
   * Re-creates every given target that the daemon lost (after a restart); leaves the ones that
   * exist. Returns the targets it created.
   */
  restore(requests: ExportRequest[], options?: CallOptions): Promise<string[]>;
  /**
   * The initiators logged in to a target, oldest first (`not_found` if it does not exist). Lets
   * BMI watch a node boot with no agent on it: the firmware's login, then the OS's.
   */
  sessions?(target: string, options?: CallOptions): Promise<InitiatorSession[]>;
}

/** Whether two sets of initiator rules admit the same initiators (order does not matter). */
export function sameInitiators(a: ExportAccess["initiators"], b: ExportAccess["initiators"]): boolean {
  const key = (x: ExportAccess["initiators"]) =>
    x === "ALL" ? "ALL" : JSON.stringify([[...(x.addresses ?? [])].sort(), [...(x.names ?? [])].sort()]);
  return key(a) === key(b);
}
