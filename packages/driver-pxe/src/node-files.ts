import { posix } from "node:path";
import { type BootEntry, NodeName } from "@bmi/core";
import type { BootFs } from "./boot-fs.js";
import { HOSTS_SUFFIX, type HostsEntry, parseHostsFile } from "./dhcp-hosts.js";
import { macFromFileName, parseMacScript, parseNodeScript, parsePxelinuxEntry } from "./files.js";
import { type Layout, under } from "./layout.js";
import { CLAIM_PREFIX } from "./node-addresses.js";

/** The per-node index beside the script (`<node>.bmi-index`): the node's per-MAC files, as JSON. */
export const INDEX_SUFFIX = ".bmi-index";

export interface MacEntry {
  mac: string;
  /** Path relative to the root. */
  file: string;
  kind: "pxelinux" | "ipxe";
  /** The node whose script it boots. */
  node: string;
}

export interface NodeFiles {
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

/** What is on disk for the nodes: the read side of the driver, shared by write, remove, read and list. */
export type NodeFilesReader = ReturnType<typeof createNodeFilesReader>;

/** The per-MAC entries, node scripts and per-node indexes: where they are and what they boot. */
function createMacEntries(layout: Layout, fs: BootFs) {
  const { ipxeDir, pxelinuxDir, macScriptDir } = layout;
  const nodeScriptOf = (node: string) => under(ipxeDir, `${node}.ipxe`);
  const indexOf = (node: string) => under(ipxeDir, `${node}${INDEX_SUFFIX}`);

  const nodeOfScript = (script: string): string | null => {
    const clean = posix.normalize(script.replace(/^\/+/, ""));
    const dir = posix.dirname(clean) === "." ? "" : posix.dirname(clean);
    const base = posix.basename(clean);
    if (dir !== ipxeDir || !base.endsWith(".ipxe")) return null;
    const node = base.slice(0, -".ipxe".length);
    return NodeName.safeParse(node).success ? node : null;
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
    const text = await fs.readText(file);
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
      for (const name of await fs.listDir(dir)) {
        const entry = await entryAt(under(dir, name));
        if (entry !== null) found.push(entry);
      }
    }
    return found;
  };

  // The per-node index: which per-MAC files a node has, so write/remove/read touch only that
  // node's files instead of reading every entry in the root (O(1) in the number of nodes).
  /** The files a node's index lists, or null when it has none (or one we cannot trust). */
  const readIndex = async (node: string): Promise<string[] | null> => {
    const text = await fs.readText(indexOf(node));
    if (text === null) return null;
    try {
      const files = (JSON.parse(text) as { files?: unknown } | null)?.files;
      if (!Array.isArray(files)) return null;
      // Only per-MAC paths of this layout: an edited index must not make us touch other files.
      return files.every((f) => typeof f === "string" && classify(f) !== null) ? (files as string[]) : null;
    } catch {
      return null;
    }
  };

  const legacyEntries = legacyCensus(macEntries, readIndex);
  return { nodeScriptOf, indexOf, nodeOfScript, entryAt, macEntries, readIndex, legacyEntries };
}

