import { isAbsolute, relative, resolve, sep } from "node:path";
import { AddressRangeSchema, BmiError, driverKit, safeJoin } from "@bmi/core";
import { z } from "zod";
import { HOSTS_SUFFIX, reloadDnsmasq } from "./dhcp-hosts.js";
import { type AddressBook, createAddressBook } from "./node-addresses.js";

/** Validation, cancellation and error labels shared by every part of the PXE driver. */
export const kit = driverKit("boot");

const RelativeDir = z
  .string()
  .regex(/^(?:[A-Za-z0-9_][A-Za-z0-9_.-]*(?:\/[A-Za-z0-9_][A-Za-z0-9_.-]*)*)?\/?$/, {
    error: "must be a directory inside the root (letters, digits, '_', '.', '-', '/'; no '..')",
  });

const Options = z.object({
  root: z.string().refine(isAbsolute, { error: "root must be an absolute path" }),
  ipxePath: z.string().optional(),
  pxelinuxPath: z.string().optional(),
  macScriptPath: z.string().optional(),
  bootNic: z
    .string()
    .regex(/^net\d{1,2}$/, { error: "bootNic must be an iPXE device name such as net0" })
    .nullable()
    .optional(),
  ipxeKernel: RelativeDir.refine((v) => v !== "" && !v.endsWith("/"), {
    error: "must name a file",
  }).optional(),
  menuTimeout: z.number().int().min(0).max(36000).optional(),
  dhcpHostsPath: z.string().optional(),
  dnsmasqPidFile: z
    .string()
    .refine(isAbsolute, { error: "dnsmasqPidFile must be an absolute path" })
    .optional(),
  nodeAddresses: AddressRangeSchema.optional(),
});

export interface PxeBootOptions {
  /** The TFTP root (absolute). Nothing is ever written outside it. */
  root: string;
  /**
   * `[tftp] ipxe_path`: where node scripts go. Absolute (must lie inside `root`) or relative to
   * it; default: the root itself, which the original's pxelinux entries assume.
   */
  ipxePath?: string;
  /** `[tftp] pxelinux_path`: where per-MAC pxelinux files go; default `<root>/pxelinux.cfg`. */
  pxelinuxPath?: string;
  /** Where the per-MAC iPXE entries and the dispatcher (`boot.ipxe`) go; default `<root>/ipxe-mac`. */
  macScriptPath?: string;
  /**
   * The iPXE device the node script configures, e.g. `net2` as the original hard-coded. Default
   * null: plain `dhcp`, which tries every NIC until one gets a lease, so one-NIC nodes and VMs
   * boot too.
   */
  bootNic?: string | null;
  /** `KERNEL` of pxelinux entries, relative to the root (default `ipxe.lkrn`). */
  ipxeKernel?: string;
  /** pxelinux menu timeout in tenths of a second (default 30, the original's 3 s). */
  menuTimeout?: number;
  /**
   * `[tftp] dhcp_hosts_path`: also write one dnsmasq host entry per provisioned MAC, as `<node>.hosts`
   * in this directory inside the root (dnsmasq's `--dhcp-hostsdir`, run with
   * `--dhcp-ignore=tag:!known` so only those MACs get a lease). Default: none.
   */
  dhcpHostsPath?: string;
  /**
   * `[tftp] dnsmasq_pid_file`: the dnsmasq to SIGHUP when a host entry is removed or changed
   * (it picks new files up by itself, but forgets removed entries only on SIGHUP).
   */
  dnsmasqPidFile?: string;
  /**
   * `[tftp] node_addresses`, e.g. `10.247.0.10-10.247.0.99` (one /24): give each node a fixed
   * address from this range in its host entry (`<mac>,<ip>`), the lowest free one, kept while the
   * node has boot files and reported as `BootEntry.address`. Needs `dhcpHostsPath`.
   */
  nodeAddresses?: string;
}

