import { createHash } from "node:crypto";
import { chmod, lstat, mkdir, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { execa } from "execa";
import { z } from "zod";

/**
 * A real golden image built from Debian packages: Debian 12 (debootstrap minbase) with the distro
 * kernel, open-iscsi and initramfs-tools set up so that the distro's own initramfs logs in to its
 * iSCSI root again from the iBFT that iPXE's `sanboot` publishes (`ISCSI_AUTO=true`), root on an
 * ext4 partition labelled {@link ROOT_LABEL}. It boots both ways: GRUB for BIOS in the MBR gap,
 * and GRUB x86_64-efi as `\EFI\BOOT\BOOTX64.EFI` on a FAT EFI system partition (MBR type 0xEF,
 * which UEFI firmware such as OVMF accepts as well as a GPT one). Built without loop mounts or
 * kernel modules on the host (`mkfs.ext4 -d`, `sfdisk`, `grub-mkimage`, mtools), so it builds as
 * root on a fresh CI machine.
 *
 * Inside the image two services talk to the host over the serial console (ttyS0):
 * - `bmi-os-line` prints one line `BMI-OS os="..." root="..." target="..." userspaceMs=...` read
 *   inside the OS (`/etc/os-release`, `findmnt /`, `/sys/firmware/ibft`);
 * - `bmi-run` runs the shell script qemu passes as fw_cfg `opt/bmi/run` (if any), prints its
 *   output between `BMI-RUN-BEGIN` and `BMI-RUN-END rc=<n>`: how the host runs commands in the node.
 */

export const ROOT_LABEL = "bmi-root";
export const OS_LINE_MARKER = "BMI-OS";
export const FW_CFG_RUN = "opt/bmi/run";

const DebianImageOptions = z.strictObject({
  cacheDir: z.string().min(1, { error: "cacheDir must be a directory path" }),
  mirror: z.url({ error: "mirror must be an http(s) URL" }).optional(),
  suite: z.enum(["bookworm"]).default("bookworm"),
  sizeMiB: z.number().int().min(512).max(1024).default(1024),
});
export type DebianImageOptions = z.input<typeof DebianImageOptions> & {
  /** Called after each build step with its duration. */
  onStep?: (step: string, ms: number) => void;
};

export interface DebianImage {
  /** The raw disk image (sparse, `sizeMiB` virtual). */
  path: string;
  /** The kernel and initramfs, also outside the image, to boot it with qemu `-kernel`. */
  kernel: string;
  initrd: string;
  /** The kernel command line GRUB uses. */
  append: string;
  /** The recipe's hash: the cache entry's name. */
  key: string;
  cacheHit: boolean;
  /** This call's time: the whole build, or the cache lookup. */
  ms: number;
  /** Allocated bytes of the image file (it is sparse). */
  allocatedBytes: number;
}

const PACKAGES = ["linux-image-amd64", "open-iscsi", "initramfs-tools", "systemd-sysv", "zstd", "util-linux"];
/** What the initramfs needs for an iSCSI root from the iBFT on qemu's e1000 or virtio NIC. */
const INITRAMFS_MODULES = [
  "iscsi_tcp",
  "iscsi_ibft",
  "libiscsi",
  "libiscsi_tcp",
  "scsi_transport_iscsi",
  "sd_mod",
  "ext4",
  "e1000",
  "virtio_net",
  "virtio_pci",
  "af_packet",
];
const APPEND = `root=LABEL=${ROOT_LABEL} ro console=ttyS0,115200 net.ifnames=0 panic=10`;
/** What both GRUBs need after their disk access: find the ext4 root by label, boot Linux, serial console. */
const GRUB_BOOT_MODULES = [
  "ext2",
  "search",
  "search_label",
  "linux",
  "echo",
  "serial",
  "terminal",
  "normal",
  "boot",
];
/** GRUB modules for a BIOS core.img that finds the root by label and boots Linux from ext4. */
const GRUB_BIOS_MODULES = ["biosdisk", "part_msdos", ...GRUB_BOOT_MODULES];
/** GRUB modules for the UEFI image: the same job, read from EFI block I/O (the ESP is FAT). */
const GRUB_EFI_MODULES = ["part_msdos", "part_gpt", "fat", ...GRUB_BOOT_MODULES];
const PART_START_SECTOR = 2048;
/** The EFI system partition, at the end of the disk: the root keeps its start (and GRUB BIOS its gap). */
const ESP_MIB = 32;
/**
 * open-iscsi waits this long for a lost session to come back before failing its I/O: long enough
 * to ride out a target restart (tgtd killed and started again, then BMI restores the targets).
 */
const REPLACEMENT_TIMEOUT_S = 600;

const OS_LINE_SCRIPT = `#!/bin/sh
# Prints the OS line the host parses: what this OS is and where its root is, read inside the OS.
. /etc/os-release
root=$(findmnt -n -o SOURCE /)
target=$(cat /sys/firmware/ibft/target0/target-name 2>/dev/null || echo none)
session=$(iscsiadm -m session 2>/dev/null | head -n 1 | tr -s ' ' | cut -d ' ' -f 3,4)
us=$(systemctl show -p UserspaceTimestampMonotonic --value)
up=$(cut -d ' ' -f 1 /proc/uptime)
echo "${OS_LINE_MARKER} os=\\"$PRETTY_NAME\\" root=\\"$root\\" target=\\"$target\\" session=\\"$session\\" userspaceMs=$((us / 1000)) uptime=$up" > /dev/ttyS0
`;

const RUN_SCRIPT = `#!/bin/sh
# Runs the script the host passed through qemu's fw_cfg, its output on the serial console.
modprobe qemu_fw_cfg 2>/dev/null
f=/sys/firmware/qemu_fw_cfg/by_name/${FW_CFG_RUN}/raw
[ -r "$f" ] || exit 0
cp "$f" /run/bmi-run.sh
echo "BMI-RUN-BEGIN" > /dev/ttyS0
sh /run/bmi-run.sh > /dev/ttyS0 2>&1
echo "BMI-RUN-END rc=$?" > /dev/ttyS0
`;

const unit = (description: string, exec: string, after: string) => `[Unit]
Description=${description}
After=${after}

[Service]
Type=oneshot
ExecStart=${exec}

[Install]
WantedBy=multi-user.target
`;

/** Files written into the debootstrapped tree (path relative to the tree → content, mode). */
function configFiles(): [string, string, number][] {
  return [
    ["etc/iscsi/iscsi.initramfs", "ISCSI_AUTO=true\n", 0o644],
    ["etc/iscsi/initiatorname.iscsi", "GenerateName=yes\n", 0o600],
    ["etc/initramfs-tools/modules", `${INITRAMFS_MODULES.join("\n")}\n`, 0o644],
    ["etc/initramfs-tools/conf.d/bmi.conf", "MODULES=list\nCOMPRESS=zstd\n", 0o644],
    ["etc/fstab", `LABEL=${ROOT_LABEL} / ext4 defaults,_netdev 0 1\n`, 0o644],
    ["etc/hostname", "bmi-node\n", 0o644],
    ["etc/machine-id", "", 0o444],
    ["usr/local/sbin/bmi-os-line", OS_LINE_SCRIPT, 0o755],
    ["usr/local/sbin/bmi-run", RUN_SCRIPT, 0o755],
    [
      "etc/systemd/system/bmi-os-line.service",
      unit("BMI OS line on ttyS0", "/usr/local/sbin/bmi-os-line", "local-fs.target"),
      0o644,
    ],
    [
      "etc/systemd/system/bmi-run.service",
      unit("BMI host script from fw_cfg", "/usr/local/sbin/bmi-run", "bmi-os-line.service"),
      0o644,
    ],
  ];
}

/** The mirror the host's own apt uses (the `URIs:` of debian.sources), read at run time. */
export async function hostDebianMirror(): Promise<string> {
  const text = await readFile("/etc/apt/sources.list.d/debian.sources", "utf8").catch(() => "");
  const uri = /^URIs:\s*(\S+)/m.exec(text)?.[1];
  if (uri) return uri;
  const list = await readFile("/etc/apt/sources.list", "utf8").catch(() => "");
  const deb = /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+bookworm\s/m.exec(list)?.[1];
  if (deb) return deb;
  throw new Error(
    "no Debian mirror found in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list",
  );
}

/**
 * Runs one build step in its own process group; a failure names the step and carries the
 * command's stderr. On timeout or failure the whole group is killed: debootstrap and chroot leave
 * children (dpkg, maintainer scripts) that killing the top process alone would orphan.
 */
export async function runBuildStep(
  step: string,
  file: string,
  args: readonly string[],
  timeoutMs = 1_200_000,
  input?: string,
): Promise<string> {
  const child = execa(file, args, { reject: false, all: true, input, detached: true });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    killGroup(child.pid);
  }, timeoutMs);
  const result = await child.finally(() => clearTimeout(timer));
  if (result.exitCode !== 0 || timedOut) {
    killGroup(child.pid);
    const why = timedOut ? `timed out after ${timeoutMs} ms` : `exit ${result.exitCode}`;
    const tail = String(result.all ?? result.stderr ?? "")
      .split("\n")
      .slice(-25)
      .join("\n");
    throw new Error(`image build step "${step}" failed: ${file} ${args.join(" ")}: ${why}\n${tail}`);
  }
  return String(result.stdout);
}
const run = runBuildStep;

