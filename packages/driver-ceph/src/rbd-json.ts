import { z } from "zod";
import type { PooledImage } from "./pool-names.js";

// Schemas for `rbd … --format json` (Ceph 16, spec §9). Unknown keys are dropped.

/** `"true"`/`"false"` as rbd prints them in `snap ls` and `ls -l`; a real boolean is accepted too. */
const StringBoolean = z.union([z.boolean(), z.enum(["true", "false"]).transform((v) => v === "true")]);

/** `rbd ls --format json <pool>`; an empty pool may print nothing at all. */
export const RbdList = z.array(z.string());

/** `rbd info --format json <pool>/<image>`; `parent` disappears after flatten. */
export const RbdInfo = z.object({
  name: z.string(),
  size: z.number().int().nonnegative(),
  parent: z
    .object({
      pool: z.string(),
      pool_namespace: z.string().optional(),
      image: z.string(),
      snapshot: z.string(),
      trash: z.boolean().optional(),
    })
    .optional(),
});
export type RbdInfo = z.output<typeof RbdInfo>;

/** `rbd snap ls --format json`; clone v2 trash entries carry `namespace.type: "trash"`. */
export const RbdSnapList = z.array(
  z.object({
    name: z.string(),
    protected: StringBoolean.optional(),
    namespace: z.object({ type: z.string(), original_name: z.string().optional() }).optional(),
  }),
);

/** `rbd children --format json`: objects on Ceph ≥ 13, `pool/image` strings before that. */
export const RbdChildren = z.array(
  z.union([
    z.object({ pool: z.string(), pool_namespace: z.string().optional(), image: z.string() }),
    z.string().transform((s) => {
      const at = s.indexOf("/");
      return { pool: s.slice(0, at), pool_namespace: "", image: s.slice(at + 1) };
    }),
  ]),
);

/** An image as `rbd info` (its parent) and `rbd children` print it, as the pool rule (pool-names.ts) reads it. */
export const pooledJson = (c: {
  pool: string;
  pool_namespace?: string | undefined;
  image: string;
}): PooledImage => ({
  pool: c.pool,
  namespace: c.pool_namespace,
  image: c.image,
});
