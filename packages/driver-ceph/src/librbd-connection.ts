import { BmiError, type CallOptions } from "@bmi/core";
import { type LibrbdStep, librbdError } from "./librbd-errors.js";
import { type Librbd, loadLibrbd } from "./librbd-native.js";
import { cephTimeoutSeconds, kit } from "./options.js";

export interface ConnectionOptions {
  pool: string;
  conf?: string;
  clientId?: string;
  keyring?: string;
  timeoutMs: number;
  cloneFormat: 1 | 2;
}

/** Opened lazily, one per driver: the cluster handle and the pool's I/O context. */
interface Handles {
  lib: Librbd;
  cluster: unknown;
  io: unknown;
}

export interface Connection {
  /** Runs `work` with the handles, bounded by `timeoutMs`; a late result is dropped, its handles still closed. */
  run<T>(
    what: string,
    call: CallOptions | undefined,
    timeoutMs: number,
    work: (h: Handles) => Promise<T>,
  ): Promise<T>;
  close(): Promise<void>;
}

/** Throws the mapped BmiError when a librados/librbd return code is negative. */
export function check(
  rc: number,
  step: LibrbdStep,
  what: string,
  details: Record<string, unknown> = {},
): number {
  if (rc < 0) throw librbdError(step, -rc, what, details);
  return rc;
}

function load(): Librbd {
  try {
    return loadLibrbd();
  } catch (cause) {
    throw new BmiError(
      "unavailable",
      "librbd/librados could not be loaded (install Debian's librbd1 and librados2)",
      {
        subsystem: "storage",
        cause,
      },
    );
  }
}

async function open(o: ConnectionOptions): Promise<Handles> {
  const lib = load();
  const out: unknown[] = [null];
  check(await lib.rados_create(out, o.clientId ?? null), "connect", "rados_create");
  const cluster = out[0];
  try {
    check(await lib.rados_conf_read_file(cluster, o.conf ?? null), "connect", "reading the Ceph config");
    const seconds = cephTimeoutSeconds(o.timeoutMs);
    const settings: Array<[string, string]> = [
      // Without these an unreachable monitor hangs 300 s and a down OSD forever (spec §9).
      ["client_mount_timeout", seconds],
      ["rados_mon_op_timeout", seconds],
      ["rados_osd_op_timeout", seconds],
      ["rbd_default_clone_format", String(o.cloneFormat)],
      // librbd's error lines would land on this process's stderr; the errno is in our errors.
      ["log_to_stderr", "false"],
      ["err_to_stderr", "false"],
      ...(o.keyring ? ([["keyring", o.keyring]] as Array<[string, string]>) : []),
    ];
    for (const [key, value] of settings) {
      check(await lib.rados_conf_set(cluster, key, value), "connect", `setting ${key}`);
    }
    check(await lib.rados_connect(cluster), "connect", "connecting to the Ceph cluster");
    const io: unknown[] = [null];
    check(await lib.rados_ioctx_create(cluster, o.pool, io), "pool", `opening pool ${o.pool}`, {
      pool: o.pool,
    });
    return { lib, cluster, io: io[0] };
  } catch (error) {
    await lib.rados_shutdown(cluster);
    throw error;
  }
}

/** One cluster connection, opened on first use and again after a failed open. */
export function createConnection(o: ConnectionOptions): Connection {
  let handles: Promise<Handles> | undefined;
  let inFlight = 0;
  let closed = false;
  let idle: (() => void) | undefined;

  const connect = () => {
    handles ??= open(o).catch((error) => {
      handles = undefined;
      throw error;
    });
    return handles;
  };

  return {
    async run(what, call, timeoutMs, work) {
      if (closed)
        throw new BmiError("unavailable", `${what}: the storage driver is closed`, { subsystem: "storage" });
      kit.checkSignal(call, `${what} (before it started)`);
      inFlight += 1;
      const done = (async () => work(await connect()))().finally(() => {
        inFlight -= 1;
        if (inFlight === 0) idle?.();
      });
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          reject(
            new BmiError("timeout", `${what}: the Ceph cluster did not answer within ${timeoutMs} ms`, {
              subsystem: "storage",
              retryable: true,
              details: { timeoutMs },
            }),
          );
        }, timeoutMs);
      });
      try {
        return await Promise.race([done, deadline]);
      } finally {
        clearTimeout(timer);
        done.catch(() => {}); // a late failure after the deadline is already reported as a timeout
      }
    },

    async close() {
      closed = true;
      // librados' own timeouts bound every call still running; its handles must outlive them.
      if (inFlight > 0) await new Promise<void>((resolve) => (idle = resolve));
      const h = await handles?.catch(() => undefined);
      handles = undefined;
      if (!h) return;
      await h.lib.rados_ioctx_destroy(h.io);
      await h.lib.rados_shutdown(h.cluster);
    },
  };
}
