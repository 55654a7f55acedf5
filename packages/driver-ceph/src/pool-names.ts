/** Where an image is: rbd's JSON (`pool`, `pool_namespace`, `image`) and librbd's linked-image specs alike. */
export interface PooledImage {
  pool: string;
  /** The RADOS namespace in the pool; empty or absent for the pool's default one. */
  namespace?: string | undefined;
  image: string;
}

/**
 * Whether the image is one of ours: in the driver's pool, in its default namespace (BMI never
 * writes to another). Both back ends (the rbd CLI and librbd) decide with this one rule.
 */
export const inDriverPool = (pool: string, at: PooledImage): boolean => at.pool === pool && !at.namespace;

/** One of ours by its name, any other image as `pool/name`, so it is never mistaken for one of ours. */
export const nameInPool = (pool: string, at: PooledImage): string =>
  inDriverPool(pool, at) ? at.image : `${at.pool}/${at.image}`;