/** SIGKILL to the process group led by `pid` (what is left of it: it may be gone already). */
function killGroup(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, "SIGKILL");
  } catch {
    // ESRCH: nothing left in the group.
  }
}

/** The recipe's hash: everything that shapes the image, including this file's scripts. */
function recipeKey(o: z.output<typeof DebianImageOptions>, mirror: string): string {
  const recipe = JSON.stringify({
    v: 3,
    suite: o.suite,
    mirror,
    sizeMiB: o.sizeMiB,
    PACKAGES,
    INITRAMFS_MODULES,
    APPEND,
    GRUB_BIOS_MODULES,
    GRUB_EFI_MODULES,
    ESP_MIB,
    REPLACEMENT_TIMEOUT_S,
    files: configFiles(),
  });
  return createHash("sha256").update(recipe).digest("hex").slice(0, 16);
}

const exists = (path: string) =>
  stat(path).then(
    () => true,
    () => false,
  );

function parseOptions(options: DebianImageOptions): z.output<typeof DebianImageOptions> {
  const { onStep: _onStep, ...rest } = options;
  return DebianImageOptions.parse(rest);
}

/** The cache key `buildDebianImage` would use for these options (the entry is `debian-<key>`). */
export async function debianImageKey(options: DebianImageOptions): Promise<string> {
  const o = parseOptions(options);
  return recipeKey(o, o.mirror ?? (await hostDebianMirror()));
}