export function createNodeFilesReader(layout: Layout, fs: BootFs) {
  const { ipxeDir, dhcpHostsDir, book } = layout;
  const macs = createMacEntries(layout, fs);
  const { nodeScriptOf, indexOf, nodeOfScript, entryAt, macEntries, readIndex, legacyEntries } = macs;
  const claims = async () => (book === null ? new Map<string, string>() : book.claims());

  const readHosts = async (node: string): Promise<HostsEntry | null> => {
    const file = layout.hostsFileOf(node);
    const text = file === null ? null : await fs.readText(file);
    return text === null ? null : parseHostsFile(text, node);
  };

  /** The per-MAC files a node may have: from its index, or by a scan for a node without one. */
  const candidatesOf = async (node: string, index: string[] | null, hasScript: boolean) => {
    const legacy = await legacyEntries();
    if (index !== null) return [...index, ...(legacy.get(node) ?? []).map((entry) => entry.file)];
    // No index: written by the original BMI (or before indexes); only a scan finds its entries.
    if (hasScript || legacy.has(node)) {
      return (await macEntries()).filter((entry) => entry.node === node).map((entry) => entry.file);
    }
    return [];
  };

  /** A node's files, from its index (O(its MACs)); a full scan only for nodes without one. */
  const nodeFiles = async (node: string): Promise<NodeFiles> => {
    const [script, index, hosts, claimed] = await Promise.all([
      fs.readText(nodeScriptOf(node)),
      readIndex(node),
      readHosts(node),
      claims(),
    ]);
    const own: MacEntry[] = [];
    for (const file of new Set(await candidatesOf(node, index, script !== null))) {
      const entry = await entryAt(file);
      // A listed file that now boots another node is not ours to report or remove.
      if (entry !== null && entry.node === node) own.push(entry);
    }
    return { script, index, own, hosts, claim: claimOf(claimed, node) };
  };

  const entryOf = (node: string, files: NodeFiles, hasIndex: boolean) =>
    bootEntryOf(layout, { script: nodeScriptOf(node), index: indexOf(node) }, node, files, hasIndex);

  const entryFor = async (node: string): Promise<BootEntry | null> => {
    const files = await nodeFiles(node);
    return entryOf(node, files, files.index !== null);
  };

  /** Every node with any file of ours: per-MAC entries, scripts, host entries, address claims. */
  const allNodes = async (entries: MacEntry[], claimed: ReadonlyMap<string, string>): Promise<string[]> => {
    const nodes = new Set(entries.map((entry) => entry.node));
    for (const name of await fs.listDir(ipxeDir)) {
      const node = nodeOfScript(under(ipxeDir, name));
      if (node === null || nodes.has(node)) continue;
      const text = await fs.readText(under(ipxeDir, name));
      // Other .ipxe files in the root (menus, the user's own) are not node scripts.
      if (text !== null && parseNodeScript(text) !== null) nodes.add(node);
    }
    for (const owner of claimed.values()) if (NodeName.safeParse(owner).success) nodes.add(owner);
    if (dhcpHostsDir !== null) {
      for (const name of await fs.listDir(dhcpHostsDir)) {
        const node = name.endsWith(HOSTS_SUFFIX) ? name.slice(0, -HOSTS_SUFFIX.length) : "";
        if (NodeName.safeParse(node).success && (await readHosts(node)) !== null) nodes.add(node);
      }
    }
    return [...nodes].sort();
  };

  /** Every node's entry, from one scan of the per-MAC directories. */
  const listEntries = async (): Promise<BootEntry[]> => {
    const [entries, claimed] = await Promise.all([macEntries(), claims()]);
    const result: BootEntry[] = [];
    for (const node of await allNodes(entries, claimed)) {
      const [script, index, hosts] = await Promise.all([
        fs.readText(nodeScriptOf(node)),
        fs.readText(indexOf(node)),
        readHosts(node),
      ]);
      const own = entries.filter((entry) => entry.node === node);
      const files = { script, index: null, own, hosts, claim: claimOf(claimed, node) };
      const entry = entryOf(node, files, index !== null);
      if (entry !== null) result.push(entry);
    }
    return result;
  };

  return { nodeScriptOf, indexOf, entryAt, legacyEntries, nodeFiles, entryFor, listEntries };
}

/** The entry a node's files make, or null when it has none. */
function bootEntryOf(
  layout: Layout,
  paths: { script: string; index: string },
  node: string,
  files: NodeFiles,
  hasIndex: boolean,
): BootEntry | null {
  const { script: text, own, hosts, claim } = files;
  if (text === null && own.length === 0 && hosts === null && claim === null) return null;
  const hostsFile = layout.hostsFileOf(node);
  const all = [
    ...(text === null ? [] : [paths.script]),
    ...(hasIndex ? [paths.index] : []),
    ...own.map((entry) => entry.file),
    ...(hosts === null || hostsFile === null ? [] : [hostsFile]),
    ...(claim === null || layout.dhcpHostsDir === null
      ? []
      : [under(layout.dhcpHostsDir, `${CLAIM_PREFIX}${claim}`)]),
  ].sort();
  return {
    node,
    macs: [...new Set([...own.map((entry) => entry.mac), ...(hosts?.macs ?? [])])].sort(),
    target: text === null ? null : parseNodeScript(text),
    firmware: own.some((entry) => entry.kind === "pxelinux") || own.length === 0 ? "bios" : "uefi",
    files: all,
    ...(hosts?.address ? { address: hosts.address } : {}),
  };
}

const claimOf = (claims: ReadonlyMap<string, string>, node: string): string | null =>
  [...claims].find(([, owner]) => owner === node)?.[0] ?? null;

/**
 * Nodes with per-MAC entries no index lists (written by the original BMI or an older driver),
 * found by one scan per driver; their reads and removals fall back to a full scan.
 */
function legacyCensus(
  macEntries: () => Promise<MacEntry[]>,
  readIndex: (node: string) => Promise<string[] | null>,
): () => Promise<Map<string, MacEntry[]>> {
  let census: Promise<Map<string, MacEntry[]>> | undefined;
  return () => {
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
}
