// Benchmark (not a test): Debian booting from its BMI clone over iSCSI, timed by stage, what the
// boot costs the cluster, and the same image booted from a local disk in the same run.
//   BMI_DEBIAN_IMAGE_CACHE=/tmp/bmi-image-cache pnpm -s exec tsx bench/boot.ts [--boots 3] [--local-boots 3] [--dd-mib 64]
// Per iSCSI boot (a fresh clone each time, BIOS, node-01): provision (the call, until the node's
// BMC starts its VM), firmware + iPXE (→ iPXE's sanboot login), kernel + initramfs (→ the
// initramfs's own login from the iBFT), userspace (→ the OS line); the OSD's perf counters and
// `rbd du` of the clone around the boot; then a `dd` read and write inside the VM. The local boot
// is the same image (a qcow2 overlay of the raw file, IDE), firmware, kernel and script.
// Medians; ratios iSCSI/local. Writes JSON to bench/results/.
import { writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import {
  type BmiLab,
  bootLocalOverlay,
  buildDebianImage,
  FW_CFG_RUN,
  serialTail,
  startBmiLab,
} from "@bmi/lab";
import { execa } from "execa";
import { log, median, round, stopOnSignal, table, writeResult } from "./lib.js";

const { values } = parseArgs({
  options: {
    boots: { type: "string", default: "3" },
    "local-boots": { type: "string", default: "3" },
    "dd-mib": { type: "string", default: "64" },
    "pause-s": { type: "string", default: "20" },
  },
});
const BOOTS = Number(values.boots);
const LOCAL_BOOTS = Number(values["local-boots"]);
const DD_MIB = Number(values["dd-mib"]);
/** The script waits this long after the OS line so the host can read the counters before the dd. */
const PAUSE_S = Number(values["pause-s"]);
for (const [name, n] of Object.entries({ BOOTS, DD_MIB, PAUSE_S, LOCAL_BOOTS: LOCAL_BOOTS + 1 }))
  if (!Number.isInteger(n) || n < 1 || n > 1024)
    throw new Error(`--${name} out of range (boots 1..1024, local boots 0..1023)`);

const NODE = "node-01";
const GOLDEN = "debian12";
const MEMORY_MB = 1024;
/** TCG on a shared 2-core host: ~100 s to the OS line when idle, much more when not. */
const BOOT_TIMEOUT_MS = 900_000;
const MIB = 1024 ** 2;

/** What the node's console shows at each stage (iPXE's SAN login, the kernel's iSCSI host, the image's OS line). */
const LINES = {
  firmware_login: /Registered SAN device 0x80/,
  os_login: /scsi host\d+: iSCSI Initiator over TCP\/IP/,
  os_line: /BMI-OS os="/,
  checkpoint: /BMI-OUT checkpoint/,
} as const;
type Line = keyof typeof LINES;
/** The image's bmi-run service prints this when the script is done. */
const RUN_END = /BMI-RUN-END rc=\d+/;

/**
 * Runs inside the VM after the OS line: the kernel's block counters of the root's disk, a pause
 * (the host reads the cluster's counters then), a direct-I/O read of the disk and a direct write
 * of a new file, each timed by dd itself. Kernel messages off the console, so no line is split.
 * The serial getty may start meanwhile and hang up ttyS0 (agetty's vhangup): the script ignores
 * SIGHUP and opens the console again for each line.
 */
const SCRIPT = [
  "trap '' HUP",
  "dmesg -n 1",
  'out() { echo "BMI-OUT $*" > /dev/ttyS0; }',
  'd=$(lsblk -no pkname "$(findmnt -n -o SOURCE /)")',
  'out "checkpoint disk=$d $(cat /sys/block/$d/stat)"',
  `sleep ${PAUSE_S}`,
  "out dd-start",
  `out "read $(dd if=/dev/$d of=/dev/null bs=1M count=${DD_MIB} iflag=direct 2>&1 | tail -n 1)"`,
  `out "write $(dd if=/dev/zero of=/root/bmi-bench.bin bs=1M count=${DD_MIB} oflag=direct conv=fsync 2>&1 | tail -n 1)"`,
  "",
].join("\n");

interface GuestReport {
  /** The root's disk (sda) and the bytes the guest kernel read from / wrote to it by the checkpoint. */
  disk: string;
  kernelReadBytes: number;
  kernelWrittenBytes: number;
  ddReadS: number;
  ddWriteS: number;
}

/** The script's output on the console: the checkpoint's block counters and dd's own timings. */
function parseGuest(serial: string): GuestReport {
  const script = serial.slice(Math.max(0, serial.indexOf("BMI-RUN-BEGIN")));
  const fail = (what: string) => new Error(`${what} on the console:\n${serialTail(script, 15)}`);
  const checkpoint = /BMI-OUT checkpoint disk=(\S+)\s+([\d ]+)/.exec(script);
  const stat = checkpoint?.[2]?.trim().split(/\s+/).map(Number) ?? [];
  if (stat.length < 7) throw fail("no block counters at the checkpoint");
  const ddSeconds = (what: string) => {
    const m = new RegExp(`BMI-OUT ${what} .*copied, ([\\d.]+) s`).exec(script);
    if (!m) throw fail(`no dd ${what} result`);
    return Number(m[1]);
  };
  return {
    disk: checkpoint?.[1] ?? "",
    kernelReadBytes: (stat[2] ?? 0) * 512,
    kernelWrittenBytes: (stat[6] ?? 0) * 512,
    ddReadS: ddSeconds("read"),
    ddWriteS: ddSeconds("write"),
  };
}

/** Bytes and ops through the OSD: plain reads and writes, and read-write ops (librbd's guarded writes to a clone). */
interface OsdCounters {
  readBytes: number;
  writtenBytes: number;
  ops: number;
}

/** The lab's one OSD's op counters (memstore, so nothing but client I/O moves them). */
async function osdCounters(lab: BmiLab): Promise<OsdCounters> {
  const out = await execa(
    "ceph",
    ["-c", lab.ceph.conf, "--connect-timeout", "10", "tell", "osd.0", "perf", "dump"],
    { timeout: 60_000 },
  );
  const osd = (JSON.parse(out.stdout) as { osd: Record<string, number> }).osd;
  const count = (name: string) => {
    const value = osd[name];
    if (typeof value !== "number") throw new Error(`the OSD's perf dump has no ${name}`);
    return value;
  };
  return {
    readBytes: count("op_r_out_bytes") + count("op_rw_out_bytes"),
    writtenBytes: count("op_w_in_bytes") + count("op_rw_in_bytes"),
    ops: count("op"),
  };
}

const minus = (a: OsdCounters, b: OsdCounters): OsdCounters => ({
  readBytes: a.readBytes - b.readBytes,
  writtenBytes: a.writtenBytes - b.writtenBytes,
  ops: a.ops - b.ops,
});

/** `rbd du` of one image: the space it uses in the cluster (a clone: only what differs from its parent). */
async function usedBytes(lab: BmiLab, cephName: string): Promise<number> {
  const out = await execa(
    "rbd",
    ["-c", lab.ceph.conf, "du", "--format", "json", `${lab.ceph.pool}/${cephName}`],
    { timeout: 120_000 },
  );
  const du = JSON.parse(out.stdout) as { images: { name: string; used_size: number }[] };
  return du.images.find((i) => i.name === cephName)?.used_size ?? Number.NaN;
}

/**
 * Watches the node's console from now for every line of {@link LINES}: when each was first seen
 * (wall clock, polled every 100 ms). Call right before the provision call.
 */
async function watchConsole(lab: BmiLab) {
  const console = lab.console(NODE);
  const from = await console.mark();
  const stop = new AbortController();
  const seen: Partial<Record<Line, number>> = {};
  const watchers = Object.entries(LINES).map(([line, pattern]) =>
    console.waitFor(pattern, { from, timeoutMs: BOOT_TIMEOUT_MS, signal: stop.signal }).then(
      ({ seenAt }) => (seen[line as Line] = seenAt),
      () => undefined,
    ),
  );
  return {
    from,
    /** Waits for `pattern` after the mark (a line of {@link LINES} or another). */
    until: (pattern: RegExp) => console.waitFor(pattern, { from, timeoutMs: BOOT_TIMEOUT_MS }),
    async stop() {
      stop.abort();
      await Promise.all(watchers);
      return seen;
    },
  };
}

interface IscsiBoot {
  /** ms from the provision call: the VM started, each console line seen. */
  vmStartMs: number;
  lines: Partial<Record<Line, number>>;
  /** The waiter's own stages (ms from its start, which is inside the provision call). */
  waiter: { stage: string; atMs: number }[];
  cluster: OsdCounters;
  cloneUsedBytes: number;
  guest: GuestReport;
}

/** One provision-and-boot of a fresh clone; everything measured; the node is off and deprovisioned after. */
async function iscsiBoot(lab: BmiLab, script: string, i: number): Promise<IscsiBoot> {
  lab.configureNode(NODE, { memoryMb: MEMORY_MB, firmware: "bios", fwCfgFiles: { [FW_CFG_RUN]: script } });
  const disk = `bench-boot-${i}`;
  const before = await osdCounters(lab);
  const watch = await watchConsole(lab);
  const t0 = Date.now();
  try {
    const provisioned = await lab.bmi.provision({
      project: lab.project,
      node: NODE,
      disk,
      image: GOLDEN,
      nic: "eth0",
      firmware: "bios",
      power: "cycle",
      wait: true,
      timeoutMs: BOOT_TIMEOUT_MS,
    });
    await watch.until(LINES.checkpoint);
    const cluster = minus(await osdCounters(lab), before);
    const disks = await lab.bmi.listDisks({ project: lab.project });
    const cephName = disks.find((d) => d.name === disk)?.cephName;
    if (!cephName) throw new Error(`no disk ${disk} after provisioning`);
    const cloneUsedBytes = await usedBytes(lab, cephName);
    const early = /BMI-OUT dd-start/.test(await lab.console(NODE).read(watch.from));
    if (early) throw new Error(`the dd started before the counters were read: raise --pause-s (${PAUSE_S})`);
    const done = await watch.until(RUN_END);
    const seen = await watch.stop();
    const vmStart = lab.powerHistory(NODE).find((e) => e.at >= t0 && e.event !== "stop");
    if (!vmStart) throw new Error("the node's BMC never started its VM");
    return {
      vmStartMs: vmStart.at - t0,
      lines: Object.fromEntries(Object.entries(seen).map(([k, at]) => [k, at - t0])),
      waiter: provisioned.boot?.stages ?? [],
      cluster,
      cloneUsedBytes,
      guest: parseGuest(done.text),
    };
  } finally {
    await watch.stop();
    // Whatever happened: the VM off (hard, through HIL), the clone and its target gone. Said, not
    // thrown, so an earlier error stays the one reported (the lab's stop removes what is left).
    await lab.bmi
      .deprovision({ project: lab.project, node: NODE, deleteDisk: true, powerOff: true })
      .catch((error: unknown) => log(`deprovision ${NODE} failed: ${String(error)}`));
  }
}

interface LocalBoot {
  /** ms from qemu's start to the OS line. */
  osLineMs: number;
  guest: GuestReport;
}

async function localBoot(imagePath: string, script: string): Promise<LocalBoot> {
  const booted = await bootLocalOverlay({
    image: imagePath,
    mac: "52:54:00:b2:00:01",
    memoryMb: MEMORY_MB,
    fwCfgFiles: { [FW_CFG_RUN]: script },
    expect: RUN_END,
    marks: { os_line: LINES.os_line },
    timeoutMs: BOOT_TIMEOUT_MS,
  });
  const osLineMs = booted.marksMs.os_line;
  if (osLineMs === undefined) throw new Error("the local boot printed no OS line");
  return { osLineMs, guest: parseGuest(booted.serial) };
}

/** The stage split of one iSCSI boot, in ms, each stage from the end of the previous one. */
function stagesOf(b: IscsiBoot) {
  const { firmware_login: fw, os_login: os, os_line: line } = b.lines;
  if (fw === undefined || os === undefined || line === undefined)
    throw new Error(`a boot stage was not seen on the console: ${JSON.stringify(b.lines)}`);
  return {
    provision: b.vmStartMs,
    "firmware + iPXE": fw - b.vmStartMs,
    "kernel + initramfs": os - fw,
    userspace: line - os,
    "provision call → OS line": line,
    "VM start → OS line": line - b.vmStartMs,
  };
}

const mib = (bytes: number) => round(bytes / MIB, 1);
const mbps = (seconds: number) => round(DD_MIB / seconds, 1);

function report(
  image: { key: string; cacheHit: boolean },
  lab: BmiLab,
  iscsi: IscsiBoot[],
  local: LocalBoot[],
) {
  const split = iscsi.map(stagesOf);
  const stageNames = Object.keys(split[0] ?? {}) as (keyof ReturnType<typeof stagesOf>)[];
  const stageRows = stageNames.map((s) => [
    s,
    ...split.map((b) => b[s]),
    round(median(split.map((b) => b[s]))),
  ]);
  const med = <T>(xs: T[], f: (x: T) => number) => median(xs.map(f));
  const bytesRows: (string | number)[][] = [
    ["read from the OSD (op_r_out_bytes + op_rw_out_bytes)", mib(med(iscsi, (b) => b.cluster.readBytes))],
    ["read by the guest kernel (/sys/block/sda/stat)", mib(med(iscsi, (b) => b.guest.kernelReadBytes))],
    ["written to the OSD (op_w_in_bytes + op_rw_in_bytes)", mib(med(iscsi, (b) => b.cluster.writtenBytes))],
    ["written by the guest kernel", mib(med(iscsi, (b) => b.guest.kernelWrittenBytes))],
    ["clone's space after the boot (rbd du)", mib(med(iscsi, (b) => b.cloneUsedBytes))],
  ];
  const iscsiBootMs = med(split, (b) => b["VM start → OS line"]);
  const localBootMs = med(local, (b) => b.osLineMs);
  const ratios = {
    boot: round(iscsiBootMs / localBootMs, 2),
    read: round(med(iscsi, (b) => b.guest.ddReadS) / med(local, (b) => b.guest.ddReadS), 2),
    write: round(med(iscsi, (b) => b.guest.ddWriteS) / med(local, (b) => b.guest.ddWriteS), 2),
  };
  const compareRows = [
    ["VM start → OS line, ms", round(iscsiBootMs), round(localBootMs), ratios.boot],
    [
      `dd read ${DD_MIB} MiB (direct), s (MB/s)`,
      `${med(iscsi, (b) => b.guest.ddReadS)} (${mbps(med(iscsi, (b) => b.guest.ddReadS))})`,
      `${med(local, (b) => b.guest.ddReadS)} (${mbps(med(local, (b) => b.guest.ddReadS))})`,
      ratios.read,
    ],
    [
      `dd write ${DD_MIB} MiB (direct), s (MB/s)`,
      `${med(iscsi, (b) => b.guest.ddWriteS)} (${mbps(med(iscsi, (b) => b.guest.ddWriteS))})`,
      `${med(local, (b) => b.guest.ddWriteS)} (${mbps(med(local, (b) => b.guest.ddWriteS))})`,
      ratios.write,
    ],
  ];
  const network =
    lab.network === "user" ? `qemu user-mode (${lab.networkReason})` : "the lab's own namespace (netns)";
  const text =
    `\n### Boot: Debian ${image.key} from its BMI clone (${iscsi.length} boots, BIOS, TCG) vs a local disk (${local.length})\n\n` +
    `network: ${network}; image ${image.cacheHit ? "from the cache" : "built in this run"}\n\n` +
    `${table(["stage, ms", ...iscsi.map((_, i) => `boot ${i + 1}`), "median"], stageRows)}\n\n` +
    `${table(["one boot (median), to the checkpoint after the OS line", "MiB"], bytesRows)}\n\n` +
    `${table(["iSCSI root vs local qcow2 (median)", "iSCSI", "local", "iSCSI/local"], compareRows)}\n` +
    `ratio iSCSI/local boot=${ratios.boot} read=${ratios.read} write=${ratios.write}\n`;
  return { text, ratios, split };
}

const cacheDir = process.env.BMI_DEBIAN_IMAGE_CACHE ?? join(homedir(), ".cache", "bmi", "images");
const image = await buildDebianImage({ cacheDir });
log(`image ${image.key} (${image.cacheHit ? "cache hit" : `built in ${image.ms} ms`})`);
const lab = await startBmiLab({ project: "bench", nodes: 1, network: "auto", log });
stopOnSignal(lab);
try {
  await lab.createGoldenImage(GOLDEN, { file: image.path });
  const script = join(lab.dir, "bench-run.sh"); // in the lab dir: removed with the lab
  await writeFile(script, SCRIPT);
  const iscsi: IscsiBoot[] = [];
  const local: LocalBoot[] = [];
  // Interleaved, so drift on a shared machine hits both sides.
  for (let i = 0; i < Math.max(BOOTS, LOCAL_BOOTS); i++) {
    if (i < BOOTS) {
      log(`iSCSI boot ${i + 1}/${BOOTS}`);
      iscsi.push(await iscsiBoot(lab, script, i + 1));
    }
    if (i < LOCAL_BOOTS) {
      log(`local boot ${i + 1}/${LOCAL_BOOTS}`);
      local.push(await localBoot(image.path, script));
    }
  }
  const { text, ratios, split } = report(image, lab, iscsi, local);
  process.stdout.write(text);
  const file = await writeResult("boot", {
    image: { key: image.key, cacheHit: image.cacheHit, allocatedBytes: image.allocatedBytes },
    network: lab.network,
    networkReason: lab.networkReason,
    ddMiB: DD_MIB,
    boots: iscsi.map((b, i) => ({ ...b, stages: split[i] })),
    localBoots: local,
    ratios,
  });
  log(`wrote ${file}`);
} finally {
  await lab.stop();
}
