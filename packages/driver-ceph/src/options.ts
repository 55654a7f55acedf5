import {
  type Backing,
  driverKit,
  PoolName,
  RbdImageName,
  RbdSnapshotName,
  type SnapshotRef,
} from "@bmi/core";
import { z } from "zod";

/** Validation, cancellation and error labels of the storage drivers (both back ends). */
export const kit = driverKit("storage");

const ClientId = z.string().regex(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/, {
  error: "client id may only contain letters, digits, '_', '.', '-' (without the 'client.' prefix)",
});
export const FilePath = z
  .string()
  .min(1, { error: "must not be empty" })
  .refine((p) => !p.includes("\0") && !p.includes("\n"), { error: "must be a plain file path" });

/** The name a clone-v2 parent snapshot gets when it is moved to the trash. */
export const TRASH_NAME = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Options both back ends share (cluster, client, bounds, clone format). */
export const CommonOptionsSchema = z.object({
  pool: PoolName,
  conf: FilePath.optional(),
  clientId: ClientId.optional(),
  keyring: FilePath.optional(),
  timeoutMs: z.number().int().min(1000).max(3_600_000).default(30_000),
  dataTimeoutMs: z
    .number()
    .int()
    .min(1000)
    .default(30 * 60_000),
  cloneFormat: z.union([z.literal(1), z.literal(2)]).default(1),
});

export const imageName = (value: unknown, field = "image") => kit.input(RbdImageName, value, field);
export const snapRef = (ref: unknown, field = "snapshot"): SnapshotRef => {
  const r = (ref ?? {}) as Partial<SnapshotRef>;
  return {
    image: imageName(r.image, `${field}.image`),
    snapshot: kit.input(RbdSnapshotName, r.snapshot, `${field}.snapshot`),
  };
};

/** Ceph's own timeouts (seconds) fire a little before ours, so the reason comes from Ceph. */
export const cephTimeoutSeconds = (timeoutMs: number) =>
  String(Math.max(1, Math.floor((timeoutMs * 0.8) / 1000)));

/** What tgtd's rbd backing store needs to open `image` as this client: the same for both back ends. */
export const rbdBacking = (
  pool: string,
  client: { conf?: string | undefined; clientId?: string | undefined },
  image: unknown,
): Backing => ({
  kind: "rbd",
  pool,
  image: imageName(image),
  ...(client.conf ? { conf: client.conf } : {}),
  ...(client.clientId ? { clientId: client.clientId } : {}),
});
