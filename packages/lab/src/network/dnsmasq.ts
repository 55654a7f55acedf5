import { spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { isAlive, stopPid, waitFor } from "../process.js";
import { inNetns } from "./commands.js";

export type BootChain = "pxelinux" | "ipxe";

export interface DnsmasqOptions {
  netns: string;
  /** The bridge dnsmasq serves (the host side of the provisioning VLAN). */
  bridge: string;
  /** Where its pid file, log and leases go. */
  dir: string;
  tftpRoot: string;
  /** First and last address handed out, and the netmask. */
  range: { first: string; last: string; netmask: string };
  /** BMI's per-node host entries; when given, MACs without one get no answer at all. */
  hostsDir?: string;
  /** MACs that get `pxelinux.0` although their ROM is iPXE (qemu's is): the original's chain. */
  pxelinuxMacs: readonly string[];
  /** The iPXE dispatcher, relative to the TFTP root. */
  ipxeBootFile: string;
}

export interface DnsmasqHandle {
  readonly pid: number;
  readonly pidFile: string;
  readonly logFile: string;
  readonly leasesFile: string;
  /** SIGHUP: dnsmasq forgets host entries whose files were removed (it only adds them by itself). */
  reload(): void;
  /** The MACs holding a lease now. */
  leasedMacs(): Promise<string[]>;
  stop(): Promise<void>;
}

/** dnsmasq's command line: DHCP and TFTP only (`--port=0`: no DNS), nothing from /etc. */
export function dnsmasqArgs(
  options: DnsmasqOptions,
  files: { pidFile: string; logFile: string; leasesFile: string },
): string[] {
  const { range } = options;
  const args = [
    "--keep-in-foreground",
    "--conf-file=/dev/null",
    "--no-hosts",
    "--no-resolv",
    "--port=0",
    `--pid-file=${files.pidFile}`,
    `--log-facility=${files.logFile}`,
    "--log-dhcp",
    // Root inside the lab's namespace: the TFTP root sits in a 0700 temp dir that `nobody` cannot read.
    "--user=root",
    "--group=root",
    `--interface=${options.bridge}`,
    "--bind-interfaces",
    `--dhcp-range=${range.first},${range.last},${range.netmask},1h`,
    `--dhcp-leasefile=${files.leasesFile}`,
    "--dhcp-authoritative",
    "--enable-tftp",
    `--tftp-root=${options.tftpRoot}`,
    // iPXE says so in its user class; a plain PXE ROM gets pxelinux.0 (the original's deployment).
    "--dhcp-userclass=set:ipxe,iPXE",
    ...options.pxelinuxMacs.map((mac) => `--dhcp-mac=set:pxelinux,${mac}`),
    "--dhcp-boot=tag:pxelinux,pxelinux.0",
    `--dhcp-boot=tag:ipxe,tag:!pxelinux,${options.ipxeBootFile}`,
    "--dhcp-boot=tag:!ipxe,tag:!pxelinux,pxelinux.0",
  ];
  if (options.hostsDir !== undefined) {
    // `known` is set by a matching host entry: a MAC BMI did not provision gets no answer.
    args.push(`--dhcp-hostsdir=${options.hostsDir}`, "--dhcp-ignore=tag:!known");
  }
  for (const value of args) {
    if (/[\n\0]/.test(value)) throw new Error(`bad dnsmasq argument ${JSON.stringify(value)}`);
  }
  return args;
}

/** Starts Debian's dnsmasq inside `netns` in the foreground; stopped by its PID. */
export async function startDnsmasq(options: DnsmasqOptions): Promise<DnsmasqHandle> {
  const files = {
    pidFile: join(options.dir, "dnsmasq.pid"),
    logFile: join(options.dir, "dnsmasq.log"),
    leasesFile: join(options.dir, "dnsmasq.leases"),
  };
  const [command, args] = inNetns(options.netns, "dnsmasq", dnsmasqArgs(options, files));
  const stderrFile = join(options.dir, "dnsmasq.stderr");
  const fd = openSync(stderrFile, "a");
  const child = (() => {
    try {
      return spawn(command, args, { stdio: ["ignore", "ignore", fd] });
    } finally {
      closeSync(fd);
    }
  })();
  child.on("error", () => {});
  const pid = child.pid;
  if (pid === undefined)
    throw new Error("cannot start dnsmasq (is the Debian package dnsmasq-base installed?)");
  const readLog = async () =>
    (await readFile(files.logFile, "utf8").catch(() => "")) +
    (await readFile(stderrFile, "utf8").catch(() => ""));
  try {
    await waitFor(
      "dnsmasq to serve DHCP and TFTP",
      async () => {
        if (!(await isAlive(pid))) throw new Error(`dnsmasq exited: ${(await readLog()).trim().slice(-800)}`);
        const log = await readLog();
        return /DHCP, IP range/.test(log) && /TFTP root is/.test(log);
      },
      { timeoutMs: 15_000, intervalMs: 50 },
    );
  } catch (error) {
    await stopPid(pid, { signal: "SIGKILL", graceMs: 2_000 });
    throw error;
  }
  return {
    pid,
    ...files,
    reload: () => {
      process.kill(pid, "SIGHUP");
    },
    async leasedMacs() {
      const text = await readFile(files.leasesFile, "utf8").catch(() => "");
      // `<expiry> <mac> <ip> <hostname> <client id>` per line.
      return text
        .split("\n")
        .map((line) => line.split(" ")[1] ?? "")
        .filter((mac) => mac !== "");
    },
    stop: () => stopPid(pid, { signal: "SIGTERM", graceMs: 5_000 }),
  };
}
