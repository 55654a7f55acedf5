import { readdir, readFile, rm } from "node:fs/promises";
import { isAbsolute, posix, relative, resolve, sep } from "node:path";
import {
  AddressRangeSchema,
  BmiError,
  type BootDriver,
  type BootEntry,
  type BootSpec,
  BootSpecSchema,
  type CallOptions,
  type Firmware,
  NodeName,
  parseInput,
  registrar,
  safeJoin,
  type TargetInfo,
  TOKENS,
  writeFileAtomic,
} from "@bmi/core";
import { z } from "zod";
import {
  HOSTS_SUFFIX,
  type HostsEntry,
  parseHostsFile,
  reloadDnsmasq,
  removeHostsFile,
  renderHostsFile,
} from "./dhcp-hosts.js";
import {
  hyphenated,
  macFromFileName,
  parseMacScript,
  parseNodeScript,
  parsePxelinuxEntry,
  renderMacScript,
  renderNodeScript,
  renderPxelinuxEntry,
} from "./files.js";
import { type AddressBook, CLAIM_PREFIX, createAddressBook } from "./node-addresses.js";

/** Modes from the spec (§3.3): the original wrote scripts 0755 and pxelinux files 0644. */
export const NODE_SCRIPT_MODE = 0o755;
export const ENTRY_MODE = 0o644;
/** The per-node index beside the script (`<node>.bmi-index`): the node's per-MAC files, as JSON. */
export const INDEX_SUFFIX = ".bmi-index";

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
   * `[dhcp] hosts_path`: also write one dnsmasq host entry per provisioned MAC, as `<node>.hosts`
   * in this directory inside the root (dnsmasq's `--dhcp-hostsdir`, run with
   * `--dhcp-ignore=tag:!known` so only those MACs get a lease). Default: none.
   */
  dhcpHostsPath?: string;
  /**
   * `[dhcp] dnsmasq_pid_file`: the dnsmasq to SIGHUP when a host entry is removed or changed
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

export interface PxeBoot extends BootDriver {
  /** The resolved layout, relative to the root ("" = the root itself). */
  readonly layout: {
    root: string;
    ipxeDir: string;
    pxelinuxDir: string;
    macScriptDir: string;
    /** Where the dnsmasq host entries go, or null when the driver writes none. */
    dhcpHostsDir: string | null;
  };
}

const Spec = BootSpecSchema;

const FIRMWARE: readonly Firmware[] = ["bios", "uefi"];

/** A directory option as a path relative to the root, checked to stay inside it. */
function relativeDir(root: string, value: string | undefined, fallback: string, option: string): string {
  if (value === undefined) return fallback;
  const rel = isAbsolute(value) ? relative(root, resolve(value)).split(sep).join("/") : value;
  const clean = rel.replace(/\/+$/, "");
  if (rel.startsWith("..") || !RelativeDir.safeParse(clean).success) {
    throw new BmiError(
      "invalid_input",
      `invalid ${option}: must be a directory inside the TFTP root ${root}`,
      {
        subsystem: "boot",
        details: { field: option },
      },
    );
  }
  return clean;
}

const under = (dir: string, name: string) => (dir === "" ? name : `${dir}/${name}`);

function fsError(error: unknown, action: string, file: string): BmiError {
  if (error instanceof BmiError) return error;
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  const details = { file, errno: code };
  if (code === "EACCES" || code === "EPERM" || code === "EROFS") {
    return new BmiError("permission_denied", `cannot ${action} boot file ${file}: permission denied`, {
      subsystem: "boot",
      cause: error,
      details,
    });
  }
  if (code === "ENOSPC" || code === "EIO" || code === "EMFILE" || code === "ENFILE") {
    return new BmiError("unavailable", `cannot ${action} boot file ${file} (${code})`, {
      subsystem: "boot",
      cause: error,
      details,
    });
  }
  return new BmiError("internal", `cannot ${action} boot file ${file}${code ? ` (${code})` : ""}`, {
    subsystem: "boot",
    cause: error,
    details,
  });
}

