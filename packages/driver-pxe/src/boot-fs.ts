import { readdir, readFile, rm } from "node:fs/promises";
import { posix } from "node:path";
import { BmiError, safeJoin, writeFileAtomic } from "@bmi/core";
import { removeHostsFile } from "./dhcp-hosts.js";
import type { Layout } from "./layout.js";

/** The driver's file operations, on paths relative to the TFTP root, failing as BmiErrors. */
export interface BootFs {
  abs(rel: string): string;
  /** The file's text, or null when it does not exist. */
  readText(rel: string): Promise<string | null>;
  /** The names of the regular files in `dir`, or none when it does not exist. */
  listDir(dir: string): Promise<string[]>;
  /** Atomic (temp file + rename). */
  write(rel: string, text: string, mode: number): Promise<void>;
  /** Gone already is fine; a host entry is renamed out of dnsmasq's sight before it is unlinked. */
  removeFile(rel: string): Promise<void>;
}

export function createBootFs(layout: Pick<Layout, "root" | "dhcpHostsDir">): BootFs {
  const { root, dhcpHostsDir } = layout;
  const abs = (rel: string) => safeJoin(root, rel.split("/"), "boot");
  return {
    abs,
    async readText(rel) {
      try {
        return await readFile(abs(rel), "utf8");
      } catch (error) {
        if (isMissing(error)) return null;
        throw fsError(error, "read", rel);
      }
    },
    async listDir(dir) {
      try {
        const entries = await readdir(dir === "" ? root : abs(dir), { withFileTypes: true });
        return entries.filter((entry) => entry.isFile()).map((entry) => entry.name);
      } catch (error) {
        if (isMissing(error)) return [];
        throw fsError(error, "list", dir || ".");
      }
    },
    async write(rel, text, mode) {
      try {
        await writeFileAtomic(abs(rel), text, mode);
      } catch (error) {
        throw fsError(error, "write", rel);
      }
    },
    async removeFile(rel) {
      const inHostsDir = dhcpHostsDir !== null && posix.dirname(rel) === (dhcpHostsDir || ".");
      try {
        await (inHostsDir ? removeHostsFile(abs(rel)) : rm(abs(rel), { force: true }));
      } catch (error) {
        throw fsError(error, "remove", rel);
      }
    },
  };
}

/** Like Promise.all, but settles every promise first: no file operation still runs after a failure. */
export async function all(work: Promise<unknown>[]): Promise<void> {
  const results = await Promise.allSettled(work);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) throw failed.reason;
}

const isMissing = (error: unknown) => {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return code === "ENOENT" || code === "ENOTDIR";
};

function fsError(error: unknown, action: string, file: string): BmiError {
  if (error instanceof BmiError) return error;
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  const details = { file, errno: code };
  const options = { subsystem: "boot" as const, cause: error, details };
  if (code === "EACCES" || code === "EPERM" || code === "EROFS") {
    return new BmiError(
      "permission_denied",
      `cannot ${action} boot file ${file}: permission denied`,
      options,
    );
  }
  if (code === "ENOSPC" || code === "EIO" || code === "EMFILE" || code === "ENFILE") {
    return new BmiError("unavailable", `cannot ${action} boot file ${file} (${code})`, options);
  }
  return new BmiError("internal", `cannot ${action} boot file ${file}${code ? ` (${code})` : ""}`, options);
}
