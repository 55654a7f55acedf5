import type { Firmware, TargetInfo } from "../domain/model.js";
import type { CallOptions } from "./common.js";

export interface BootCapabilities {
  /** Firmware types the driver writes entries for. */
  firmware: readonly Firmware[];
}

export interface BootSpec {
  node: string;
  /** Normalised lower-case MACs: one per-MAC entry each. */
  macs: string[];
  target: TargetInfo;
  firmware: Firmware;
  /** The label shown in menus (the original used the disk name). */
  label: string;
}

/** The boot files of one node, as found on disk. */
export interface BootEntry {
  node: string;
  macs: string[];
  /** Parsed back from the node's script; null when the script is missing or unreadable. */
  target: TargetInfo | null;
  firmware: Firmware;
  /** Every file that belongs to the node, relative to the root. */
  files: string[];
  /**
   * The fixed address the provisioning network's DHCP server gives the node's MACs, when the
   * driver hands out addresses (the PXE driver's `nodeAddresses`); what per-node iSCSI access
   * restricts the node's target to.
   */
  address?: string;
}

/**
 * Writes the files that make a node boot from its target (iPXE script, per-MAC pxelinux/UEFI
 * entries) under one root. Writes are atomic; nothing is written outside the root.
 */
export interface BootDriver {
  readonly name: string;
  readonly capabilities: BootCapabilities;

  /** Writes (or replaces) the node's boot files. */
  write(spec: BootSpec, options?: CallOptions): Promise<BootEntry>;
  /** Removes every boot file of the node; a node without files is fine. */
  remove(node: string, options?: CallOptions): Promise<void>;
  /** The node's boot files, or null. */
  read(node: string, options?: CallOptions): Promise<BootEntry | null>;
  list(options?: CallOptions): Promise<BootEntry[]>;
}
