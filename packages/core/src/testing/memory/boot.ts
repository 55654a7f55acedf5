import type { z } from "zod";
import type { Firmware, TargetInfo } from "../../domain/model.js";
import { NodeName } from "../../domain/names.js";
import { BootSpecSchema } from "../../domain/schemas.js";
import { parseInput } from "../../domain/validate.js";
import { BmiError } from "../../errors/index.js";
import type { BootDriver, BootEntry, BootSpec } from "../../ports/boot.js";
import type { CallOptions } from "../../ports/common.js";

export type MemoryBootOperation = "write" | "remove" | "read" | "list";

export interface MemoryBootOptions {
  /** Firmware types to claim in `capabilities` (default: bios and uefi). */
  firmware?: readonly Firmware[];
  /**
   * Failure injection: called before every operation; return an error to make that call fail
   * (before it changes anything), or undefined to let it run.
   */
  failWith?: (operation: MemoryBootOperation, node: string | undefined) => Error | undefined;
}

export interface MemoryBoot extends BootDriver {
  /** The rendered files by path relative to the (virtual) root, for assertions. */
  readonly files: ReadonlyMap<string, string>;
  /** Makes the next call of `operation` fail with `error` (default: a retryable `unavailable`). */
  failNext(operation: MemoryBootOperation, error?: Error): void;
}

const Spec = BootSpecSchema;

interface Stored {
  node: string;
  macs: string[];
  target: TargetInfo;
  firmware: Firmware;
  files: string[];
}

const macFile = (mac: string) => `01-${mac.replaceAll(":", "-")}`;

/**
 * An in-memory BootDriver: renders the same kinds of files as the PXE driver into a Map, so
 * unit tests of the operations can see what a node would boot, and fail on demand.
 */
export function createMemoryBoot(options: MemoryBootOptions = {}): MemoryBoot {
  const firmware = options.firmware ?? (["bios", "uefi"] as const);
  const nodes = new Map<string, Stored>();
  const files = new Map<string, string>();
  const pending = new Map<MemoryBootOperation, Error>();

  const gate = (operation: MemoryBootOperation, node: string | undefined, call?: CallOptions) => {
    if (call?.signal?.aborted) {
      throw new BmiError("cancelled", `boot ${operation} was cancelled`, { subsystem: "boot" });
    }
    const once = pending.get(operation);
    if (once) {
      pending.delete(operation);
      throw once;
    }
    const injected = options.failWith?.(operation, node);
    if (injected) throw injected;
  };

  const entryOf = (stored: Stored): BootEntry => ({
    node: stored.node,
    macs: [...stored.macs],
    target: { ...stored.target },
    firmware: stored.firmware,
    files: [...stored.files],
  });

  const render = (spec: z.output<typeof Spec>): Map<string, string> => {
    const { node, target } = spec;
    const out = new Map<string, string>();
    out.set(
      `${node}.ipxe`,
      `#!ipxe\nset keep-san 1\ndhcp\nsanboot --keep iscsi:${target.portal}::${target.port}:${target.lun}:${target.name}\nboot\n`,
    );
    for (const mac of spec.macs) {
      out.set(
        spec.firmware === "bios" ? `pxelinux.cfg/${macFile(mac)}` : `${mac.replaceAll(":", "-")}.ipxe`,
        spec.firmware === "bios"
          ? `DEFAULT ${spec.label}\nLABEL ${spec.label}\n  KERNEL ipxe.lkrn\n  INITRD ${node}.ipxe\n`
          : `#!ipxe\nchain ${node}.ipxe\n`,
      );
    }
    return out;
  };

  return {
    name: "memory",
    capabilities: { firmware },
    files,

    failNext(operation, error) {
      pending.set(
        operation,
        error ?? new BmiError("unavailable", `injected ${operation} failure`, { subsystem: "boot" }),
      );
    },

    async write(spec: BootSpec, call?: CallOptions): Promise<BootEntry> {
      const parsed = parseInput(Spec, spec, "boot", "boot");
      gate("write", parsed.node, call);
      if (!firmware.includes(parsed.firmware)) {
        throw new BmiError("unsupported", `this boot driver writes no ${parsed.firmware} entries`, {
          subsystem: "boot",
          details: { firmware: parsed.firmware },
        });
      }
      const macs = [...new Set(parsed.macs)];
      for (const [other, stored] of nodes) {
        const shared = stored.macs.find((mac) => other !== parsed.node && macs.includes(mac));
        if (shared) {
          throw new BmiError("conflict", `MAC ${shared} already boots node ${other}`, {
            subsystem: "boot",
            details: { mac: shared, node: other },
          });
        }
      }
      const rendered = render({ ...parsed, macs });
      const old = nodes.get(parsed.node);
      for (const path of old?.files ?? []) files.delete(path);
      for (const [path, text] of rendered) files.set(path, text);
      const stored: Stored = {
        node: parsed.node,
        macs,
        target: parsed.target,
        firmware: parsed.firmware,
        files: [...rendered.keys()],
      };
      nodes.set(parsed.node, stored);
      return entryOf(stored);
    },

    async remove(node: string, call?: CallOptions): Promise<void> {
      const name = parseInput(NodeName, node, "node", "boot");
      gate("remove", name, call);
      const stored = nodes.get(name);
      if (!stored) return;
      for (const path of stored.files) files.delete(path);
      nodes.delete(name);
    },

    async read(node: string, call?: CallOptions): Promise<BootEntry | null> {
      const name = parseInput(NodeName, node, "node", "boot");
      gate("read", name, call);
      const stored = nodes.get(name);
      return stored ? entryOf(stored) : null;
    },

    async list(call?: CallOptions): Promise<BootEntry[]> {
      gate("list", undefined, call);
      return [...nodes.values()].sort((a, b) => a.node.localeCompare(b.node)).map(entryOf);
    },
  };
}