/** Like Promise.all, but settles every promise first: no file operation still runs after a failure. */
async function all(work: Promise<unknown>[]): Promise<void> {
  const results = await Promise.allSettled(work);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) throw failed.reason;
}

const isMissing = (error: unknown) => {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return code === "ENOENT" || code === "ENOTDIR";
};

function checkSignal(signal: AbortSignal | undefined, what: string): void {
  if (signal?.aborted) throw new BmiError("cancelled", `boot ${what} was cancelled`, { subsystem: "boot" });
}

interface MacEntry {
  mac: string;
  /** Path relative to the root. */
  file: string;
  kind: "pxelinux" | "ipxe";
  /** The node whose script it boots. */
  node: string;
}

/**
 * A BootDriver writing the original BMI's boot files into a TFTP root: `<node>.ipxe` (§4.3),
 * `pxelinux.cfg/01-<mac>` (§4.4, BIOS nodes), plus per-MAC iPXE entries `ipxe-mac/<mac>.ipxe`
 * that any iPXE build reaches through the `ipxe-mac/boot.ipxe` dispatcher (UEFI nodes, and BIOS
 * nodes booted by iPXE directly). Writes are atomic (temp file + rename); every path is joined
 * with `safeJoin`, so nothing lands outside the root.
 */
export function createPxeBoot(options: PxeBootOptions): PxeBoot {
  const parsed = parseInput(Options, options, "options", "boot");
  const root = resolve(parsed.root);
  const ipxeDir = relativeDir(root, parsed.ipxePath, "", "ipxePath");
  const pxelinuxDir = relativeDir(root, parsed.pxelinuxPath, "pxelinux.cfg", "pxelinuxPath");
  const macScriptDir = relativeDir(root, parsed.macScriptPath, "ipxe-mac", "macScriptPath");
  if (pxelinuxDir === macScriptDir) {
    throw new BmiError("invalid_input", "invalid macScriptPath: must differ from pxelinuxPath", {
      subsystem: "boot",
      details: { field: "macScriptPath" },
    });
  }
  const dhcpHostsDir =
    parsed.dhcpHostsPath === undefined ? null : relativeDir(root, parsed.dhcpHostsPath, "", "dhcpHostsPath");
  // dnsmasq reads every file in its hosts dir as host entries: it must hold nothing else.
  if (dhcpHostsDir !== null && [ipxeDir, pxelinuxDir, macScriptDir].includes(dhcpHostsDir)) {
    throw new BmiError(
      "invalid_input",
      "invalid dhcpHostsPath: must be a directory of its own in the TFTP root",
      {
        subsystem: "boot",
        details: { field: "dhcpHostsPath" },
      },
    );
  }
  const book = addressBookOf(root, dhcpHostsDir, parsed.nodeAddresses);
  const pidFile = parsed.dnsmasqPidFile;
  const reload = async () => {
    if (pidFile !== undefined) await reloadDnsmasq(pidFile);
  };
  const hostsFileOf = (node: string) =>
    dhcpHostsDir === null ? null : under(dhcpHostsDir, `${node}${HOSTS_SUFFIX}`);
  const bootNic = parsed.bootNic ?? null;
  const kernel = parsed.ipxeKernel ?? "ipxe.lkrn";
  const timeout = parsed.menuTimeout ?? 30;

  const abs = (rel: string) => safeJoin(root, rel.split("/"), "boot");
  const nodeScriptOf = (node: string) => under(ipxeDir, `${node}.ipxe`);
  const nodeOfScript = (script: string): string | null => {
    const clean = posix.normalize(script.replace(/^\/+/, ""));
    const dir = posix.dirname(clean) === "." ? "" : posix.dirname(clean);
    const base = posix.basename(clean);
    if (dir !== ipxeDir || !base.endsWith(".ipxe")) return null;
    const node = base.slice(0, -".ipxe".length);
    return NodeName.safeParse(node).success ? node : null;
  };

  const readText = async (rel: string): Promise<string | null> => {
    try {
      return await readFile(abs(rel), "utf8");
    } catch (error) {
      if (isMissing(error)) return null;
      throw fsError(error, "read", rel);
    }
  };

  const listDir = async (dir: string): Promise<string[]> => {
    try {
      const entries = await readdir(dir === "" ? root : abs(dir), { withFileTypes: true });
      return entries.filter((entry) => entry.isFile()).map((entry) => entry.name);
    } catch (error) {
      if (isMissing(error)) return [];
      throw fsError(error, "list", dir || ".");
    }
  };

  /** Where a per-MAC file lives and what it is, or null for any other path. */
  const classify = (rel: string): { kind: MacEntry["kind"]; mac: string } | null => {
    const slash = rel.lastIndexOf("/");
    const dir = slash < 0 ? "" : rel.slice(0, slash);
    const base = rel.slice(slash + 1);
    const kind = dir === pxelinuxDir ? "pxelinux" : dir === macScriptDir ? "ipxe" : null;
    const mac = kind === null ? null : macFromFileName(base, kind);
    return kind === null || mac === null ? null : { kind, mac };
  };

  /** The per-MAC entry in `file`, when it exists and boots a BMI node script. */
  const entryAt = async (file: string): Promise<MacEntry | null> => {
    const what = classify(file);
    if (what === null) return null;
    const text = await readText(file);
    if (text === null) return null;
    const script =
      what.kind === "pxelinux" ? (parsePxelinuxEntry(text)?.initrd ?? null) : parseMacScript(text);
    const node = script === null ? null : nodeOfScript(script);
    return node === null ? null : { mac: what.mac, file, kind: what.kind, node };
  };

  /** Every per-MAC entry under the root that boots a BMI node script (O(nodes): list() only). */
  const macEntries = async (): Promise<MacEntry[]> => {
    const found: MacEntry[] = [];
    for (const dir of [pxelinuxDir, macScriptDir]) {
      for (const name of await listDir(dir)) {
        const entry = await entryAt(under(dir, name));
        if (entry !== null) found.push(entry);
      }
    }
    return found;
  };

  // The per-node index: which per-MAC files a node has, so write/remove/read touch only that
  // node's files instead of reading every entry in the root (O(1) in the number of nodes).
  const indexOf = (node: string) => under(ipxeDir, `${node}${INDEX_SUFFIX}`);

  /** The files a node's index lists, or null when it has none (or one we cannot trust). */
  const readIndex = async (node: string): Promise<string[] | null> => {
    const text = await readText(indexOf(node));
    if (text === null) return null;
    try {
      const value: unknown = JSON.parse(text);
      const files = (value as { files?: unknown } | null)?.files;
      if (!Array.isArray(files)) return null;
      // Only per-MAC paths of this layout: an edited index must not make us touch other files.
      return files.every((f) => typeof f === "string" && classify(f) !== null) ? (files as string[]) : null;
    } catch {
      return null;
    }
  };

  const renderIndex = (node: string, files: readonly string[]) =>
    `${JSON.stringify({ node, files: [...files].sort() })}\n`;

  /**
   * Nodes with per-MAC entries no index lists (written by the original BMI or an older driver),
   * found by one scan per driver; their reads and removals fall back to a full scan.
   */
  let census: Promise<Map<string, MacEntry[]>> | undefined;
  const legacyEntries = (): Promise<Map<string, MacEntry[]>> => {
    census ??= (async () => {
      const legacy = new Map<string, MacEntry[]>();
      const indexes = new Map<string, Set<string>>();
      for (const entry of await macEntries()) {
        let listed = indexes.get(entry.node);
        if (listed === undefined) {
          listed = new Set((await readIndex(entry.node)) ?? []);
          indexes.set(entry.node, listed);
        }
        if (!listed.has(entry.file)) legacy.set(entry.node, [...(legacy.get(entry.node) ?? []), entry]);
      }
      return legacy;
    })().catch((error: unknown) => {
      census = undefined;
      throw error;
    });
    return census;
  };

  interface NodeFiles {
    /** The node script's text, or null when it has none. */
    script: string | null;
    /** The files its index lists, or null when it has no index. */
    index: string[] | null;
    /** Its per-MAC entries. */
    own: MacEntry[];
    /** Its dnsmasq host entry, or null when it has none. */
    hosts: HostsEntry | null;
    /** The address it claimed (see node-addresses.ts), or null. */
    claim: string | null;
  }

  const claimOf = (claims: ReadonlyMap<string, string>, node: string): string | null =>
    [...claims].find(([, owner]) => owner === node)?.[0] ?? null;
  const claims = async () => (book === null ? new Map<string, string>() : book.claims());

  const readHosts = async (node: string): Promise<HostsEntry | null> => {
    const file = hostsFileOf(node);
    const text = file === null ? null : await readText(file);
    return text === null ? null : parseHostsFile(text, node);
  };

  /** A node's files, from its index (O(its MACs)); a full scan only for nodes without one. */
  const nodeFiles = async (node: string): Promise<NodeFiles> => {
    const [script, index, legacy, hosts, claimed] = await Promise.all([
      readText(nodeScriptOf(node)),
      readIndex(node),
      legacyEntries(),
      readHosts(node),
      claims(),
    ]);
    let candidates: string[];
    if (index !== null) {
      candidates = [...index, ...(legacy.get(node) ?? []).map((entry) => entry.file)];
    } else if (script !== null || legacy.has(node)) {
      // No index: written by the original BMI (or before indexes); only a scan finds its entries.
      candidates = (await macEntries()).filter((entry) => entry.node === node).map((entry) => entry.file);
    } else {
      candidates = [];
    }
    const own: MacEntry[] = [];
    for (const file of new Set(candidates)) {
      const entry = await entryAt(file);
      // A listed file that now boots another node is not ours to report or remove.
      if (entry !== null && entry.node === node) own.push(entry);
    }
    return { script, index, own, hosts, claim: claimOf(claimed, node) };
  };

  const entryOf = (node: string, files: NodeFiles, hasIndex: boolean): BootEntry | null => {
    const { script: text, own, hosts, claim } = files;
    if (text === null && own.length === 0 && hosts === null && claim === null) return null;
    const script = nodeScriptOf(node);
    const hostsFile = hostsFileOf(node);
    const all = [
      ...(text === null ? [] : [script]),
      ...(hasIndex ? [indexOf(node)] : []),
      ...own.map((entry) => entry.file),
      ...(hosts === null || hostsFile === null ? [] : [hostsFile]),
      ...(claim === null || dhcpHostsDir === null ? [] : [under(dhcpHostsDir, `${CLAIM_PREFIX}${claim}`)]),
    ].sort();
    return {
      node,
      macs: [...new Set([...own.map((entry) => entry.mac), ...(hosts?.macs ?? [])])].sort(),
      target: text === null ? null : parseNodeScript(text),
      firmware: own.some((entry) => entry.kind === "pxelinux") || own.length === 0 ? "bios" : "uefi",
      files: all,
      ...(hosts?.address ? { address: hosts.address } : {}),
    };
  };

  const entryFor = async (node: string): Promise<BootEntry | null> => {
    const files = await nodeFiles(node);
    return entryOf(node, files, files.index !== null);
  };

  const removeFile = async (rel: string) => {
    const inHostsDir = dhcpHostsDir !== null && posix.dirname(rel) === (dhcpHostsDir || ".");
    try {
      await (inHostsDir ? removeHostsFile(abs(rel)) : rm(abs(rel), { force: true }));
    } catch (error) {
      throw fsError(error, "remove", rel);
    }
  };

  const write = async (rel: string, text: string, mode: number) => {
    try {
      await writeFileAtomic(abs(rel), text, mode);
    } catch (error) {
      throw fsError(error, "write", rel);
    }
  };

  const sameFiles = (a: readonly string[] | null, b: readonly string[]) =>
    a !== null && a.length === b.length && [...a].sort().every((file, i) => file === [...b].sort()[i]);

  return {
    name: "pxe",
    capabilities: { firmware: FIRMWARE },
    layout: { root, ipxeDir, pxelinuxDir, macScriptDir, dhcpHostsDir },

    async write(spec: BootSpec, call?: CallOptions): Promise<BootEntry> {
      const input = parseInput(Spec, spec, "boot", "boot");
      checkSignal(call?.signal, "write");
      const macs = [...new Set(input.macs)];
      const legacy = await legacyEntries();
      // Only the entries named after these MACs can clash: read just those files.
      for (const mac of macs) {
        const files = [
          under(pxelinuxDir, `01-${hyphenated(mac)}`),
          under(macScriptDir, `${hyphenated(mac)}.ipxe`),
          ...[...legacy.values()].flat().flatMap((entry) => (entry.mac === mac ? [entry.file] : [])),
        ];
        for (const file of new Set(files)) {
          const entry = await entryAt(file);
          if (entry !== null && entry.node !== input.node) {
            throw new BmiError("conflict", `MAC ${entry.mac} already boots node ${entry.node}`, {
              subsystem: "boot",
              details: { mac: entry.mac, node: entry.node, file: entry.file },
            });
          }
        }
      }
      const before = await nodeFiles(input.node);
      const existed =
        before.script !== null || before.own.length > 0 || before.index !== null || before.hosts !== null;
      const script = nodeScriptOf(input.node);
      const wanted = new Map<string, { text: string; mode: number }>();
      wanted.set(script, {
        text: renderNodeScript(input.target as TargetInfo, { bootNic }),
        mode: NODE_SCRIPT_MODE,
      });
      for (const mac of macs) {
        if (input.firmware === "bios") {
          const initrd = script;
          wanted.set(under(pxelinuxDir, `01-${hyphenated(mac)}`), {
            text: renderPxelinuxEntry({ label: input.label, kernel, initrd, timeout }),
            mode: ENTRY_MODE,
          });
        }
        wanted.set(under(macScriptDir, `${hyphenated(mac)}.ipxe`), {
          text: renderMacScript(script),
          mode: ENTRY_MODE,
        });
      }
      const hostsFile = hostsFileOf(input.node);
      // Claimed before anything is written (undone below if the write fails), kept on rewrites.
      const address = book === null ? null : await book.claim(input.node);
      const hostsText = renderHostsFile(input.node, macs, address);
      if (hostsFile !== null) wanted.set(hostsFile, { text: hostsText, mode: ENTRY_MODE });
      // dnsmasq forgets a changed entry's old MACs only when told (new files it reads by itself).
      const hostsChanged =
        before.hosts !== null &&
        renderHostsFile(input.node, before.hosts.macs, before.hosts.address) !== hostsText;
      const entryFiles = [...wanted.keys()].filter((file) => file !== script && file !== hostsFile);
      const stale = before.own.filter((entry) => !wanted.has(entry.file)).map((entry) => entry.file);
      const index = indexOf(input.node);
      try {
        // The index first, naming old and new entries: a crash midway leaves every file findable.
        const during = [...entryFiles, ...stale];
        if (!sameFiles(before.index, during)) await write(index, renderIndex(input.node, during), ENTRY_MODE);
        checkSignal(call?.signal, "write");
        // Each file is atomic on its own and the index already names them all: write in parallel.
        await all([...wanted].map(([rel, { text, mode }]) => write(rel, text, mode)));
        // Entries the node no longer has (dropped MACs, a firmware switch, upper-case names an
        // earlier BMI wrote) would keep booting it from another NIC: remove them.
        await all(stale.map(removeFile));
        if (stale.length > 0) await write(index, renderIndex(input.node, entryFiles), ENTRY_MODE);
        if (hostsChanged) await reload();
      } catch (error) {
        // A node that had no files must not be left half-written (dnsmasq may have read its entry).
        if (!existed) {
          await Promise.allSettled([...wanted.keys(), index].map(removeFile));
          if (hostsFile !== null) await reload().catch(() => undefined);
          await book?.release(input.node).catch(() => undefined);
        }
        throw error;
      }
      legacy.delete(input.node);
      const entry = await entryFor(input.node);
      if (entry === null)
        throw new BmiError("internal", `boot files of ${input.node} vanished`, { subsystem: "boot" });
      return entry;
    },

    async remove(node: string, call?: CallOptions): Promise<void> {
      const name = parseInput(NodeName, node, "node", "boot");
      checkSignal(call?.signal, "remove");
      const { own, hosts } = await nodeFiles(name);
      // The DHCP entry first: a node being removed gets no new lease, then no boot file.
      const hostsFile = hostsFileOf(name);
      if (hosts !== null && hostsFile !== null) {
        await removeFile(hostsFile);
        await reload();
      }
      // The address is free once dnsmasq no longer gives it to this node.
      await book?.release(name);
      // Per-MAC entries next: a half-removed node then has no way to reach a missing script.
      // The index goes last, so a removal cut short is finished by the next one.
      await all(own.map((entry) => removeFile(entry.file)));
      await removeFile(nodeScriptOf(name));
      await removeFile(indexOf(name));
      (await legacyEntries()).delete(name);
    },

    async read(node: string, call?: CallOptions): Promise<BootEntry | null> {
      const name = parseInput(NodeName, node, "node", "boot");
      checkSignal(call?.signal, "read");
      return entryFor(name);
    },

    async list(call?: CallOptions): Promise<BootEntry[]> {
      checkSignal(call?.signal, "list");
      const entries = await macEntries();
      const nodes = new Set(entries.map((entry) => entry.node));
      for (const name of await listDir(ipxeDir)) {
        const node = nodeOfScript(under(ipxeDir, name));
        if (node === null || nodes.has(node)) continue;
        const text = await readText(under(ipxeDir, name));
        // Other .ipxe files in the root (menus, the user's own) are not node scripts.
        if (text !== null && parseNodeScript(text) !== null) nodes.add(node);
      }
      const claimed = await claims();
      for (const owner of claimed.values()) if (NodeName.safeParse(owner).success) nodes.add(owner);
      if (dhcpHostsDir !== null) {
        for (const name of await listDir(dhcpHostsDir)) {
          const node = name.endsWith(HOSTS_SUFFIX) ? name.slice(0, -HOSTS_SUFFIX.length) : "";
          if (NodeName.safeParse(node).success && (await readHosts(node)) !== null) nodes.add(node);
        }
      }
      const result: BootEntry[] = [];
      for (const node of [...nodes].sort()) {
        const [script, index, hosts] = await Promise.all([
          readText(nodeScriptOf(node)),
          readText(indexOf(node)),
          readHosts(node),
        ]);
        const own = entries.filter((entry) => entry.node === node);
        const files = { script, index: null, own, hosts, claim: claimOf(claimed, node) };
        const entry = entryOf(node, files, index !== null);
        if (entry !== null) result.push(entry);
      }
      return result;
    },
  };
}

/** The claims of fixed node addresses, kept beside the host entries that hand them out. */
function addressBookOf(
  root: string,
  dhcpHostsDir: string | null,
  range: z.output<typeof Options>["nodeAddresses"],
): AddressBook | null {
  if (range === undefined) return null;
  if (dhcpHostsDir === null) {
    throw new BmiError(
      "invalid_input",
      "invalid nodeAddresses: needs dhcpHostsPath (the addresses are handed out by dnsmasq host entries)",
      { subsystem: "boot", details: { field: "nodeAddresses" } },
    );
  }
  return createAddressBook(safeJoin(root, dhcpHostsDir.split("/").filter(Boolean), "boot"), range);
}

/** Registers a PXE boot driver as the container's BootDriver (`TOKENS.boot`). */
export const registerPxeBoot = registrar(TOKENS.boot, createPxeBoot);
