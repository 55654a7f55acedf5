import {
  type BmiConfig,
  BmiError,
  type BootDevice,
  type CallOptions,
  driverKit,
  NodeName,
  type PowerDriver,
  type PowerState,
  parseInput,
} from "@bmi/core";
import { z } from "zod";
import { createHilClient, type HilClient, type HilClientOptions, type ObmOperation } from "./client.js";
import { hilOptionsFromConfig } from "./driver.js";

export interface HilPowerOptions extends HilClientOptions {
  /**
   * Reported as `capabilities.bootDevice`; default true (obmd's IPMI driver takes `pxe`/`disk`;
   * its mock driver knows only `A`/`B`, so set false there).
   */
  bootDevice?: boolean;
  /** Use this client instead of creating one (share it with the isolation driver). */
  client?: HilClient;
}

const subsystem = "power" as const;
const kit = driverKit(subsystem);
const DeviceSchema = z.enum(["pxe", "disk"], { error: "boot device must be pxe or disk" });
const StatusSchema = z.object({ power_status: z.string() });

/** obmd's text (ipmitool's "Chassis Power is on", obmd's own "on"/"off", "Mock Status") → a state. */
export function powerStateOf(text: string): PowerState {
  const t = text.trim().toLowerCase();
  if (t === "on" || /\bpower is on\b/.test(t)) return "on";
  if (t === "off" || /\bpower is off\b/.test(t)) return "off";
  return "unknown";
}

/** The client's error, re-labelled for the power port and naming the node. */
function powerError(error: unknown, node: string, op: ObmOperation): unknown {
  if (!(error instanceof BmiError)) return error;
  const blocked = error.code === "conflict" && /OBM is not enabled/i.test(error.message);
  const message = blocked
    ? `the OBM of node ${node} is not enabled in HIL (PUT /v0/node/${node}/obm {"enabled": true} first)`
    : `power ${op} of node ${node}: ${error.message}`;
  return new BmiError(error.code, message, {
    subsystem,
    retryable: error.retryable,
    details: { ...error.details, node },
    cause: error,
  });
}

/**
 * The PowerDriver over HIL's OBM API (v0.4+): each call goes to HIL, which answers 307 to the
 * node's obmd; the client repeats it there without HIL's credentials. A power POST that may have
 * reached obmd (timeout, reset) is never repeated: the error says `details.outcome: "unknown"`.
 */
export function createHilPower(options: HilPowerOptions): PowerDriver & { client: HilClient } {
  const { bootDevice, client: given, ...clientOptions } = options;
  const client = given ?? createHilClient(clientOptions);

  async function obm(name: string, op: ObmOperation, o: CallOptions | undefined, body?: unknown) {
    const node = parseInput(NodeName, name, "node", subsystem);
    kit.checkSignal(o, `${op} of node ${node}`);
    try {
      return await client.obm(node, op, { body, signal: o?.signal });
    } catch (error) {
      throw powerError(error, node, op);
    }
  }

  return {
    name: "hil",
    capabilities: { bootDevice: bootDevice ?? true },
    client,
    async powerOn(node, o) {
      await obm(node, "power_on", o);
    },
    async powerOff(node, o) {
      await obm(node, "power_off", o);
    },
    async powerCycle(node, o) {
      // obmd answers 400 to a power_cycle without a body, though HIL makes `force` optional.
      await obm(node, "power_cycle", o, { force: o?.force ?? false });
    },
    async setBootDevice(node, device: BootDevice, o) {
      const valid = parseInput(DeviceSchema, device, "device", subsystem);
      if (bootDevice === false) {
        throw new BmiError("unsupported", "this HIL power driver was configured without boot devices", {
          subsystem,
        });
      }
      await obm(node, "boot_device", o, { bootdev: valid });
    },
    async powerState(node, o) {
      const text = await obm(node, "power_status", o);
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch {
        value = undefined;
      }
      const parsed = StatusSchema.safeParse(value);
      if (!parsed.success) {
        throw new BmiError(
          "internal",
          `power status of node ${node}: obmd's answer is not {"power_status"}`,
          {
            subsystem,
            details: { node },
          },
        );
      }
      return powerStateOf(parsed.data.power_status);
    },
  };
}

/** Power options from a loaded `bmi_config.cfg`: the same HIL endpoint and account as isolation. */
export function powerOptionsFromConfig(
  config: Pick<BmiConfig, "net_isolator">,
  env: Record<string, string | undefined> = process.env,
): HilPowerOptions {
  const { url, timeoutMs, username, password } = hilOptionsFromConfig(config, env);
  return {
    url,
    ...(timeoutMs === undefined ? {} : { timeoutMs }),
    ...(username === undefined ? {} : { username }),
    ...(password === undefined ? {} : { password }),
  };
}
