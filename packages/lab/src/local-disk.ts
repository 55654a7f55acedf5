import { join } from "node:path";
import { execa } from "execa";
import { makeTempDir } from "./process.js";
import { type BootVmOptions, type BootVmResult, bootVm } from "./qemu.js";

export type LocalOverlayBootOptions = Omit<BootVmOptions, "disk" | "diskFormat" | "tftpRoot" | "bootfile"> & {
  /** The raw image to boot; it is only read (the VM writes into a qcow2 overlay). */
  image: string;
};

/**
 * Boots a raw image as a node's local disk: a throwaway qcow2 overlay backed by it (`qemu-img
 * create -b`), so the VM's writes never reach the image, e.g. a golden image kept in a cache.
 * The overlay is removed afterwards, whatever happened. The baseline for an iSCSI boot of the
 * same image: the same firmware, bootloader, kernel and initramfs, a disk on the host instead.
 */
export async function bootLocalOverlay(options: LocalOverlayBootOptions): Promise<BootVmResult> {
  const { image, ...vm } = options;
  const temp = await makeTempDir("local-disk");
  try {
    const overlay = join(temp.path, "overlay.qcow2");
    await execa("qemu-img", ["create", "-f", "qcow2", "-F", "raw", "-b", image, overlay], {
      timeout: 60_000,
    });
    // A NIC as the node has one: an initramfs that brings the network up finds it at once.
    return await bootVm({ ...vm, disk: overlay, diskFormat: "qcow2", diskNic: true });
  } finally {
    await temp.remove();
  }
}
