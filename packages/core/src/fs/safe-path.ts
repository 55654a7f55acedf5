import { randomBytes } from "node:crypto";
import { mkdir, open, rename, rm } from "node:fs/promises";
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from "node:path";
import { BmiError, type Subsystem } from "../errors/index.js";

/**
 * Joins path segments under `root` and refuses any result outside it (`..`, absolute segments,
 * NUL bytes). Every file BMI writes goes through here (SEC-5).
 */
export function safeJoin(root: string, segments: readonly string[], subsystem: Subsystem = "boot"): string {
  const base = resolve(root);
  for (const segment of segments) {
    if (segment.length === 0 || segment.includes("\0") || isAbsolute(segment)) {
      throw new BmiError("invalid_input", `path segment ${JSON.stringify(segment)} is not allowed`, {
        subsystem,
      });
    }
  }
  const full = resolve(base, ...segments);
  const rel = relative(base, full);
  if (rel === "" || rel.startsWith(`..${sep}`) || rel === ".." || isAbsolute(rel)) {
    throw new BmiError("invalid_input", `path ${JSON.stringify(segments.join("/"))} escapes its root`, {
      subsystem,
    });
  }
  return full;
}

/**
 * Writes a file atomically: a temp file in the same directory, fsync, then rename over the
 * target. Readers (a TFTP server) see the old or the new file, never half of one. The temp file
 * is a dotfile: a directory watcher such as dnsmasq's `--dhcp-hostsdir` (inotify) skips
 * dotfiles, and would otherwise read the temp file on its close, or fail to open it if the
 * rename won the race (which dnsmasq 2.90 does not survive).
 */
export async function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o644): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const temp = join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`);
  try {
    const handle = await open(temp, "wx", mode);
    try {
      await handle.writeFile(data);
      await handle.chmod(mode); // open()'s mode is masked by the umask
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, path);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
}
