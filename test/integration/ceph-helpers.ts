import { randomBytes } from "node:crypto";
import type { CephLabInfo } from "@bmi/lab";
import { cephAdminArgs, waitFor } from "@bmi/lab";
import { execa } from "execa";

/** A random prefix for the images of one test file, so files sharing the lab pool never collide. */
export const filePrefix = (label: string) => `${label}${randomBytes(3).toString("hex")}`;

/** rbd as the lab's restricted client; resolves with the execa result whatever the exit code. */
export function rbdAsClient(ceph: CephLabInfo, args: readonly string[]) {
  return execa("rbd", ["--conf", ceph.conf, "--id", ceph.clientId, "--keyring", ceph.keyring, ...args], {
    reject: false,
    timeout: 30_000,
  });
}

/** `ceph` as client.admin (pool creation and the like); throws on failure. */
export async function cephAdmin(ceph: CephLabInfo, args: readonly string[]): Promise<string> {
  const result = await execa("ceph", [...cephAdminArgs(ceph), "--connect-timeout", "10", ...args], {
    timeout: 60_000,
  });
  return result.stdout;
}

/** `rados` as client.admin on the lab's pool: raw objects, to put an image in a state a crash leaves. */
export async function radosAdmin(ceph: CephLabInfo, args: readonly string[]): Promise<string> {
  const result = await execa("rados", [...cephAdminArgs(ceph), "--pool", ceph.pool, ...args], {
    timeout: 60_000,
  });
  return result.stdout;
}

/**
 * Holds a watcher on an image the way tgtd does while serving it: `rbd watch` runs until its
 * stdin closes (with stdin at EOF it would exit at once, spec §8).
 */
export async function holdWatcher(ceph: CephLabInfo, image: string): Promise<() => Promise<void>> {
  const child = execa(
    "rbd",
    ["--conf", ceph.conf, "--id", ceph.clientId, "--keyring", ceph.keyring, "watch", `${ceph.pool}/${image}`],
    { stdin: "pipe", reject: false },
  );
  await waitFor(
    `a watcher on ${image}`,
    async () => {
      const status = await rbdAsClient(ceph, ["status", "--format", "json", `${ceph.pool}/${image}`]);
      const watchers = (JSON.parse(status.stdout || "{}") as { watchers?: unknown[] }).watchers ?? [];
      return watchers.length > 0;
    },
    { timeoutMs: 30_000, intervalMs: 100 },
  );
  return async () => {
    // EOF on stdin makes rbd watch unwatch and exit; a signal would leave the watch to time out (30 s).
    child.stdin?.end();
    await child;
  };
}
