import {
  BmiError,
  type BootDriver,
  type BootEntry,
  type BootSpec,
  BootSpecSchema,
  type CallOptions,
  type Firmware,
  NodeName,
  registrar,
  type TargetInfo,
  TOKENS,
} from "@bmi/core";
import { all, type BootFs, createBootFs } from "./boot-fs.js";
import { renderHostsFile } from "./dhcp-hosts.js";
import { hyphenated, renderMacScript, renderNodeScript, renderPxelinuxEntry } from "./files.js";
import { kit, type Layout, type PxeBootOptions, resolveLayout, under } from "./layout.js";
import { createNodeFilesReader, type NodeFiles, type NodeFilesReader } from "./node-files.js";

export type { PxeBootOptions } from "./layout.js";
export { INDEX_SUFFIX } from "./node-files.js";

/** Modes from the spec (§3.3): the original wrote scripts 0755 and pxelinux files 0644. */
export const NODE_SCRIPT_MODE = 0o755;
export const ENTRY_MODE = 0o644;

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

const FIRMWARE: readonly Firmware[] = ["bios", "uefi"];

/**
 * A BootDriver writing the original BMI's boot files into a TFTP root: `<node>.ipxe` (§4.3),
 * `pxelinux.cfg/01-<mac>` (§4.4, BIOS nodes), plus per-MAC iPXE entries `ipxe-mac/<mac>.ipxe`
 * that any iPXE build reaches through the `ipxe-mac/boot.ipxe` dispatcher (UEFI nodes, and BIOS
 * nodes booted by iPXE directly). Writes are atomic (temp file + rename); every path is joined
 * with `safeJoin`, so nothing lands outside the root.
 */
export function createPxeBoot(options: PxeBootOptions): PxeBoot {
  const layout = resolveLayout(options);
  const fs = createBootFs(layout);
  const reader = createNodeFilesReader(layout, fs);
  const { root, ipxeDir, pxelinuxDir, macScriptDir, dhcpHostsDir } = layout;
  return {
    name: "pxe",
    capabilities: { firmware: FIRMWARE },
    layout: { root, ipxeDir, pxelinuxDir, macScriptDir, dhcpHostsDir },

    async write(spec: BootSpec, call?: CallOptions): Promise<BootEntry> {
      const input = kit.input(BootSpecSchema, spec, "boot");
      kit.checkSignal(call, "write");
      const macs = [...new Set(input.macs)];
      await refuseMacClashes(layout, reader, input.node, macs);
      const before = await reader.nodeFiles(input.node);
      const plan = await planFiles(layout, reader, input, macs, before);
      await applyPlan(layout, fs, plan, before, call);
      (await reader.legacyEntries()).delete(input.node);
      const entry = await reader.entryFor(input.node);
      if (entry === null)
        throw new BmiError("internal", `boot files of ${input.node} vanished`, { subsystem: "boot" });
      return entry;
    },

    async remove(node: string, call?: CallOptions): Promise<void> {
      const name = kit.input(NodeName, node, "node");
      kit.checkSignal(call, "remove");
      const { own, hosts } = await reader.nodeFiles(name);
      // The DHCP entry first: a node being removed gets no new lease, then no boot file.
      const hostsFile = layout.hostsFileOf(name);
      if (hosts !== null && hostsFile !== null) {
        await fs.removeFile(hostsFile);
        await layout.reload();
      }
      // The address is free once dnsmasq no longer gives it to this node.
      await layout.book?.release(name);
      // Per-MAC entries next: a half-removed node then has no way to reach a missing script.
      // The index goes last, so a removal cut short is finished by the next one.
      await all(own.map((entry) => fs.removeFile(entry.file)));
      await fs.removeFile(reader.nodeScriptOf(name));
      await fs.removeFile(reader.indexOf(name));
      (await reader.legacyEntries()).delete(name);
    },

    async read(node: string, call?: CallOptions): Promise<BootEntry | null> {
      const name = kit.input(NodeName, node, "node");
      kit.checkSignal(call, "read");
      return reader.entryFor(name);
    },

    async list(call?: CallOptions): Promise<BootEntry[]> {
      kit.checkSignal(call, "list");
      return reader.listEntries();
    },
  };
}

/** A MAC that already boots another node is refused: only the files named after it can clash. */
async function refuseMacClashes(layout: Layout, reader: NodeFilesReader, node: string, macs: string[]) {
  const legacy = [...(await reader.legacyEntries()).values()].flat();
  for (const mac of macs) {
    const files = [
      under(layout.pxelinuxDir, `01-${hyphenated(mac)}`),
      under(layout.macScriptDir, `${hyphenated(mac)}.ipxe`),
      ...legacy.flatMap((entry) => (entry.mac === mac ? [entry.file] : [])),
    ];
    for (const file of new Set(files)) {
      const entry = await reader.entryAt(file);
      if (entry !== null && entry.node !== node) {
        throw new BmiError("conflict", `MAC ${entry.mac} already boots node ${entry.node}`, {
          subsystem: "boot",
          details: { mac: entry.mac, node: entry.node, file: entry.file },
        });
      }
    }
  }
}

