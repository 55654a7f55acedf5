import type { CallOptions } from "./common.js";

export type PowerState = "on" | "off" | "unknown";

/** Where the node boots from next: the network (PXE → iPXE → BMI's target) or its local disk. */
export type BootDevice = "pxe" | "disk";

export interface PowerCapabilities {
  /** Can set the boot device (obmd's IPMI driver can; its mock driver knows other devices). */
  bootDevice: boolean;
}

/**
 * A node's power, through its BMC (HIL ≥ 0.4 routes it to the node's obmd). Optional in
 * `createBmi`; the facade checks that the project owns the node before any call.
 * Errors: `not_found` (node), `conflict` (OBM disabled), `unavailable` (BMC unreachable or
 * failing; retryable), `timeout`, `cancelled`, with subsystem `power`.
 */
export interface PowerDriver {
  readonly name: string;
  readonly capabilities: PowerCapabilities;

  powerOn(node: string, options?: CallOptions): Promise<void>;
  /** Hard power off. */
  powerOff(node: string, options?: CallOptions): Promise<void>;
  /** Resets a running node (`force`: hard reset, else a soft ACPI cycle); powers on one that is off. */
  powerCycle(node: string, options?: CallOptions & { force?: boolean }): Promise<void>;
  /** Sets the next (persistent) boot device. */
  setBootDevice(node: string, device: BootDevice, options?: CallOptions): Promise<void>;
  /** The state the BMC reports; `unknown` when it answers something else. */
  powerState(node: string, options?: CallOptions): Promise<PowerState>;
}
