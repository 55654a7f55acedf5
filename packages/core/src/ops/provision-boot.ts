import pLimit from "p-limit";
import { z } from "zod";
import type { Provisioning } from "../domain/model.js";
import { parseInput } from "../domain/validate.js";
import { BmiError, toBmiError } from "../errors/index.js";
import { type BootWaitResult, prepareBootWait } from "./boot-wait.js";
import type { OperationOptions } from "./call-context.js";
import type { BmiContext } from "./context.js";
import * as nodes from "./nodes.js";
import { powerNode, requirePower } from "./power.js";

const BootFields = z.strictObject({
  /** After provisioning: `cycle` (reset, or power on if off), `on`, or `none` (default). */
  power: z.enum(["cycle", "on", "none"]).optional(),
  /** Wait until the node has booted from its disk (needs `power`). */
  wait: z.boolean().optional(),
  /** How long the wait may take (default 10 minutes). */
  timeoutMs: z.number().int().min(1).max(86_400_000).optional(),
  /**
   * The stage that counts as booted (default `os_login`): `firmware_login` for an image whose
   * OS never logs in to the target again (a boot sector, an OS that copies itself to RAM).
   */
  until: z.enum(["firmware_login", "os_login"]).optional(),
});
type BootFields = z.output<typeof BootFields>;

export type ProvisionBootInput = nodes.ProvisionInput & z.input<typeof BootFields>;

/** A provisioning, with what the boot wait saw when one was asked for. */
export type ProvisionResult = Provisioning & { boot?: BootWaitResult };

/** Splits the power fields from the provisioning's own, validating both before anything runs. */
function split(input: ProvisionBootInput): { boot: BootFields; rest: nodes.ProvisionInput } {
  if (typeof input !== "object" || input === null) return { boot: {}, rest: input };
  const { power, wait, timeoutMs, until, ...rest } = input;
  const boot = parseInput(BootFields, { power, wait, timeoutMs, until }, "input");
  if (boot.wait && (boot.power ?? "none") === "none") {
    throw new BmiError(
      "invalid_input",
      "input.wait needs input.power (cycle or on): BMI waits for a boot it started",
      {
        details: { field: "wait" },
      },
    );
  }
  return { boot, rest };
}

/**
 * `provision`, then (when asked) boot device PXE, power, and a wait for the boot. The
 * provisioning is kept whatever the power or the wait do: a failed boot is the node's state, not
 * a reason to undo its disk. A wait that does not succeed rejects with `timeout`, `cancelled` or
 * `conflict`, its stages in `details.boot`.
 */
export async function provisionAndBoot(
  ctx: BmiContext,
  input: ProvisionBootInput,
  options: OperationOptions = {},
): Promise<ProvisionResult> {
  const { boot, rest } = split(input);
  if (boot.power && boot.power !== "none") requirePower(ctx);
  const record = await nodes.provision(ctx, rest);
  if (!boot.power || boot.power === "none") return record;
  const who = { project: record.project, node: record.node };
  const watch = boot.wait
    ? await prepareBootWait(
        ctx,
        { ...who, ...(boot.until ? { until: boot.until } : {}) },
        {
          ...options,
          ...(boot.timeoutMs ? { timeoutMs: boot.timeoutMs } : {}),
        },
      )
    : undefined;
  const bootDevice = ctx.drivers.power?.capabilities.bootDevice ? ("pxe" as const) : undefined;
  await powerNode(ctx, { ...who, action: boot.power, force: true, ...(bootDevice ? { bootDevice } : {}) });
  if (!watch) return record;
  const result = await watch.wait();
  if (result.state === "SUCCESS") return { ...record, boot: result };
  const code = result.state === "TIMEOUT" ? "timeout" : result.state === "ABORTED" ? "cancelled" : "conflict";
  throw new BmiError(code, `node ${record.node} is provisioned, but ${result.reason ?? "did not boot"}`, {
    subsystem: "power",
    retryable: false,
    details: { node: record.node, boot: result },
  });
}

/** Provisions (and powers) many nodes with at most `concurrency` at once, each on its own. */
export async function provisionManyAndBoot(
  ctx: BmiContext,
  inputs: ProvisionBootInput[],
  options: { concurrency?: number } & OperationOptions = {},
): Promise<nodes.BatchResult<ProvisionResult>[]> {
  const concurrency = parseInput(
    z.number().int().min(1).max(256),
    options.concurrency ?? 4,
    "options.concurrency",
  );
  parseInput(z.array(z.unknown()), inputs, "inputs");
  const limit = pLimit(concurrency);
  const call = options.signal ? { signal: options.signal } : {};
  return Promise.all(
    inputs.map((input) =>
      limit(async (): Promise<nodes.BatchResult<ProvisionResult>> => {
        try {
          // Provision first: it rejects a malformed item (even null) as invalid_input before `.node` is read.
          const value = await provisionAndBoot(ctx, input, call);
          return { ok: true, node: value.node, value };
        } catch (error) {
          const node = typeof input?.node === "string" ? input.node : "(invalid)";
          return { ok: false, node, error: toBmiError(error) };
        }
      }),
    ),
  );
}

const PowerOffField = z.strictObject({
  /** Power the node off (through its BMC) before its boot files and network go. */
  powerOff: z.boolean().optional(),
});
export type DeprovisionPowerInput = nodes.DeprovisionInput & z.input<typeof PowerOffField>;

/** `deprovision`, first powering the node off when asked, so it never boots a half-removed disk. */
export async function deprovisionAndPowerOff(ctx: BmiContext, input: DeprovisionPowerInput): Promise<void> {
  if (typeof input !== "object" || input === null) return nodes.deprovision(ctx, input);
  const { powerOff, ...rest } = input;
  const fields = parseInput(PowerOffField, { powerOff }, "input");
  if (fields.powerOff) {
    requirePower(ctx);
    const record = await ctx.store.provisionings.get(rest.node);
    if (record && record.project === rest.project)
      await powerNode(ctx, { project: rest.project, node: rest.node, action: "off" });
  }
  return nodes.deprovision(ctx, rest);
}