/** Where everything goes, relative to the root ("" = the root itself), and how files are made. */
export interface Layout {
  root: string;
  ipxeDir: string;
  pxelinuxDir: string;
  macScriptDir: string;
  /** Where the dnsmasq host entries go, or null when the driver writes none. */
  dhcpHostsDir: string | null;
  bootNic: string | null;
  kernel: string;
  timeout: number;
  /** The fixed node addresses' claims, or null without `nodeAddresses`. */
  book: AddressBook | null;
  /** SIGHUPs dnsmasq, when a pid file is configured. */
  reload(): Promise<void>;
  /** `<node>.hosts` in the hosts dir, or null when the driver writes no host entries. */
  hostsFileOf(node: string): string | null;
}

export const under = (dir: string, name: string) => (dir === "" ? name : `${dir}/${name}`);

/** The options, validated, as the layout every other part of the driver works with. */
export function resolveLayout(options: PxeBootOptions): Layout {
  const parsed = kit.input(Options, options, "options");
  const root = resolve(parsed.root);
  const ipxeDir = relativeDir(root, parsed.ipxePath, "", "ipxePath");
  const pxelinuxDir = relativeDir(root, parsed.pxelinuxPath, "pxelinux.cfg", "pxelinuxPath");
  const macScriptDir = relativeDir(root, parsed.macScriptPath, "ipxe-mac", "macScriptPath");
  if (pxelinuxDir === macScriptDir) throw invalidOption("macScriptPath", "must differ from pxelinuxPath");
  const dhcpHostsDir =
    parsed.dhcpHostsPath === undefined ? null : relativeDir(root, parsed.dhcpHostsPath, "", "dhcpHostsPath");
  // dnsmasq reads every file in its hosts dir as host entries: it must hold nothing else.
  if (dhcpHostsDir !== null && [ipxeDir, pxelinuxDir, macScriptDir].includes(dhcpHostsDir)) {
    throw invalidOption("dhcpHostsPath", "must be a directory of its own in the TFTP root");
  }
  const pidFile = parsed.dnsmasqPidFile;
  return {
    root,
    ipxeDir,
    pxelinuxDir,
    macScriptDir,
    dhcpHostsDir,
    bootNic: parsed.bootNic ?? null,
    kernel: parsed.ipxeKernel ?? "ipxe.lkrn",
    timeout: parsed.menuTimeout ?? 30,
    book: addressBookOf(root, dhcpHostsDir, parsed.nodeAddresses),
    reload: async () => {
      if (pidFile !== undefined) await reloadDnsmasq(pidFile);
    },
    hostsFileOf: (node) => (dhcpHostsDir === null ? null : under(dhcpHostsDir, `${node}${HOSTS_SUFFIX}`)),
  };
}

const invalidOption = (field: string, why: string) =>
  new BmiError("invalid_input", `invalid ${field}: ${why}`, { subsystem: "boot", details: { field } });

/** A directory option as a path relative to the root, checked to stay inside it. */
function relativeDir(root: string, value: string | undefined, fallback: string, option: string): string {
  if (value === undefined) return fallback;
  const rel = isAbsolute(value) ? relative(root, resolve(value)).split(sep).join("/") : value;
  const clean = rel.replace(/\/+$/, "");
  if (rel.startsWith("..") || !RelativeDir.safeParse(clean).success) {
    throw invalidOption(option, `must be a directory inside the TFTP root ${root}`);
  }
  return clean;
}

/** The claims of fixed node addresses, kept beside the host entries that hand them out. */
function addressBookOf(
  root: string,
  dhcpHostsDir: string | null,
  range: z.output<typeof Options>["nodeAddresses"],
): AddressBook | null {
  if (range === undefined) return null;
  if (dhcpHostsDir === null) {
    throw invalidOption(
      "nodeAddresses",
      "needs dhcpHostsPath (the addresses are handed out by dnsmasq host entries)",
    );
  }
  return createAddressBook(safeJoin(root, dhcpHostsDir.split("/").filter(Boolean), "boot"), range);
}
