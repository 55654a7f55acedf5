import { z } from "zod";
import { NodeName } from "../../domain/names.js";
import { BmiError } from "../../errors/bmi-error.js";
import type { CallOptions } from "../../ports/common.js";
import { driverKit } from "../../ports/driver-kit.js";
import type { BootDevice, PowerDriver, PowerState } from "../../ports/power.js";
import { createFaultGate } from "./fault-gate.js";

const subsystem = "power" as const;
const kit = driverKit(subsystem);

export type MemoryPowerOperation = "powerOn" | "powerOff" | "powerCycle" | "setBootDevice" | "powerState";

export interface MemoryPowerOptions {
  /** The nodes that have a BMC; every other name is `not_found`. All start powered off. */
  nodes: string[];
}

/** One call that reached a BMC, for "no call reached the BMC" assertions. */
export interface MemoryPowerCall {
  operation: MemoryPowerOperation;
  node: string;
}

export interface MemoryPower extends PowerDriver {
  /** Makes the next call of `operation` throw `error` (default: a retryable `unavailable`). */
  failNext(operation: MemoryPowerOperation, error?: BmiError): void;
  /** Sets the state as if someone pressed the button (or the BMC stopped answering sensibly). */
  setPower(node: string, state: PowerState): void;
  bootDevice(node: string): BootDevice | null;
  /** How many times each node was cycled or powered on (a "boot" count). */
  boots(node: string): number;
  readonly calls: readonly MemoryPowerCall[];
}

interface NodePower {
  state: PowerState;
  device: BootDevice | null;
  boots: number;
}

const optionsSchema = z.strictObject({ nodes: z.array(NodeName) });
const DeviceSchema = z.enum(["pxe", "disk"]);

/** BMCs for unit tests: power state and boot device per node, with injected failures. */
export function createMemoryPower(options: MemoryPowerOptions): MemoryPower {
  const parsed = kit.input(optionsSchema, options, "options");
  const nodes = new Map<string, NodePower>(
    parsed.nodes.map((n) => [n, { state: "off", device: null, boots: 0 }]),
  );
  const gate = createFaultGate<MemoryPowerOperation>(subsystem);
  const calls: MemoryPowerCall[] = [];

  const enter = (operation: MemoryPowerOperation, name: string, call?: CallOptions): NodePower => {
    const node = kit.input(NodeName, name, "node");
    gate.enter(operation, call);
    const found = nodes.get(node);
    if (!found) throw new BmiError("not_found", `node ${node} has no BMC`, { subsystem, details: { node } });
    calls.push({ operation, node });
    return found;
  };
  const boot = (node: NodePower) => {
    node.state = "on";
    node.boots += 1;
  };

  return {
    name: "memory",
    capabilities: { bootDevice: true },
    async powerOn(name, call) {
      const node = enter("powerOn", name, call);
      if (node.state !== "on") boot(node);
    },
    async powerOff(name, call) {
      enter("powerOff", name, call).state = "off";
    },
    async powerCycle(name, call) {
      boot(enter("powerCycle", name, call));
    },
    async setBootDevice(name, device, call) {
      const valid = kit.input(DeviceSchema, device, "device");
      enter("setBootDevice", name, call).device = valid;
    },
    async powerState(name, call) {
      return enter("powerState", name, call).state;
    },
    failNext: (operation, error) => gate.failNext(operation, error),
    setPower(name, state) {
      const node = nodes.get(name);
      if (!node) throw new Error(`node ${name} has no BMC`);
      node.state = state;
    },
    bootDevice: (name) => nodes.get(name)?.device ?? null,
    boots: (name) => nodes.get(name)?.boots ?? 0,
    get calls() {
      return [...calls];
    },
  };
}
