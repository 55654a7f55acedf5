import { randomBytes } from "node:crypto";
import { readFile, rename, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { BmiError } from "@bmi/core";

/** Suffix of a node's dnsmasq host file (`<node>.hosts`) in the `dhcp-hostsdir`. */
export const HOSTS_SUFFIX = ".hosts";
const HEADER = "# BMI: DHCP host entries of node ";

/**
 * A node's dnsmasq host file: one `dhcp-host` line per MAC (`<mac>`), or with a fixed address one
 * line `<mac>[,<mac>...],<ip>`. No `set:` tag: dnsmasq 2.90 aborts on SIGHUP while it holds a
 * lease of a MAC whose entry has one. A line marks its MACs `known` to a dnsmasq run with
 * `--dhcp-ignore=tag:!known`, so only provisioned MACs get a lease.
 */
export const renderHostsFile = (
  node: string,
  macs: readonly string[],
  address: string | null = null,
): string => {
  const sorted = [...macs].sort();
  const lines = address === null ? sorted : [[...sorted, address].join(",")];
  return `${HEADER}${node}\n${lines.map((line) => `${line}\n`).join("")}`;
};

export interface HostsEntry {
  macs: string[];
  /** The fixed address of the node's MACs, or null when dnsmasq picks one from its pool. */
  address: string | null;
}

const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;

/** The MACs (and fixed address) in a host file BMI wrote, or null for any other file. */
export function parseHostsFile(text: string, node: string): HostsEntry | null {
  const [first, ...lines] = text.split("\n");
  if (first !== `${HEADER}${node}`) return null;
  const fields = lines.filter((line) => line !== "").flatMap((line) => line.split(","));
  return {
    macs: fields.filter((field) => !IPV4.test(field)),
    address: fields.find((field) => IPV4.test(field)) ?? null,
  };
}

/**
 * Removes a file from dnsmasq's `--dhcp-hostsdir` without an unlink dnsmasq sees: dnsmasq 2.90
 * answers an inotify delete event by trying to read the deleted file ("cannot read ...: No such
 * file or directory"). Renamed to a dotfile first (dnsmasq ignores dotfiles), then unlinked; the
 * entry itself goes at the next SIGHUP (`reloadDnsmasq`), as dnsmasq only adds entries by itself.
 */
export async function removeHostsFile(path: string): Promise<void> {
  const hidden = join(dirname(path), `.${basename(path)}.removed-${randomBytes(4).toString("hex")}`);
  try {
    await rename(path, hidden);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return;
    throw error;
  }
  await rm(hidden, { force: true });
}

/**
 * Tells the dnsmasq in `pidFile` to re-read its host files (SIGHUP): it adds new entries by
 * itself but forgets removed or changed ones only then. The PID must be a dnsmasq's.
 */
export async function reloadDnsmasq(pidFile: string): Promise<void> {
  const fail = (why: string, cause?: unknown) =>
    new BmiError(
      "unavailable",
      `dnsmasq (pid file ${pidFile}) could not be told to re-read its host entries: ${why}`,
      {
        subsystem: "boot",
        cause,
        details: { pidFile },
      },
    );
  const text = await readFile(pidFile, "utf8").catch((error: unknown) => {
    throw fail("no pid file", error);
  });
  const pid = Number(text.trim());
  if (!Number.isInteger(pid) || pid <= 1) throw fail(`bad pid ${JSON.stringify(text.trim())}`);
  const comm = await readFile(`/proc/${pid}/comm`, "utf8").catch(() => "");
  if (comm.trim() !== "dnsmasq") throw fail(`process ${pid} is not dnsmasq`);
  try {
    process.kill(pid, "SIGHUP");
  } catch (error) {
    throw fail(`cannot signal process ${pid}`, error);
  }
}
