import { spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { readFile, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { ObmdMachine } from "@bmi/driver-hil/testing";
import { inNetns } from "./network/commands.js";
import { isAlive, stopPid } from "./process.js";
import { type BootVmOptions, qemuArgs, serialTail } from "./qemu.js";
import { createQmpMachine } from "./qmp-machine.js";

/** How a lab node's VM is started when its BMC powers it on (the node's hardware, in effect). */
export interface LabNodeSettings {
  /** `uefi` boots OVMF, whose EFI iPXE ROM takes the iPXE chain. Default `bios`. */
  firmware?: "bios" | "uefi";
  /** The original's chain (PXE → pxelinux.0 → ipxe.lkrn) or straight through iPXE (default). */
  chain?: "pxelinux" | "ipxe";
  /** Default 256 MiB; Debian with its initramfs needs 1024. */
  memoryMb?: number;
  /** qemu fw_cfg entries (`opt/<name>` → host file), e.g. the Debian image's `opt/bmi/run` script. */
  fwCfgFiles?: Record<string, string>;
  nic?: "e1000" | "virtio-net-pci";
}

/** A node's serial console, as a file that only grows (each power-on appends to it). */
export interface NodeConsole {
  readonly path: string;
  /** Everything the console printed so far (from `from`, a byte offset, default 0). */
  read(from?: number): Promise<string>;
  /** The console's length in bytes now: pass it as `from` to look only at what comes next. */
  mark(): Promise<number>;
  /**
   * Polls (every 100 ms) for `pattern` in the console from `from`; resolves with the match and
   * the wall-clock time it was first seen. Rejects on timeout, abort, or when the VM, seen running
   * during the wait, goes off without printing it; with the console's last lines.
   */
  waitFor(
    pattern: RegExp,
    options?: { from?: number; timeoutMs?: number; signal?: AbortSignal },
  ): Promise<{ match: RegExpExecArray; text: string; seenAt: number }>;
}

/** What happened to a node's VM, with wall-clock times (`Date.now()`), for stage timings. */
export interface PowerEvent {
  event: "start" | "reset" | "stop";
  at: number;
  bootDevice?: string | null;
}

export interface LabNodeVm {
  readonly machine: ObmdMachine;
  readonly console: NodeConsole;
  readonly history: readonly PowerEvent[];
  configure(settings: LabNodeSettings): void;
  /** Kills the VM by its PID if one is left (the lab's teardown). */
  stop(): Promise<void>;
}

export interface LabNodeVmOptions {
  name: string;
  mac: string;
  /** Distinct per node, so iPXE's initiator name (from the SMBIOS UUID) differs. */
  uuid: string;
  dir: string;
  tftpRoot: string;
  /** The iPXE dispatcher (relative to `tftpRoot`), the DHCP boot file of the iPXE chain. */
  ipxeBootfile: string;
  /**
   * The lab's real network: the node's NIC is this tap and qemu runs inside `netns`, where
   * dnsmasq answers it. Default qemu's user-mode network (its own DHCP/TFTP from `tftpRoot`).
   */
  network?: { tap: string; netns: string };
  qemu?: string;
}

/**
 * A lab node's VM behind a QMP BMC: power on spawns qemu for the node (its MAC and UUID, the
 * lab's TFTP root, serial console appended to `<dir>/<node>.console.log`, QMP on a socket),
 * off quits it, a cycle resets it. The lab owns the process and kills what is left by PID.
 */
export function createLabNodeVm(options: LabNodeVmOptions): LabNodeVm {
  const consolePath = join(options.dir, `${options.name}.console.log`);
  const qemuLog = join(options.dir, `${options.name}.qemu.log`);
  const qemu = options.qemu ?? "qemu-system-x86_64";
  const history: PowerEvent[] = [];
  let settings: LabNodeSettings = {};
  let pid: number | undefined;
  let starts = 0;

  const bootOptions = (bootDevice: string | null): BootVmOptions => {
    const pxelinux = settings.chain === "pxelinux";
    return {
      mac: options.mac,
      uuid: options.uuid,
      tftpRoot: options.tftpRoot,
      bootfile: pxelinux ? "pxelinux.0" : options.ipxeBootfile,
      // A diskless node told to boot from its (absent) local disk finds nothing: as real hardware.
      bootOrder: bootDevice === "disk" ? "c" : "n",
      ...(settings.firmware ? { firmware: settings.firmware } : {}),
      ...(settings.memoryMb ? { memoryMb: settings.memoryMb } : {}),
      ...(settings.fwCfgFiles ? { fwCfgFiles: settings.fwCfgFiles } : {}),
      ...(settings.nic ? { nic: settings.nic } : {}),
      ...(options.network ? { network: options.network } : {}),
    };
  };

  const machine = createQmpMachine({
    async start(bootDevice) {
      starts += 1;
      const qmpSocket = join(options.dir, `${options.name}.qmp-${starts}.sock`);
      const args = await qemuArgs(bootOptions(bootDevice), consolePath, { appendSerial: true });
      args.push("-qmp", `unix:${qmpSocket},server=on,wait=off`);
      const log = openSync(qemuLog, "a");
      // `ip netns exec` execs qemu itself: the PID the BMC and the lab stop is qemu's.
      const [command, argv] = options.network ? inNetns(options.network.netns, qemu, args) : [qemu, args];
      const vm = spawn(command, argv, { stdio: ["ignore", log, log] });
      closeSync(log);
      const exited = new Promise<void>((resolve) => vm.once("exit", () => resolve()));
      await new Promise<void>((resolve, reject) => {
        vm.once("spawn", resolve);
        vm.once("error", (error) => reject(new Error(`cannot start ${qemu}: ${error.message}`)));
      });
      pid = vm.pid;
      history.push({ event: "start", at: Date.now(), bootDevice });
      void exited.then(async () => {
        history.push({ event: "stop", at: Date.now() });
        await rm(qmpSocket, { force: true });
      });
      return { qmpSocket, exited };
    },
  });
  const tracked: ObmdMachine = {
    ...machine,
    async reset(resetOptions) {
      await machine.reset(resetOptions);
      history.push({ event: "reset", at: Date.now() });
    },
  };

  const vmAlive = async () => pid !== undefined && (await isAlive(pid));
  return {
    machine: tracked,
    console: createNodeConsole(consolePath, vmAlive),
    history,
    configure(next) {
      if (next.firmware === "uefi" && next.chain === "pxelinux")
        throw new Error("pxelinux.0 is a BIOS loader; UEFI nodes boot through the iPXE chain");
      // On the real network dnsmasq picks the boot file, by MAC, from its command line.
      if (options.network && next.chain === "pxelinux")
        throw new Error("on the lab's real network (netns) the nodes boot through the iPXE chain only");
      settings = { ...next };
    },
    async stop() {
      if (pid !== undefined) await stopPid(pid, { graceMs: 3_000 });
    },
  };
}

function createNodeConsole(path: string, vmAlive: () => Promise<boolean>): NodeConsole {
  const read = async (from = 0) => {
    try {
      return (await readFile(path)).subarray(from).toString("latin1");
    } catch {
      return "";
    }
  };
  return {
    path,
    read,
    async mark() {
      return stat(path).then(
        (s) => s.size,
        () => 0,
      );
    },
    async waitFor(pattern, waitOptions = {}) {
      const { from = 0, timeoutMs = 180_000, signal } = waitOptions;
      const started = Date.now();
      let sawAlive = false;
      for (;;) {
        // Liveness first: a VM that ended after this read printed everything it ever will.
        const alive = await vmAlive();
        sawAlive ||= alive;
        const text = await read(from);
        const match = new RegExp(pattern.source, pattern.flags.replace("g", "")).exec(text);
        if (match) return { match, text, seenAt: Date.now() };
        const why = signal?.aborted
          ? "aborted"
          : sawAlive && !alive
            ? "the node's VM went off"
            : Date.now() - started > timeoutMs
              ? `not within ${timeoutMs} ms`
              : undefined;
        if (why) throw new Error(`no ${pattern} on ${path} (${why}). Last lines:\n${serialTail(text)}`);
        await sleep(100);
      }
    },
  };
}
