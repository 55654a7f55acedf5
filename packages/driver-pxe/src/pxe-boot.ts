import { readdir, readFile, rm } from "node:fs/promises";
import { isAbsolute, posix, relative, resolve, sep } from "node:path";
import {
  BmiError,
  type BootDriver,
  type BootEntry,
  type BootSpec,
  BootSpecSchema,
  type CallOptions,
  type DependencyContainer,
  type Firmware,
  NodeName,
  parseInput,
  safeJoin,
  type TargetInfo,
  TOKENS,
  writeFileAtomic,
} from "@bmi/core";
import { z } from "zod";
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

/** Modes from the spec (§3.3): the original wrote scripts 0755 and pxelinux files 0644. */
export const NODE_SCRIPT_MODE = 0o755;
export const ENTRY_MODE = 0o644;

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
}

export interface PxeBoot extends BootDriver {
  /** The resolved layout, relative to the root ("" = the root itself). */
  readonly layout: { root: string; ipxeDir: string; pxelinuxDir: string; macScriptDir: string };
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

  /** Every per-MAC entry under the root that boots a BMI node script. */
  const macEntries = async (): Promise<MacEntry[]> => {
    const found: MacEntry[] = [];
    for (const [dir, kind] of [
      [pxelinuxDir, "pxelinux"],
      [macScriptDir, "ipxe"],
    ] as const) {
      for (const name of await listDir(dir)) {
        const mac = macFromFileName(name, kind);
        if (mac === null) continue;
        const file = under(dir, name);
        const text = await readText(file);
        if (text === null) continue;
        const script =
          kind === "pxelinux" ? (parsePxelinuxEntry(text)?.initrd ?? null) : parseMacScript(text);
        const node = script === null ? null : nodeOfScript(script);
        if (node !== null) found.push({ mac, file, kind, node });
      }
    }
    return found;
  };

  const entryFor = async (node: string, entries: MacEntry[]): Promise<BootEntry | null> => {
    const script = nodeScriptOf(node);
    const text = await readText(script);
    const own = entries.filter((entry) => entry.node === node);
    if (text === null && own.length === 0) return null;
    const files = [...(text === null ? [] : [script]), ...own.map((entry) => entry.file)].sort();
    return {
      node,
      macs: [...new Set(own.map((entry) => entry.mac))].sort(),
      target: text === null ? null : parseNodeScript(text),
      firmware: own.some((entry) => entry.kind === "pxelinux") || own.length === 0 ? "bios" : "uefi",
      files,
    };
  };

  const removeFile = async (rel: string) => {
    try {
      await rm(abs(rel), { force: true });
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

  return {
    name: "pxe",
    capabilities: { firmware: FIRMWARE },
    layout: { root, ipxeDir, pxelinuxDir, macScriptDir },

    async write(spec: BootSpec, call?: CallOptions): Promise<BootEntry> {
      const input = parseInput(Spec, spec, "boot", "boot");
      checkSignal(call?.signal, "write");
      const macs = [...new Set(input.macs)];
      const before = await macEntries();
      for (const entry of before) {
        if (entry.node !== input.node && macs.includes(entry.mac)) {
          throw new BmiError("conflict", `MAC ${entry.mac} already boots node ${entry.node}`, {
            subsystem: "boot",
            details: { mac: entry.mac, node: entry.node, file: entry.file },
          });
        }
      }
      const existed = (await entryFor(input.node, before)) !== null;
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
      try {
        for (const [rel, { text, mode }] of wanted) {
          checkSignal(call?.signal, "write");
          await write(rel, text, mode);
        }
        // Entries the node no longer has (dropped MACs, a firmware switch, upper-case names an
        // earlier BMI wrote) would keep booting it from another NIC: remove them.
        for (const entry of before) {
          if (entry.node === input.node && !wanted.has(entry.file)) await removeFile(entry.file);
        }
      } catch (error) {
        // A node that had no files must not be left half-written.
        if (!existed) await Promise.allSettled([...wanted.keys()].map(removeFile));
        throw error;
      }
      const entry = await entryFor(input.node, await macEntries());
      if (entry === null)
        throw new BmiError("internal", `boot files of ${input.node} vanished`, { subsystem: "boot" });
      return entry;
    },

    async remove(node: string, call?: CallOptions): Promise<void> {
      const name = parseInput(NodeName, node, "node", "boot");
      checkSignal(call?.signal, "remove");
      // Per-MAC entries first: a half-removed node then has no way to reach a missing script.
      for (const entry of await macEntries()) {
        if (entry.node === name) await removeFile(entry.file);
      }
      await removeFile(nodeScriptOf(name));
    },

    async read(node: string, call?: CallOptions): Promise<BootEntry | null> {
      const name = parseInput(NodeName, node, "node", "boot");
      checkSignal(call?.signal, "read");
      return entryFor(name, await macEntries());
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
      const result: BootEntry[] = [];
      for (const node of [...nodes].sort()) {
        const entry = await entryFor(node, entries);
        if (entry !== null) result.push(entry);
      }
      return result;
    },
  };
}

/** Registers a PXE boot driver as the container's BootDriver. */
export function registerPxeBoot(container: DependencyContainer, options: PxeBootOptions): PxeBoot {
  const driver = createPxeBoot(options);
  container.registerInstance(TOKENS.boot, driver);
  return driver;
}
