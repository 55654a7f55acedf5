import { spawn } from "node:child_process";
import { access, readFile } from "node:fs/promises";
import { join } from "node:path";
import { isAlive, makeTempDir, stopPid } from "./process.js";

export interface BootVmOptions {
  /** The NIC's MAC (the node's MAC in HIL); the boot files are looked up by it. */
  mac: string;
  /** Network boot: qemu's user-mode network serves this directory over TFTP... */
  tftpRoot?: string;
  /** ...and hands out this file (relative to `tftpRoot`) as the DHCP boot file. */
  bootfile?: string;
  /** Local boot from this disk instead of the network (to check an image on its own). */
  disk?: string;
  /** The local disk's format (default raw; qcow2 for an overlay on a raw image). */
  diskFormat?: "raw" | "qcow2";
  /**
   * Give the local-disk VM a NIC on qemu's user-mode network (DHCP, no boot file): an initramfs
   * that brings up the network (open-iscsi's ISCSI_AUTO) otherwise waits 180 s for a NIC.
   */
  diskNic?: boolean;
  /** `uefi` needs OVMF (Debian package `ovmf`). Default `bios` (SeaBIOS + qemu's iPXE ROM). */
  firmware?: "bios" | "uefi";
  /** Where the serial console goes; default a temp file, removed afterwards. */
  serialLog?: string;
  /** Bound on the whole boot, from qemu's start to the marker. Default 180 s. */
  timeoutMs?: number;
  /** What proves the boot worked. Default /BMI-BOOT-OK/. */
  expect?: RegExp;
  /** Lines to time on the way to `expect`: each one's first sighting goes into `marksMs`. */
  marks?: Record<string, RegExp>;
  memoryMb?: number;
  /** qemu fw_cfg entries (`opt/<name>` → host file), read in the guest under /sys/firmware/qemu_fw_cfg. */
  fwCfgFiles?: Record<string, string>;
  nic?: "e1000" | "virtio-net-pci";
  /** The SMBIOS UUID; iPXE names its initiator after it, so give each node its own. */
  uuid?: string;
  /** qemu `-boot` order for a network boot: `n` (default, the network) or `c` (the local disk). */
  bootOrder?: "n" | "c";
  /**
   * `user` (default): qemu's own network, DHCP and TFTP from `tftpRoot`/`bootfile`. A tap: the
   * NIC is that tap of the lab network (qemu runs inside `netns`), whose dnsmasq answers it.
   */
  network?: "user" | { tap: string; netns: string };
  qemu?: string;
  signal?: AbortSignal;
}

export interface BootVmResult {
  /** The serial console up to the marker. */
  serial: string;
  /** What `expect` matched. */
  match: string;
  /** From qemu's start to the marker on the serial console (polled every 100 ms). */
  markerMs: number;
  /** From qemu's start to each of `marks` seen before the marker (polled like it). */
  marksMs: Record<string, number>;
  /** The qemu command line, for reports. */
  command: string[];
}

const OVMF_CANDIDATES = [
  "/usr/share/ovmf/OVMF.fd",
  "/usr/share/OVMF/OVMF_CODE.fd",
  "/usr/share/qemu/OVMF.fd",
];

async function findOvmf(): Promise<string> {
  for (const path of OVMF_CANDIDATES) {
    try {
      await access(path);
      return path;
    } catch {
      // next
    }
  }
  throw new Error(`UEFI boot needs OVMF (Debian package ovmf); looked in ${OVMF_CANDIDATES.join(", ")}`);
}