/**
 * Builds the image, or returns the cached one for the same recipe. The entry is built in a
 * `<key>.partial-<pid>` directory and renamed into place only when complete, so a half-written
 * entry is never used; a failed build removes its partial directory.
 */
export async function buildDebianImage(options: DebianImageOptions): Promise<DebianImage> {
  const o = parseOptions(options);
  const started = performance.now();
  const mirror = o.mirror ?? (await hostDebianMirror());
  const key = recipeKey(o, mirror);
  const entry = join(o.cacheDir, `debian-${key}`);
  const result = (cacheHit: boolean): Promise<DebianImage> =>
    stat(join(entry, "disk.raw")).then((s) => ({
      path: join(entry, "disk.raw"),
      kernel: join(entry, "vmlinuz"),
      initrd: join(entry, "initrd.img"),
      append: APPEND,
      key,
      cacheHit,
      ms: Math.round(performance.now() - started),
      allocatedBytes: s.blocks * 512,
    }));
  if (await exists(join(entry, "manifest.json"))) return result(true);

  const partial = `${entry}.partial-${process.pid}`;
  await removeBuildDir(partial);
  await mkdir(partial, { recursive: true });
  const step = async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
    const t = performance.now();
    const value = await fn();
    options.onStep?.(name, Math.round(performance.now() - t));
    return value;
  };
  try {
    const tree = join(partial, "tree");
    await step("debootstrap", () =>
      run("debootstrap", "debootstrap", [
        "--variant=minbase",
        `--include=${PACKAGES.join(",")}`,
        o.suite,
        tree,
        mirror,
      ]),
    );
    await diskFromTree(tree, partial, o.sizeMiB, step);
    await rm(tree, { recursive: true, force: true });
    await writeFile(join(partial, "manifest.json"), `${JSON.stringify({ key, mirror, suite: o.suite })}\n`);
    if (!(await publishEntry(partial, entry))) return result(true);
  } catch (error) {
    await removeBuildDir(partial);
    throw error;
  }
  return result(false);
}

