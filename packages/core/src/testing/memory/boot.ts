import type { z } from "zod";
import { type AddressRange, addressesIn } from "../../domain/addresses.js";
import type { Firmware, TargetInfo } from "../../domain/model.js";
import { NodeName } from "../../domain/names.js";
import { BootSpecSchema } from "../../domain/schemas.js";
import { BmiError } from "../../errors/index.js";
import type { BootDriver, BootEntry, BootSpec } from "../../ports/boot.js";
import type { CallOptions } from "../../ports/common.js";
import { driverKit } from "../../ports/driver-kit.js";
import { createFaultGate } from "./fault-gate.js";

export type MemoryBootOperation = "write" | "remove" | "read" | "list";

export interface MemoryBootOptions {
  /** Firmware types to claim in `capabilities` (default: bios and uefi). */
  firmware?: readonly Firmware[];
  /**
   * Failure injection: called before every operation; return an error to make that call fail
   * (before it changes anything), or undefined to let it run.
   */
  failWith?: (operation: MemoryBootOperation, node: string | undefined) => Error | undefined;
  /**
   * Give each node a fixed address from this range (lowest free one, kept while the node has boot
   * files), as the PXE driver's `nodeAddresses` does; reported as `BootEntry.address`.
   */
  nodeAddresses?: AddressRange;
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
  address?: string;
}

const macFile = (mac: string) => `01-${mac.replaceAll(":", "-")}`;

const kit = driverKit("boot");

const entryOf = (stored: Stored): BootEntry => ({
  node: stored.node,
  macs: [...stored.macs],
  target: { ...stored.target },
  firmware: stored.firmware,
  files: [...stored.files],
  ...(stored.address ? { address: stored.address } : {}),
});

/** The node's address: the one it has, else the lowest no other node has. */
function addressFor(nodes: ReadonlyMap<string, Stored>, node: string, range: AddressRange | undefined) {
  if (!range) return undefined;
  const own = nodes.get(node)?.address;
  if (own) return own;
  const taken = new Set([...nodes.values()].map((n) => n.address));
  const free = addressesIn(range).find((a) => !taken.has(a));
  if (free) return free;
  throw new BmiError("unavailable", `no free node address left in ${range.first}-${range.last}`, {
    subsystem: "boot",
    details: { node },
  });
}

/** The same kinds of files the PXE driver writes: the node's iPXE script and one entry per MAC. */
function render(spec: z.output<typeof Spec>): Map<string, string> {
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
}

/** A MAC boots one node: `conflict` when one of `macs` already boots a node other than `node`. */
function refuseSharedMac(nodes: ReadonlyMap<string, Stored>, node: string, macs: readonly string[]): void {
  for (const [other, stored] of nodes) {
    const shared = stored.macs.find((mac) => other !== node && macs.includes(mac));
    if (shared) {
      throw new BmiError("conflict", `MAC ${shared} already boots node ${other}`, {
        subsystem: "boot",
        details: { mac: shared, node: other },
      });
    }
  }
}

function refuseFirmware(supported: readonly Firmware[], wanted: Firmware): void {
  if (supported.includes(wanted)) return;
  throw new BmiError("unsupported", `this boot driver writes no ${wanted} entries`, {
    subsystem: "boot",
    details: { firmware: wanted },
  });
}

/**
 * An in-memory BootDriver: renders the same kinds of files as the PXE driver into a Map, so
 * unit tests of the operations can see what a node would boot, and fail on demand.
 */
export function createMemoryBoot(options: MemoryBootOptions = {}): MemoryBoot {
  const firmware = options.firmware ?? (["bios", "uefi"] as const);
  const nodes = new Map<string, Stored>();
  const files = new Map<string, string>();
  const faults = createFaultGate<MemoryBootOperation>("boot");

  // Queued failures (failNext) first, then the caller's failWith hook; both before any change.
  const gate = (operation: MemoryBootOperation, node: string | undefined, call?: CallOptions) => {
    faults.enter(operation, call);
    const injected = options.failWith?.(operation, node);
    if (injected) throw injected;
  };
  const forget = (node: string) => {
    for (const path of nodes.get(node)?.files ?? []) files.delete(path);
    nodes.delete(node);
  };

  return {
    name: "memory",
    capabilities: { firmware },
    files,
    failNext: (operation, error) => faults.failNext(operation, error),

    async write(spec: BootSpec, call?: CallOptions): Promise<BootEntry> {
      const parsed = kit.input(Spec, spec, "boot");
      gate("write", parsed.node, call);
      refuseFirmware(firmware, parsed.firmware);
      const macs = [...new Set(parsed.macs)];
      refuseSharedMac(nodes, parsed.node, macs);
      const rendered = render({ ...parsed, macs });
      const address = addressFor(nodes, parsed.node, options.nodeAddresses);
      forget(parsed.node);
      for (const [path, text] of rendered) files.set(path, text);
      const { node, target } = parsed;
      const stored: Stored = {
        node,
        macs,
        target,
        firmware: parsed.firmware,
        files: [...rendered.keys()],
        ...(address ? { address } : {}),
      };
      nodes.set(node, stored);
      return entryOf(stored);
    },

    async remove(node: string, call?: CallOptions): Promise<void> {
      const name = kit.input(NodeName, node, "node");
      gate("remove", name, call);
      forget(name);
    },

    async read(node: string, call?: CallOptions): Promise<BootEntry | null> {
      const name = kit.input(NodeName, node, "node");
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
