import type { TargetInfo } from "@bmi/core";

/** iPXE's default iSCSI port, used when a script's URI leaves the port empty. */
export const ISCSI_DEFAULT_PORT = 3260;

export interface ScriptOptions {
  /**
   * The iPXE network device to configure (`net0`, `net2`...), or null for plain `dhcp`, which
   * tries every NIC in turn until one gets a lease.
   */
  bootNic: string | null;
}

/**
 * The node's iPXE script, laid out like the original's `ipxe.temp` (§4.3), with two fixes:
 * - the URI is `iscsi:<portal>::<port>:<lun hex>:<target>`. The original's `:tcp:` sits in
 *   RFC 4173's protocol field, which iPXE ignores (only 6 = TCP is defined), so it worked by
 *   luck; we leave it empty as iPXE documents. iPXE reads the LUN as hexadecimal.
 * - the NIC is configurable; the original hard-coded `net2` (MOC nodes booted from their third
 *   NIC), which fails on any node with fewer NICs.
 */
export function renderNodeScript(target: TargetInfo, options: ScriptOptions): string {
  const ifconf = options.bootNic === null ? "dhcp" : `ifconf --configurator=dhcp ${options.bootNic}`;
  return [
    "#!ipxe",
    "      set keep-san 1",
    `      ${ifconf}`,
    `      sanboot --keep ${sanUri(target)}`,
    "      boot",
    "",
  ].join("\n");
}

export const sanUri = (target: TargetInfo): string =>
  `iscsi:${target.portal}::${target.port}:${target.lun.toString(16)}:${target.name}`;

const SANBOOT_RE = /^\s*sanboot\b[^\n]*?\biscsi:([^:\s]*):([^:\s]*):([^:\s]*):([^:\s]*):(\S+)\s*$/m;

/**
 * The target a node script boots, or null when the text is no BMI node script. Reads scripts
 * written by the original BMI too (`:tcp:3260:`), with RFC 4173's defaults for empty fields.
 */
export function parseNodeScript(text: string): TargetInfo | null {
  if (!text.startsWith("#!ipxe")) return null;
  const match = SANBOOT_RE.exec(text);
  if (!match) return null;
  const [, portal = "", , port = "", lun = "", name = ""] = match;
  if (portal === "" || !/^\d*$/.test(port) || !/^[0-9a-fA-F]*$/.test(lun)) return null;
  return {
    name,
    portal,
    port: port === "" ? ISCSI_DEFAULT_PORT : Number(port),
    lun: lun === "" ? 0 : Number.parseInt(lun, 16),
  };
}

export interface PxelinuxEntryOptions {
  label: string;
  /** `KERNEL`: iPXE built as a Linux kernel, relative to the TFTP root. */
  kernel: string;
  /** `INITRD`: the node's script, relative to the TFTP root. */
  initrd: string;
  /** Menu timeout in tenths of a second (the original: 30 = 3 s). */
  timeout: number;
}

/** The per-MAC pxelinux file, byte for byte the original's `mac.temp` (§4.4). */
export function renderPxelinuxEntry(options: PxelinuxEntryOptions): string {
  const { label, kernel, initrd, timeout } = options;
  return [
    "DEFAULT menu",
    "  PROMPT 0",
    "  MENU TITLE PXE Menu",
    `  TIMEOUT ${timeout}`,
    `  ONTIMEOUT ${label}`,
    "",
    "",
    `LABEL ${label}`,
    `     MENU LABEL ${label}`,
    `     KERNEL ${kernel}`,
    `     INITRD ${initrd}`,
    "",
  ].join("\n");
}

/** The INITRD (script path) and label of a pxelinux entry, or null when it has none. */
export function parsePxelinuxEntry(text: string): { initrd: string; label: string | null } | null {
  const initrd = /^\s*INITRD\s+(\S+)\s*$/im.exec(text)?.[1];
  if (initrd === undefined) return null;
  const label = /^\s*LABEL\s+(\S+)\s*$/im.exec(text)?.[1] ?? null;
  return { initrd, label };
}

const MAC_SCRIPT_MARK = "# bmi-boot-entry";

/**
 * The per-MAC iPXE entry: what any iPXE build (the NIC's ROM, undionly.kpxe, ipxe.efi,
 * snponly.efi) reaches through the dispatcher script, for BIOS and UEFI nodes alike. It chains
 * the node's script by an absolute TFTP path, so it works wherever the dispatcher lives.
 */
export function renderMacScript(nodeScript: string): string {
  return ["#!ipxe", MAC_SCRIPT_MARK, `chain --autofree /${nodeScript}`, ""].join("\n");
}

/** The node script (relative to the root) a per-MAC entry chains, or null. */
export function parseMacScript(text: string): string | null {
  if (!text.startsWith("#!ipxe") || !text.includes(MAC_SCRIPT_MARK)) return null;
  return /^\s*chain\s+(?:--\S+\s+)*\/?(\S+)\s*$/m.exec(text)?.[1] ?? null;
}

/**
 * The static dispatcher: iPXE fetches it (DHCP boot file for iPXE clients, or qemu's
 * `bootfile=`), then chains the entry named after the MAC of the NIC it booted from (`netX` is
 * the last opened device). No entry → exits, so the firmware tries its next boot device.
 */
export function renderDispatcher(): string {
  // iPXE expands ${...} itself; these are not JS template placeholders.
  const mac = "$" + "{netX/mac}";
  const macHyphens = "$" + "{netX/mac:hexhyp}";
  return [
    "#!ipxe",
    "# BMI dispatcher: boots the node whose NIC this is (entries written by @bmi/driver-pxe).",
    `chain --autofree ${macHyphens}.ipxe || goto none`,
    ":none",
    `echo BMI: the boot entry for ${mac} is missing or failed`,
    "exit 1",
    "",
  ].join("\n");
}

/** `52:54:00:aa:bb:01` → `52-54-00-aa-bb-01`. */
export const hyphenated = (mac: string): string => mac.replaceAll(":", "-");

/** A MAC from a file name (`01-52-54-00-AA-BB-01` or `52-54-00-aa-bb-01.ipxe`), normalised. */
export function macFromFileName(name: string, kind: "pxelinux" | "ipxe"): string | null {
  const re =
    kind === "pxelinux"
      ? /^01-([0-9a-f]{2}(?:-[0-9a-f]{2}){5})$/i
      : /^([0-9a-f]{2}(?:-[0-9a-f]{2}){5})\.ipxe$/i;
  const hex = re.exec(name)?.[1];
  return hex === undefined ? null : hex.toLowerCase().replaceAll("-", ":");
}
