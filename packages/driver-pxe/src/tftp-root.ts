import { copyFile, mkdir, stat } from "node:fs/promises";
import { basename, isAbsolute, resolve } from "node:path";
import { BmiError, safeJoin, writeFileAtomic } from "@bmi/core";
import { renderDispatcher } from "./files.js";

/** A static TFTP-root file and where Debian installs it. */
export interface StaticBootFile {
  /** Name in the TFTP root. */
  name: string;
  /** Candidate source paths, first existing wins. */
  sources: readonly string[];
  /** The Debian package that ships it, for the error message. */
  debianPackage: string;
  /** Needed by which chain. */
  purpose: string;
}

const SYSLINUX_BIOS = "/usr/lib/syslinux/modules/bios";

/**
 * What the boot chains need in the TFTP root, from Debian's packages (never downloaded):
 * BIOS PXE → pxelinux.0 (+ ldlinux/menu/libutil .c32) → ipxe.lkrn; or PXE → undionly.kpxe;
 * UEFI → ipxe.efi / snponly.efi. chain.c32, mboot.c32 and memdisk complete the original's set.
 */
export const STATIC_BOOT_FILES: readonly StaticBootFile[] = [
  {
    name: "pxelinux.0",
    sources: ["/usr/lib/PXELINUX/pxelinux.0"],
    debianPackage: "pxelinux",
    purpose: "bios",
  },
  ...["ldlinux.c32", "menu.c32", "libutil.c32", "chain.c32", "mboot.c32", "libcom32.c32"].map((name) => ({
    name,
    sources: [`${SYSLINUX_BIOS}/${name}`],
    debianPackage: "syslinux-common",
    purpose: "bios",
  })),
  {
    name: "memdisk",
    sources: ["/usr/lib/syslinux/memdisk"],
    debianPackage: "syslinux-common",
    purpose: "bios",
  },
  {
    name: "ipxe.lkrn",
    sources: ["/usr/lib/ipxe/ipxe.lkrn", "/boot/ipxe.lkrn"],
    debianPackage: "ipxe",
    purpose: "bios",
  },
  { name: "undionly.kpxe", sources: ["/usr/lib/ipxe/undionly.kpxe"], debianPackage: "ipxe", purpose: "bios" },
  {
    name: "ipxe.efi",
    sources: ["/usr/lib/ipxe/ipxe.efi", "/boot/ipxe.efi"],
    debianPackage: "ipxe",
    purpose: "uefi",
  },
  { name: "snponly.efi", sources: ["/usr/lib/ipxe/snponly.efi"], debianPackage: "ipxe", purpose: "uefi" },
];

export interface InstallTftpRootOptions {
  root: string;
  /** Which files to install (default: all of STATIC_BOOT_FILES). */
  files?: readonly StaticBootFile[];
  /** Where the dispatcher goes, relative to the root (the driver's `macScriptPath`). */
  macScriptPath?: string;
}

export interface InstalledTftpRoot {
  /** Names installed, relative to the root. */
  installed: string[];
  /** The dispatcher script for iPXE clients (DHCP boot file for user class iPXE, qemu's `bootfile=`). */
  dispatcher: string;
}

async function firstExisting(paths: readonly string[]): Promise<string | undefined> {
  for (const path of paths) {
    try {
      if ((await stat(path)).isFile()) return path;
    } catch {
      // try the next candidate
    }
  }
  return undefined;
}

/**
 * Fills a TFTP root with the static boot loaders from the installed Debian packages and writes
 * the iPXE dispatcher. Copies, never downloads; a missing package is a `not_found` naming it.
 */
export async function installTftpRoot(options: InstallTftpRootOptions): Promise<InstalledTftpRoot> {
  if (!isAbsolute(options.root)) {
    throw new BmiError("invalid_input", "invalid root: must be an absolute path", {
      subsystem: "boot",
      details: { field: "root" },
    });
  }
  const root = resolve(options.root);
  await mkdir(root, { recursive: true });
  const installed: string[] = [];
  for (const file of options.files ?? STATIC_BOOT_FILES) {
    const source = await firstExisting(file.sources);
    if (source === undefined) {
      throw new BmiError(
        "not_found",
        `${file.name} is missing: install the Debian package ${file.debianPackage} (looked in ${file.sources.join(", ")})`,
        { subsystem: "boot", details: { file: file.name, package: file.debianPackage } },
      );
    }
    const target = safeJoin(root, [basename(file.name)], "boot");
    await copyFile(source, target);
    installed.push(file.name);
  }
  const macDir = (options.macScriptPath ?? "ipxe-mac").replace(/\/+$/, "");
  const dispatcher = `${macDir}/boot.ipxe`;
  await writeFileAtomic(safeJoin(root, dispatcher.split("/"), "boot"), renderDispatcher(), 0o644);
  installed.push(dispatcher);
  return { installed, dispatcher };
}
