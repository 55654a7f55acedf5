import { z } from "zod";
import { Host, MacAddress, NAME_MAX, NodeName, Port, TargetName } from "./names.js";

/** How an initiator reaches a disk (a {@link TargetInfo}), validated. */
export const TargetInfoSchema = z.object({
  name: TargetName,
  portal: Host,
  port: Port,
  lun: z.number().int().min(0).max(16383),
});

/** A menu label in a boot file (the original used the disk name). */
export const BootLabel = z
  .string({ error: "label must be a string" })
  .min(1, { error: "label must not be empty" })
  .max(NAME_MAX, { error: `label must be at most ${NAME_MAX} characters` })
  .regex(/^[A-Za-z0-9_][A-Za-z0-9_.-]*$/, {
    error: "label may only contain ASCII letters, digits, '_', '.' and '-'",
  });

/**
 * The rules every boot driver applies to a `BootSpec` before writing anything: no value can add
 * a line to a boot file or a segment to a path (SEC-5).
 */
export const BootSpecSchema = z.object({
  node: NodeName,
  macs: z.array(MacAddress).min(1, { error: "at least one MAC address is needed" }),
  target: TargetInfoSchema,
  firmware: z.enum(["bios", "uefi"], { error: "firmware must be 'bios' or 'uefi'" }),
  label: BootLabel,
});