interface Plan {
  node: string;
  /** Every file the node must have, with its text and mode. */
  wanted: Map<string, { text: string; mode: number }>;
  /** The per-MAC entries among them (what the index lists). */
  entryFiles: string[];
  /** Per-MAC entries the node has and must no longer have. */
  stale: string[];
  index: string;
  hostsFile: string | null;
  /** dnsmasq forgets a changed entry's old MACs only when told (new files it reads by itself). */
  hostsChanged: boolean;
}

/** What the node's files must become; claims its fixed address (kept on rewrites). */
async function planFiles(
  layout: Layout,
  reader: NodeFilesReader,
  input: BootSpec,
  macs: string[],
  before: NodeFiles,
): Promise<Plan> {
  const script = reader.nodeScriptOf(input.node);
  const wanted = new Map<string, { text: string; mode: number }>();
  wanted.set(script, {
    text: renderNodeScript(input.target as TargetInfo, { bootNic: layout.bootNic }),
    mode: NODE_SCRIPT_MODE,
  });
  for (const mac of macs) {
    if (input.firmware === "bios") {
      const entry = { label: input.label, kernel: layout.kernel, initrd: script, timeout: layout.timeout };
      wanted.set(under(layout.pxelinuxDir, `01-${hyphenated(mac)}`), {
        text: renderPxelinuxEntry(entry),
        mode: ENTRY_MODE,
      });
    }
    wanted.set(under(layout.macScriptDir, `${hyphenated(mac)}.ipxe`), {
      text: renderMacScript(script),
      mode: ENTRY_MODE,
    });
  }
  const hostsFile = layout.hostsFileOf(input.node);
  // Claimed before anything is written (released by applyPlan if the write fails).
  const address = layout.book === null ? null : await layout.book.claim(input.node);
  const hostsText = renderHostsFile(input.node, macs, address);
  if (hostsFile !== null) wanted.set(hostsFile, { text: hostsText, mode: ENTRY_MODE });
  const hostsChanged =
    before.hosts !== null &&
    renderHostsFile(input.node, before.hosts.macs, before.hosts.address) !== hostsText;
  return {
    node: input.node,
    wanted,
    entryFiles: [...wanted.keys()].filter((file) => file !== script && file !== hostsFile),
    stale: before.own.filter((entry) => !wanted.has(entry.file)).map((entry) => entry.file),
    index: reader.indexOf(input.node),
    hostsFile,
    hostsChanged,
  };
}

/** Writes the plan so that a crash at any point leaves every file findable by the index. */
async function applyPlan(layout: Layout, fs: BootFs, plan: Plan, before: NodeFiles, call?: CallOptions) {
  const { node, wanted, entryFiles, stale, index } = plan;
  const existed =
    before.script !== null || before.own.length > 0 || before.index !== null || before.hosts !== null;
  const renderIndex = (files: readonly string[]) => `${JSON.stringify({ node, files: [...files].sort() })}\n`;
  try {
    // The index first, naming old and new entries: a crash midway leaves every file findable.
    const during = [...entryFiles, ...stale];
    if (!sameFiles(before.index, during)) await fs.write(index, renderIndex(during), ENTRY_MODE);
    kit.checkSignal(call, "write");
    // Each file is atomic on its own and the index already names them all: write in parallel.
    await all([...wanted].map(([rel, { text, mode }]) => fs.write(rel, text, mode)));
    // Entries the node no longer has (dropped MACs, a firmware switch, upper-case names an
    // earlier BMI wrote) would keep booting it from another NIC: remove them.
    await all(stale.map(fs.removeFile));
    if (stale.length > 0) await fs.write(index, renderIndex(entryFiles), ENTRY_MODE);
    if (plan.hostsChanged) await layout.reload();
  } catch (error) {
    // A node that had no files must not be left half-written (dnsmasq may have read its entry).
    if (!existed) {
      await Promise.allSettled([...wanted.keys(), index].map(fs.removeFile));
      if (plan.hostsFile !== null) await layout.reload().catch(() => undefined);
      await layout.book?.release(node).catch(() => undefined);
    }
    throw error;
  }
}

const sameFiles = (a: readonly string[] | null, b: readonly string[]) =>
  a !== null && a.length === b.length && [...a].sort().every((file, i) => file === [...b].sort()[i]);

/** Registers a PXE boot driver as the container's BootDriver (`TOKENS.boot`). */
export const registerPxeBoot = registrar(TOKENS.boot, createPxeBoot);