/**
 * Moves a finished build into place; false when another process finished the same entry first
 * (two test files building at once): its entry may be in use, so it stays and this build goes.
 */
export async function publishEntry(partial: string, entry: string): Promise<boolean> {
  if (await exists(join(entry, "manifest.json"))) {
    await removeBuildDir(partial);
    return false;
  }
  await rm(entry, { recursive: true, force: true }); // an incomplete entry from an older layout
  await rename(partial, entry);
  return true;
}

/**
 * Removes a build directory, first unmounting what a failed or killed debootstrap left mounted in
 * its tree (it mounts /proc and /sys there): a recursive removal must never walk into the host's.
 */
export async function removeBuildDir(dir: string): Promise<void> {
  const mounts = await readFile("/proc/mounts", "utf8").catch(() => "");
  const below = mounts
    .split("\n")
    .map((line) => line.split(" ")[1]?.replace(/\\040/g, " "))
    .filter((point): point is string => point?.startsWith(`${dir}/`) === true)
    .sort((a, b) => b.length - a.length);
  for (const point of below) await run("unmount", "umount", ["--lazy", point], 60_000);
  await rm(dir, { recursive: true, force: true });
}

type Step = <T>(name: string, fn: () => Promise<T>) => Promise<T>;

/**
 * Turns a debootstrapped tree into the bootable disk `<out>/disk.raw` (plus `vmlinuz` and
 * `initrd.img` beside it): iSCSI-from-iBFT initramfs, the serial-console services, docs and
 * locales stripped, ext4 root, GRUB. The tree is changed in place.
 */
export async function diskFromTree(
  tree: string,
  out: string,
  sizeMiB = 1024,
  step: Step = (_name, fn) => fn(),
): Promise<void> {
  await step("configure", () => configureTree(tree));
  await step("initramfs", () =>
    run("update-initramfs", "chroot", [tree, "update-initramfs", "-u", "-k", "all"]),
  );
  await step("strip", () => stripTree(tree));
  await step("disk", () => makeDisk(tree, out, sizeMiB));
}

async function configureTree(tree: string): Promise<void> {
  for (const [path, content, mode] of configFiles()) {
    const file = join(tree, path);
    await mkdir(dirname(file), { recursive: true });
    await rm(file, { force: true });
    await writeFile(file, content);
    await chmod(file, mode);
  }
  await setIscsidOption(tree, "node.session.timeo.replacement_timeout", String(REPLACEMENT_TIMEOUT_S));
  // iscsid is what logs in again when the root's session drops (a target restart): the package
  // only socket-activates it, and nothing on an iBFT-only root talks to its socket at boot.
  await run("enable services", "chroot", [
    tree,
    "systemctl",
    "enable",
    "bmi-os-line.service",
    "bmi-run.service",
    "iscsid.service",
  ]);
  // No login prompt on ttyS0: agetty's vhangup() at its start turns the host scripts' open
  // console into EIO (a script's output cut off, its rc 4), and nothing logs in (no password).
  await run("mask serial getty", "chroot", [tree, "systemctl", "mask", "serial-getty@ttyS0.service"]);
  // lstat: the links are absolute inside the tree, so they dangle on the host.
  for (const link of ["multi-user.target.wants/bmi-os-line.service", "sysinit.target.wants/iscsid.service"]) {
    if (!(await lstat(join(tree, "etc/systemd/system", link)).catch(() => null)))
      throw new Error(`${link} was not enabled`);
  }
  // No host keys or node identity baked in; no root password (the host talks through fw_cfg).
  await rm(join(tree, "var/lib/dbus/machine-id"), { force: true });
}

