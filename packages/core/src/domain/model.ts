import type { MacAddress } from "./names.js";

/** A BMI project (tenant). Compatible with the original `project` table. */
export interface Project {
  id: number;
  name: string;
}

/** What an image row is; see the spec's §2.3 table. */
export type ImageKind = "golden" | "disk" | "snapshot";

/**
 * A row of the original `image` table, plus what we record per image so a config change cannot
 * silently orphan it (COR-10): the uid and clone-source snapshot name it was created with.
 */
export interface Image {
  id: number;
  name: string;
  projectId: number;
  parentId: number | null;
  isPublic: boolean;
  isSnapshot: boolean;
  /** The RBD image name, `<uid>img<id>` for images BMI created. */
  cephName: string;
  kind: ImageKind;
}

/** A disk is a CoW clone of an image, exported as an iSCSI target. */
export interface Disk extends Image {
  kind: "disk";
  target: TargetInfo | null;
  /** The node this disk boots, if provisioned (a disk serves at most one node: CON-2). */
  node: string | null;
}

/** How a node's initiator reaches a disk. */
export interface TargetInfo {
  /** Full IQN, or the bare RBD name in compatibility mode. */
  name: string;
  /** The address written into boot scripts (`[iscsi] ip`). */
  portal: string;
  port: number;
  lun: number;
}

export type Firmware = "bios" | "uefi";

/** One NIC of a node as the isolation service reports it. */
export interface Nic {
  label: string;
  mac: MacAddress;
}

/** A node as the isolation service reports it. */
export interface NodeInfo {
  name: string;
  /** The owning project, or null for a free node. */
  project: string | null;
  nics: Nic[];
  /**
   * NICs the service knows whose MAC address is not one (HIL never validates `macaddr`): they
   * cannot get boot files, so they are not in `nics`, but a request naming one is told why.
   */
  unusableNics?: string[];
}

/** A provisioned node: which disk, NIC, target and boot files serve it (OPS-1). */
export interface Provisioning {
  node: string;
  project: string;
  disk: string;
  diskId: number;
  nic: string;
  mac: MacAddress;
  firmware: Firmware;
  target: TargetInfo;
  /** The provisioning network the NIC was attached to, if any. */
  network: string | null;
  createdAt: string;
}
