import { randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { ExportedTarget } from "@bmi/core";
import type { ExportProbeInitiator } from "@bmi/core/testing/contracts";
import { stopPid, type TgtdHandle, waitFor } from "@bmi/lab";
import { execa } from "execa";

/** libiscsi's URL of LUN 1 of `target` on our tgtd, with CHAP credentials when given. */
export function iscsiUrl(tgtd: TgtdHandle, target: string, chap?: { user: string; secret: string }): string {
  const auth = chap ? `${encodeURIComponent(chap.user)}%${encodeURIComponent(chap.secret)}@` : "";
  return `iscsi://${auth}${tgtd.portal}:${tgtd.port}/${target}/1`;
}

/** A file of `size` random bytes under `dir`, for a file backing. */
export async function randomFile(
  dir: string,
  name: string,
  size: number,
): Promise<{ path: string; data: Buffer }> {
  const path = join(dir, `${name}.img`);
  const data = randomBytes(size);
  await writeFile(path, data);
  return { path, data };
}

/**
 * Whether `initiator` can log in to `target` (a real login by iscsi-inq). A refused login is false;
 * anything else that fails (tool missing, daemon gone) throws, so a broken lab never reads as "refused".
 */
export async function canLogin(
  tgtd: TgtdHandle,
  target: string,
  initiator: ExportProbeInitiator,
): Promise<boolean> {
  const result = await execa("iscsi-inq", ["-i", initiator.name, iscsiUrl(tgtd, target, initiator.chap)], {
    reject: false,
    timeout: 30_000,
  });
  if (result.exitCode === 0) return true;
  const text = `${result.stdout}\n${result.stderr}`;
  if (/Login Failed|Failed to log in/i.test(text)) return false;
  throw new Error(`iscsi-inq failed unexpectedly (exit ${result.exitCode}): ${text.trim()}`);
}

/**
 * Logs an initiator in and keeps the session: qemu-io stays logged in while its stdin is open.
 * Resolves once tgtd lists the session; the returned function logs out and waits for the exit.
 */
export async function holdSession(
  tgtd: TgtdHandle,
  target: string,
  list: () => Promise<ExportedTarget[]>,
): Promise<() => Promise<void>> {
  const child = execa("qemu-io", ["-f", "raw", iscsiUrl(tgtd, target)], { stdin: "pipe", reject: false });
  const pid = child.pid;
  try {
    await waitFor(
      `an initiator session on ${target}`,
      async () => {
        if (child.exitCode !== null) throw new Error(`qemu-io exited: ${String((await child).stderr)}`);
        return ((await list()).find((t) => t.target === target)?.sessions ?? 0) > 0;
      },
      { timeoutMs: 20_000, intervalMs: 50 },
    );
  } catch (error) {
    if (pid !== undefined) await stopPid(pid, { signal: "SIGKILL", graceMs: 2000 });
    throw error;
  }
  return async () => {
    child.stdin?.end();
    const exited = await waitFor("qemu-io to log out", () => child.exitCode !== null, {
      timeoutMs: 5000,
    }).catch(() => false);
    if (!exited && pid !== undefined) await stopPid(pid, { signal: "SIGKILL", graceMs: 2000 });
    await child;
  };
}