/**
 * Sets one option of the packaged etc/iscsi/iscsid.conf in place (the rest of the package's
 * defaults stay): replaces its line, or appends one if the package has none.
 */
async function setIscsidOption(tree: string, option: string, value: string): Promise<void> {
  const file = join(tree, "etc/iscsi/iscsid.conf");
  const text = await readFile(file, "utf8");
  const line = `${option} = ${value}`;
  const pattern = new RegExp(`^#?\\s*${option.replace(/\./g, "\\.")}\\s*=.*$`, "m");
  await writeFile(file, pattern.test(text) ? text.replace(pattern, line) : `${text}\n${line}\n`);
}

/** Docs, man pages, locales and apt's caches: a smaller image that copies faster. */
async function stripTree(tree: string): Promise<void> {
  for (const dir of [
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "var/cache/apt",
  ]) {
    const path = join(tree, dir);
    for (const name of await readdir(path).catch(() => [] as string[])) {
      await rm(join(path, name), { recursive: true, force: true });
    }
  }
  await rm(join(tree, "var/lib/apt/lists"), { recursive: true, force: true });
  await mkdir(join(tree, "var/lib/apt/lists/partial"), { recursive: true });
}

/** The kernel and initrd the tree's /vmlinuz and /initrd.img symlinks point at (tree-relative). */
async function bootFiles(tree: string): Promise<{ kernel: string; initrd: string }> {
  const names = await readdir(join(tree, "boot"));
  const kernel = names.find((n) => n.startsWith("vmlinuz-"));
  const initrd = names.find((n) => n.startsWith("initrd.img-"));
  if (!kernel || !initrd)
    throw new Error(`image build step "disk" failed: no kernel/initrd in /boot (${names})`);
  return { kernel: `/boot/${kernel}`, initrd: `/boot/${initrd}` };
}

/**
 * MBR with both boot paths: partition 1 the bootable ext4 root from 1 MiB (filled from the tree,
 * GRUB BIOS's core.img in the gap before it), partition 2 the EFI system partition in the last
 * {@link ESP_MIB} MiB (GRUB x86_64-efi as the removable-media path UEFI firmware boots).
 */
async function makeDisk(tree: string, out: string, sizeMiB: number): Promise<void> {
  const disk = join(out, "disk.raw");
  const { kernel, initrd } = await bootFiles(tree);
  await writeFile(join(out, "vmlinuz"), await readFile(join(tree, kernel)));
  await writeFile(join(out, "initrd.img"), await readFile(join(tree, initrd)));
  await run("truncate", "truncate", ["-s", `${sizeMiB}M`, disk]);
  const espStartMiB = sizeMiB - ESP_MIB;
  const rootSectors = espStartMiB * 2048 - PART_START_SECTOR;
  await run(
    "sfdisk",
    "sfdisk",
    ["--quiet", disk],
    60_000,
    [
      "label: dos",
      `start=${PART_START_SECTOR}, size=${rootSectors}, type=83, bootable`,
      `start=${espStartMiB * 2048}, size=${ESP_MIB * 2048}, type=ef`,
      "",
    ].join("\n"),
  );
  await run("mkfs.ext4", "mkfs.ext4", [
    "-q",
    "-F",
    "-L",
    ROOT_LABEL,
    "-d",
    tree,
    "-E",
    `offset=${PART_START_SECTOR * 512}`,
    disk,
    `${rootSectors / 2}k`,
  ]);
  const grubCfg = join(out, "grub-early.cfg");
  await writeFile(grubCfg, grubEarlyConfig(kernel, initrd));
  await installGrubBios(disk, grubCfg, out);
  await installGrubEfi(disk, grubCfg, out, espStartMiB);
  await rm(grubCfg);
}

/** GRUB's embedded config (both platforms): serial console, find the root by label, boot Linux. */
function grubEarlyConfig(kernel: string, initrd: string): string {
  return [
    "serial --unit=0 --speed=115200",
    "terminal_input serial console",
    "terminal_output serial console",
    `search --no-floppy --label ${ROOT_LABEL} --set=root`,
    "echo BMI-GRUB loading the kernel",
    `linux ${kernel} ${APPEND}`,
    `initrd ${initrd}`,
    "boot",
    "",
  ].join("\n");
}

