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

/** An initiator ACL entry by address: IPv4 or IPv4/CIDR. */
export const InitiatorAddress = z
  .string()
  .regex(/^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}(\/([0-9]|[12]\d|3[0-2]))?$/, {
    error: "must be an IPv4 address or CIDR",
  });

/** An initiator ACL entry by name (RFC 3720: iqn., eui. or naa.). */
export const InitiatorName = z
  .string()
  .regex(
    /^(iqn\.\d{4}-\d{2}\.[a-z0-9.-]+(:[A-Za-z0-9_.:-]+)?|eui\.[0-9A-Fa-f]{16}|naa\.[0-9A-Fa-f]{16,32})$/,
    {
      error: "must be an iSCSI initiator name (iqn., eui. or naa.)",
    },
  );

/** The access rules every export driver accepts (an `ExportAccess`), validated. */
export const ExportAccessSchema = z.object({
  initiators: z.union([
    z.literal("ALL"),
    z
      .object({ addresses: z.array(InitiatorAddress).optional(), names: z.array(InitiatorName).optional() })
      .refine((v) => (v.addresses?.length ?? 0) + (v.names?.length ?? 0) > 0, {
        error: 'name at least one initiator address or name, or pass "ALL" explicitly',
      }),
  ]),
  chap: z
    .object({
      user: z
        .string()
        .regex(/^[A-Za-z0-9_.:@-]{1,64}$/, { error: "CHAP user may only use letters, digits, _.:@-" }),
      // RFC 3720 wants at least 12 bytes; tgt refuses control characters and spaces in secrets.
      secret: z
        .string()
        .regex(/^[\x21-\x7e]{12,255}$/, { error: "CHAP secret must be 12-255 printable characters" }),
    })
    .optional(),
});