// iPXE's ANSI colours and its Ctrl-B countdown (backspace, space, backspace) make logs unreadable.
const ANSI = new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*[A-Za-z]`, "g");
const BACKSPACES = new RegExp(`(?:${String.fromCharCode(8)} ${String.fromCharCode(8)})+`, "g");

/** The last lines of a serial log, without terminal escapes. */
export const serialTail = (text: string, lines = 40): string =>
  text
    .replace(ANSI, "")
    .replace(BACKSPACES, "")
    .split(/\r?\n/)
    .filter((line) => line.trim() !== "")
    .slice(-lines)
    .join("\n");

/** The qemu arguments for a VM without a disk (or with only `disk`), TCG, serial to a file. */
export async function qemuArgs(
  options: BootVmOptions,
  serialLog: string,
  output: { appendSerial?: boolean } = {},
): Promise<string[]> {
  const nic = options.nic ?? "e1000";
  if (serialLog.includes(",")) throw new Error(`qemu option value must not contain ',': ${serialLog}`);
  // Appended (a lab node's console across power cycles), or a fresh file per boot.
  const serial = output.appendSerial
    ? ["-chardev", `file,id=serial0,path=${serialLog},append=on`, "-serial", "chardev:serial0"]
    : ["-serial", `file:${serialLog}`];
  const args = [
    "-machine",
    "accel=tcg", // no KVM on the build hosts
    "-m",
    String(options.memoryMb ?? 256),
    // -nographic turns off graphics, so SeaBIOS mirrors the screen (iPXE's messages) to COM1.
    "-nographic",
    ...serial,
    "-monitor",
    "none",
    "-no-user-config",
    "-nodefaults",
  ];
  if (options.firmware === "uefi") args.push("-bios", await findOvmf());
  if (options.uuid !== undefined) {
    if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(options.uuid))
      throw new Error(`bad VM uuid ${options.uuid}`);
    args.push("-uuid", options.uuid);
  }
  for (const [name, file] of Object.entries(options.fwCfgFiles ?? {})) {
    if (!/^opt\/[\w./-]+$/.test(name) || file.includes(","))
      throw new Error(`bad fw_cfg entry ${name}=${file}`);
    args.push("-fw_cfg", `name=${name},file=${file}`);
  }
  if (options.disk !== undefined) {
    if (options.disk.includes(","))
      throw new Error(`qemu option value must not contain ',': ${options.disk}`);
    const format = options.diskFormat ?? "raw";
    args.push("-drive", `file=${options.disk},format=${format},if=ide`, "-boot", "c");
    if (options.diskNic) args.push("-netdev", "user,id=n0", "-device", `${nic},netdev=n0,mac=${options.mac}`);
    else args.push("-net", "none");
    return args;
  }
  if (typeof options.network === "object") {
    const { tap } = options.network;
    if (!/^[\w-]{1,15}$/.test(tap)) throw new Error(`bad tap name ${tap}`);
    args.push(
      "-netdev",
      `tap,id=n0,ifname=${tap},script=no,downscript=no`,
      "-device",
      `${nic},netdev=n0,mac=${options.mac}`,
      "-boot",
      options.bootOrder ?? "n",
    );
    return args;
  }
  if (options.tftpRoot === undefined || options.bootfile === undefined) {
    throw new Error("bootVm needs tftpRoot and bootfile for a network boot, or disk for a local one");
  }
  for (const value of [options.tftpRoot, options.bootfile]) {
    // qemu splits -netdev on commas; a comma in a path would add options.
    if (value.includes(",")) throw new Error(`qemu option value must not contain ',': ${value}`);
  }
  // User-mode networking: the guest is 10.0.2.15, the host's loopback is reachable as 10.0.2.2,
  // and qemu's built-in DHCP/TFTP hands out `bootfile` from `tftp`.
  args.push(
    "-netdev",
    `user,id=n0,tftp=${options.tftpRoot},bootfile=${options.bootfile}`,
    "-device",
    `${nic},netdev=n0,mac=${options.mac}`,
    "-boot",
    options.bootOrder ?? "n",
  );
  return args;
}

/**
 * Boots a qemu-system-x86_64 VM and waits for `expect` on its serial console. The VM is always
 * stopped by its PID before this returns or throws (marker seen, timeout, early exit, abort).
 */
export async function bootVm(options: BootVmOptions): Promise<BootVmResult> {
  const expected = options.expect ?? /BMI-BOOT-OK/;
  const timeoutMs = options.timeoutMs ?? 180_000;
  const temp = options.serialLog === undefined ? await makeTempDir("qemu") : undefined;
  const serialLog = options.serialLog ?? join(temp?.path ?? "", "serial.log");
  const qemu = options.qemu ?? "qemu-system-x86_64";
  let pid: number | undefined;
  try {
    const args = await qemuArgs(options, serialLog);
    const netns = typeof options.network === "object" ? options.network.netns : undefined;
    // `ip netns exec` execs qemu itself: the PID we stop is qemu's.
    const command = netns === undefined ? [qemu, ...args] : ["ip", "netns", "exec", netns, qemu, ...args];
    const child = spawn(command[0] as string, command.slice(1), { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr?.on("data", (chunk: Buffer) => {
      if (stderr.length < 16_384) stderr += chunk.toString("utf8");
    });
    const spawned = await new Promise<Error | undefined>((resolve) => {
      child.once("spawn", () => resolve(undefined));
      child.once("error", resolve);
    });
    if (spawned) throw new Error(`cannot start ${qemu}: ${spawned.message}`);
    pid = child.pid;
    const started = Date.now();
    const readSerial = async () => {
      try {
        return await readFile(serialLog, "latin1");
      } catch {
        return "";
      }
    };
    const marksMs: Record<string, number> = {};
    for (;;) {
      const serial = await readSerial();
      for (const [name, pattern] of Object.entries(options.marks ?? {}))
        if (marksMs[name] === undefined && pattern.test(serial)) marksMs[name] = Date.now() - started;
      const match = expected.exec(serial);
      if (match) return { serial, match: match[0], markerMs: Date.now() - started, marksMs, command };
      const elapsed = Date.now() - started;
      const why =
        options.signal?.aborted === true
          ? "aborted"
          : pid === undefined || !(await isAlive(pid))
            ? `qemu exited early${stderr ? `: ${stderr.trim()}` : ""}`
            : elapsed > timeoutMs
              ? `no ${expected} on the serial console within ${timeoutMs} ms`
              : undefined;
      if (why !== undefined) {
        throw new Error(`VM boot failed (${why}). Last serial lines:\n${serialTail(serial)}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  } finally {
    if (pid !== undefined) await stopPid(pid, { signal: "SIGTERM", graceMs: 3_000 });
    await temp?.remove();
  }
}