/** GRUB i386-pc: boot.img in the MBR's code area, core.img in the gap before partition 1. */
async function installGrubBios(disk: string, grubCfg: string, out: string): Promise<void> {
  const core = join(out, "core.img");
  await run("grub-mkimage", "grub-mkimage", [
    "-O",
    "i386-pc",
    "-o",
    core,
    "-c",
    grubCfg,
    "-p",
    "(hd0,msdos1)/boot/grub",
    ...GRUB_BIOS_MODULES,
  ]);
  await patchCoreBlocklist(core);
  // boot.img's first 440 bytes only: 446/512 would overwrite the partition table.
  await run("dd boot.img", "dd", [
    "if=/usr/lib/grub/i386-pc/boot.img",
    `of=${disk}`,
    "bs=440",
    "count=1",
    "conv=notrunc",
  ]);
  await run("dd core.img", "dd", [`if=${core}`, `of=${disk}`, "bs=512", "seek=1", "conv=notrunc"]);
  await rm(core);
}

/**
 * GRUB x86_64-efi as `\EFI\BOOT\BOOTX64.EFI` on a FAT file built with mtools (no loop mount),
 * copied into partition 2; `conv=sparse` keeps the FAT's empty space unallocated in the image.
 */
async function installGrubEfi(
  disk: string,
  grubCfg: string,
  out: string,
  espStartMiB: number,
): Promise<void> {
  const efi = join(out, "BOOTX64.EFI");
  const esp = join(out, "esp.img");
  await run("grub-mkimage efi", "grub-mkimage", [
    "-O",
    "x86_64-efi",
    "-o",
    efi,
    "-c",
    grubCfg,
    "-p",
    "/EFI/BOOT",
    ...GRUB_EFI_MODULES,
  ]);
  await run("truncate esp", "truncate", ["-s", `${ESP_MIB}M`, esp]);
  await run("mformat", "mformat", [
    "-i",
    esp,
    "-T",
    String(ESP_MIB * 2048),
    "-h",
    "64",
    "-s",
    "32",
    "-v",
    "BMI-ESP",
    "::",
  ]);
  await run("mmd", "mmd", ["-i", esp, "::/EFI", "::/EFI/BOOT"]);
  await run("mcopy", "mcopy", ["-i", esp, efi, "::/EFI/BOOT/BOOTX64.EFI"]);
  await run("dd esp", "dd", [
    `if=${esp}`,
    `of=${disk}`,
    "bs=1M",
    `seek=${espStartMiB}`,
    "conv=notrunc,sparse",
  ]);
  await rm(efi);
  await rm(esp);
}

/**
 * What grub-bios-setup does for an embedded core.img: its first sector (diskboot) loads the rest
 * from the blocklist in its last 12 bytes (start sector u64, sector count u16, segment u16).
 */
async function patchCoreBlocklist(core: string): Promise<void> {
  const bytes = await readFile(core);
  const sectors = Math.ceil(bytes.length / 512);
  if (sectors > PART_START_SECTOR - 1)
    throw new Error(`GRUB core.img (${bytes.length} B) does not fit the MBR gap`);
  bytes.writeBigUInt64LE(2n, 500);
  bytes.writeUInt16LE(sectors - 1, 508);
  bytes.writeUInt16LE(0x820, 510);
  await writeFile(core, bytes);
}

export interface OsLine {
  os: string;
  root: string;
  target: string;
  session: string;
  userspaceMs: number;
}

/** The image's OS line from a serial log (matched on its fields: systemd echoes unit descriptions). */
export function parseOsLine(serial: string): OsLine | null {
  const m = /BMI-OS os="([^"]*)" root="([^"]*)" target="([^"]*)" session="([^"]*)" userspaceMs=(\d+)/.exec(
    serial,
  );
  if (!m) return null;
  return {
    os: m[1] ?? "",
    root: m[2] ?? "",
    target: m[3] ?? "",
    session: m[4] ?? "",
    userspaceMs: Number(m[5]),
  };
}
