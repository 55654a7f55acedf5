import { z } from "zod";

/**
 * Name rules. BMI names end up in RBD image names, iSCSI target names, file names in the TFTP
 * root and HIL URL path segments, so they are restricted to a set that is safe in all four:
 * ASCII letters, digits, `_`, `.`, `-`; starting with a letter, digit or `_`; at most 100 chars.
 * That keeps every name the original BMI used in practice (`centos7-golden`, `bmi_infra`,
 * `node-07`) and makes path separators, shell metacharacters, whitespace and newlines impossible.
 */
export const NAME_MAX = 100;
const NAME_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;

const name = (what: string) =>
  z
    .string({ error: `${what} must be a string` })
    .min(1, { error: `${what} must not be empty` })
    .max(NAME_MAX, { error: `${what} must be at most ${NAME_MAX} characters` })
    .regex(NAME_RE, {
      error: `${what} may only contain ASCII letters, digits, '_', '.' and '-', and must start with a letter, digit or '_'`,
    });

export const ProjectName = name("project name");
export const ImageName = name("image name");
export const DiskName = name("disk name");
export const SnapshotName = name("snapshot name");
export const NodeName = name("node name");
export const NicLabel = name("NIC label");
export const NetworkName = name("network name");

/** `[bmi] uid`: the RBD prefix separating deployments that share a pool. Must not contain `img`. */
export const Uid = z
  .string()
  .regex(/^[A-Za-z0-9]{1,32}$/, { error: "uid may only contain ASCII letters and digits (1-32)" })
  .refine((v) => !v.toLowerCase().includes("img"), {
    error: "uid must not contain 'img' (RBD names are <uid>img<id>)",
  });

/** A Ceph pool name. */
export const PoolName = z.string().regex(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$/, {
  error: "pool name may only contain letters, digits, '_', '.', '-'",
});

/** An RBD image name as stored in Ceph (e.g. `1img12`, or an imported source like `centos7`). */
export const RbdImageName = z
  .string()
  .min(1, { error: "RBD image name must not be empty" })
  .max(NAME_MAX, { error: `RBD image name must be at most ${NAME_MAX} characters` })
  .regex(NAME_RE, { error: "RBD image name may only contain ASCII letters, digits, '_', '.' and '-'" });

/** An RBD snapshot name (e.g. `bmi_created_snapshot`). */
export const RbdSnapshotName = RbdImageName.describe("RBD snapshot name");

/**
 * A MAC address in `aa:bb:cc:dd:ee:ff` or `AA-BB-CC-DD-EE-FF` form, normalised to lower-case
 * colon form (pxelinux looks for lower-case file names; the original kept HIL's case: COR-6).
 */
export const MacAddress = z
  .string({ error: "MAC address must be a string" })
  .regex(/^[0-9A-Fa-f]{2}([:-])[0-9A-Fa-f]{2}(\1[0-9A-Fa-f]{2}){4}$/, {
    error: "MAC address must be six hex pairs separated by ':' or '-' (e.g. 52:54:00:aa:bb:01)",
  })
  .transform((v) => v.toLowerCase().replaceAll("-", ":"));
export type MacAddress = z.output<typeof MacAddress>;

/** `iqn.<yyyy-mm>.<reverse domain>`: the prefix of generated iSCSI target names. */
export const IqnPrefix = z.string().regex(/^iqn\.\d{4}-\d{2}\.[a-z0-9][a-z0-9.-]*[a-z0-9](:[a-z0-9.-]+)?$/, {
  error: "IQN prefix must look like iqn.2024-01.org.example (lower case, RFC 3720)",
});

/** An iSCSI target name: a full IQN, or a bare BMI name (`1img7`) in compatibility mode. */
export const TargetName = z
  .string()
  .min(1)
  .max(223, { error: "iSCSI names are at most 223 bytes" })
  .regex(/^(iqn\.\d{4}-\d{2}\.[a-z0-9.-]+(:[A-Za-z0-9_.:-]+)?|[A-Za-z0-9_][A-Za-z0-9_.-]*)$/, {
    error:
      "target name must be an IQN (iqn.yyyy-mm.domain:name) or a bare name of letters, digits, '_', '.', '-'",
  });

/** An IPv4 address or a host name (portal hosts, bind addresses). */
export const Host = z
  .string()
  .regex(/^(?:\d{1,3}(?:\.\d{1,3}){3}|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?)$/, {
    error: "host must be an IPv4 address or a host name",
  });

export const Port = z.coerce
  .number({ error: "port must be a number" })
  .int({ error: "port must be an integer" })
  .min(1, { error: "port must be between 1 and 65535" })
  .max(65535, { error: "port must be between 1 and 65535" });

/** The RBD image name BMI gives an image row: `<uid>img<id>`. */
export const cephNameOf = (uid: string, imageId: number): string => `${uid}img${imageId}`;

/** The id in a BMI RBD name, or undefined when the name is not one of ours for this uid. */
export function imageIdFromCephName(uid: string, rbdName: string): number | undefined {
  const prefix = `${uid}img`;
  if (!rbdName.startsWith(prefix)) return undefined;
  const rest = rbdName.slice(prefix.length);
  return /^[1-9]\d*$/.test(rest) ? Number(rest) : undefined;
}
