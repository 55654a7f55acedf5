import { mkdir, readdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import {
  type Bmi,
  type BmiConfig,
  type BmiSettings,
  type BootDriver,
  type ExportDriver,
  type Image,
  type IsolationDriver,
  type Logger,
  loadConfig,
  type SqliteStore,
  type StorageDriver,
  silentLogger,
  type TargetInfo,
} from "@bmi/core";
import { type HilServer, startHilServer } from "@bmi/driver-hil/testing";
import { installTftpRoot } from "@bmi/driver-pxe";
import { createBmiFromConfig } from "@bmi/wiring";
import { execa } from "execa";
import { bootSector, buildBootImage } from "./boot-image.js";
import { type CephLab, type CephLabInfo, startCephLab } from "./ceph.js";
import { makeTempDir } from "./process.js";
import { type BootVmResult, bootVm } from "./qemu.js";
import { startTgtd, type TgtdHandle } from "./tgtd.js";

/** The host as a qemu user-mode guest sees it: where the guest finds the loopback tgtd. */
export const QEMU_HOST_ADDRESS = "10.0.2.2";

export interface LabNode {
  name: string;
  mac: string;
  nic: string;
}

export interface BmiLabOptions {
  /** Everything goes under here; default a fresh temp dir, removed by `stop()`. */
  dir?: string;
  /** The project that owns the lab's nodes in HIL and in BMI. */
  project?: string;
  /** How many nodes the HIL-compatible server knows (all owned by `project`). */
  nodes?: number;
  /** Reuse a running Ceph lab (e.g. the test run's shared one) instead of starting one. */
  ceph?: CephLabInfo;
  /**
   * `[bmi] uid`, the RBD name prefix. Default "1" on a lab's own cluster; a random one on a shared
   * cluster, so labs sharing a pool never collide on `<uid>img<id>` names.
   */
  uid?: string;
  /** How long the fake HIL's networking daemon takes per action. */
  hilActionDelayMs?: number;
  /** Extra `[section] key = value` lines for the generated bmi_config.cfg. */
  configOverrides?: Record<string, Record<string, string>>;
  logger?: Logger;
  /** Called as each part comes up, for progress displays. */
  onProgress?: (part: "ceph" | "tgtd" | "hil" | "tftp" | "config" | "bmi", ms: number) => void;
}

export interface BmiLab {
  dir: string;
  configPath: string;
  config: BmiConfig;
  settings: BmiSettings;
  bmi: Bmi;
  store: SqliteStore;
  drivers: { storage: StorageDriver; export: ExportDriver; boot: BootDriver; isolation: IsolationDriver };
  ceph: CephLabInfo;
  tgtd: TgtdHandle;
  hil: HilServer;
  tftpRoot: string;
  /** The DHCP boot file for iPXE clients (qemu's built-in ROM): a dispatcher that chains by MAC. */
  ipxeBootfile: string;
  project: string;
  nodes: LabNode[];
  /** HIL credentials of the lab's user (a member of `project`). */
  hilUser: { name: string; password: string };
  /** Builds a bootable disk image printing `marker`, imports it into Ceph, registers it as a golden image. */
  createGoldenImage(name: string, options?: { marker?: string; public?: boolean }): Promise<Image>;
  /**
   * Boots a diskless qemu VM with the node's MAC from the lab's TFTP root, through the original's
   * chain (PXE → pxelinux.0 → ipxe.lkrn → node script) or straight through iPXE. `firmware: "uefi"`
   * boots OVMF, whose EFI iPXE ROM takes the iPXE chain (pxelinux is BIOS-only).
   */
  bootNode(
    node: string,
    options?: {
      chain?: "pxelinux" | "ipxe";
      firmware?: "bios" | "uefi";
      timeoutMs?: number;
      expect?: RegExp;
      serialLog?: string;
    },
  ): Promise<BootVmResult>;
  /**
   * Writes a new boot sector printing `marker` into a disk through its iSCSI target, as the node
   * itself would write to its root disk (the write lands in the clone, never in the golden image).
   */
  writeBootMarker(disk: { target: TargetInfo | null }, marker: string): Promise<void>;
  /** What BMI made that is still there: RBD images (besides imported sources), targets, boot files. */
  leftovers(): Promise<{ images: string[]; targets: string[]; bootFiles: string[] }>;
  /** Tears everything down that the lab started, in reverse order; safe to call twice. */
  stop(): Promise<void>;
}

const HIL_USER = { name: "bmi", password: "lab-hil-password" };
const PROVISIONING_NETWORK = "bmi-provision";

const labMac = (i: number) => `52:54:00:b1:00:${(i + 1).toString(16).padStart(2, "0")}`;

/**
 * A whole BMI on one machine: a throwaway Ceph cluster, tgtd on loopback, a HIL-compatible server
 * with nodes owned by one project, a TFTP root with the boot loaders, a SQLite DB, and a generated
 * bmi_config.cfg that the SDK is wired from, exactly as a deployment would be.
 */
export async function startBmiLab(options: BmiLabOptions = {}): Promise<BmiLab> {
  const project = options.project ?? "demo";
  const logger = options.logger ?? silentLogger;
  const temp = options.dir ? undefined : await makeTempDir("lab");
  const dir = options.dir ?? (temp?.path as string);
  await mkdir(dir, { recursive: true });
  const cleanups: (() => Promise<unknown>)[] = [];
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
    if (temp) await temp.remove();
  };
  const timed = async <T>(
    part: Parameters<NonNullable<BmiLabOptions["onProgress"]>>[0],
    fn: () => Promise<T>,
  ) => {
    const started = performance.now();
    const result = await fn();
    options.onProgress?.(part, Math.round(performance.now() - started));
    return result;
  };

  try {
    let ceph: CephLabInfo;
    if (options.ceph) {
      ceph = options.ceph;
    } else {
      const started: CephLab = await timed("ceph", () => startCephLab({ dir: join(dir, "ceph") }));
      cleanups.push(() => started.stop());
      ceph = started;
    }

    await mkdir(join(dir, "tgtd"), { recursive: true });
    const tgtd = await timed("tgtd", () => startTgtd({ dir: join(dir, "tgtd"), portal: "127.0.0.1" }));
    cleanups.push(() => tgtd.stop());

    const nodes: LabNode[] = Array.from({ length: options.nodes ?? 2 }, (_, i) => ({
      name: `node-${String(i + 1).padStart(2, "0")}`,
      mac: labMac(i),
      nic: "eth0",
    }));
    const hil = await timed("hil", () =>
      startHilServer({
        auth: "basic",
        actionDelayMs: options.hilActionDelayMs ?? 20,
        fixture: {
          projects: [project],
          users: [{ name: HIL_USER.name, password: HIL_USER.password, projects: [project] }],
          nodes: nodes.map((n) => ({ name: n.name, project, nics: [{ label: n.nic, macaddr: n.mac }] })),
          networks: [{ name: PROVISIONING_NETWORK, owner: "admin", access: [project] }],
        },
      }),
    );
    cleanups.push(() => hil.close());

    const tftpRoot = join(dir, "tftpboot");
    const installed = await timed("tftp", () => installTftpRoot({ root: tftpRoot }));

    const configPath = join(dir, "bmi_config.cfg");
    await writeFile(
      configPath,
      renderConfig({
        dir,
        ceph,
        tgtd,
        hil,
        tftpRoot,
        uid: options.uid ?? (options.ceph ? String(100 + Math.floor(Math.random() * 900_000)) : "1"),
        overrides: options.configOverrides ?? {},
      }),
      { mode: 0o600 },
    );
    const { config } = await timed("config", async () => loadConfig({ path: configPath }));
    // Wired from the config exactly as a deployment (and the bmi CLI) is.
    const {
      bmi: wired,
      store,
      drivers,
      settings,
      close,
    } = createBmiFromConfig(config, {
      logger,
      env: {},
      createStore: true,
    });
    cleanups.push(async () => close());
    const bmi = await timed("bmi", async () => {
      const created = wired;
      // As `bmi db init` does: the admin project marks the database as a deployment's own.
      for (const name of new Set([settings.adminProject, project])) {
        if (!created.listProjects().some((p) => p.name === name)) await created.createProject({ name });
      }
      return created;
    });

    const lab: BmiLab = {
      dir,
      configPath,
      config,
      settings,
      bmi,
      store,
      drivers,
      ceph,
      tgtd,
      hil,
      tftpRoot,
      ipxeBootfile: installed.dispatcher,
      project,
      nodes,
      hilUser: HIL_USER,
      async createGoldenImage(name, imageOptions = {}) {
        const file = join(dir, `${name}.raw`);
        await buildBootImage(file, { marker: imageOptions.marker });
        const source = `lab${settings.uid}-${name}-src`; // unique in a shared pool
        await drivers.storage.importFile?.(file, source);
        cleanups.push(async () => {
          if (await drivers.storage.exists(source)) await drivers.storage.remove(source);
        });
        return bmi.importImage({ project, source, name, isPublic: imageOptions.public ?? true });
      },
      async bootNode(name, bootOptions = {}) {
        const node = nodes.find((n) => n.name === name);
        if (!node) throw new Error(`the lab has no node ${name}`);
        if (bootOptions.firmware === "uefi" && bootOptions.chain === "pxelinux")
          throw new Error("pxelinux.0 is a BIOS loader; UEFI nodes boot through the iPXE chain");
        return bootVm({
          mac: node.mac,
          tftpRoot,
          bootfile: bootOptions.chain === "pxelinux" ? "pxelinux.0" : installed.dispatcher,
          firmware: bootOptions.firmware,
          timeoutMs: bootOptions.timeoutMs ?? 180_000,
          expect: bootOptions.expect,
          serialLog: bootOptions.serialLog,
        });
      },
      async writeBootMarker(disk, marker) {
        if (!disk.target) throw new Error("the disk is not exported");
        const file = join(dir, `marker-${process.pid}-${Date.now()}.raw`);
        await writeFile(file, bootSector(marker));
        try {
          // Over the loopback portal (the guest's 10.0.2.2 is this host's 127.0.0.1).
          const url = `iscsi://127.0.0.1:${tgtd.port}/${disk.target.name}/${disk.target.lun}`;
          await execa(
            "qemu-img",
            ["dd", "-f", "raw", "-O", "raw", `if=${file}`, `of=${url}`, "bs=512", "count=1"],
            {
              timeout: 60_000,
            },
          );
        } finally {
          await rm(file, { force: true });
        }
      },
      async leftovers() {
        const images = (await drivers.storage.list()).filter((n) => n.startsWith(`${settings.uid}img`));
        const targets = (await drivers.export.list()).map((t) => t.target);
        const bootFiles = (await drivers.boot.list()).flatMap((e) => e.files);
        return { images, targets, bootFiles };
      },
      stop,
    };
    return lab;
  } catch (error) {
    await stop();
    throw error;
  }
}

function renderConfig(p: {
  dir: string;
  ceph: CephLabInfo;
  tgtd: TgtdHandle;
  hil: HilServer;
  tftpRoot: string;
  uid: string;
  overrides: Record<string, Record<string, string>>;
}): string {
  const sections: Record<string, Record<string, string>> = {
    bmi: { uid: p.uid, snapshot: "bmi_created_snapshot" },
    db: { path: join(p.dir, "bmi.db") },
    fs: { id: p.ceph.clientId, pool: p.ceph.pool, conf_file: p.ceph.conf, keyring: p.ceph.keyring },
    net_isolator: {
      url: p.hil.url,
      username: HIL_USER.name,
      password: HIL_USER.password,
      provisioning_network: PROVISIONING_NETWORK,
    },
    iscsi: {
      // The VM reaches the host's loopback tgtd through qemu's user-mode network.
      ip: QEMU_HOST_ADDRESS,
      port: String(p.tgtd.port),
      tgt_control_port: String(p.tgtd.controlPort),
      initiators: "ALL",
    },
    tftp: { ipxe_path: `${p.tftpRoot}/`, pxelinux_path: `${p.tftpRoot}/pxelinux.cfg/` },
    logs: { path: `${join(p.dir, "logs")}/`, debug: "false", verbose: "false" },
  };
  for (const [section, keys] of Object.entries(p.overrides))
    sections[section] = { ...sections[section], ...keys };
  const lines = ["# Generated by @bmi/lab for a throwaway BMI on this machine."];
  for (const [section, keys] of Object.entries(sections)) {
    lines.push("", `[${section}]`, ...Object.entries(keys).map(([k, v]) => `${k} = ${v}`));
  }
  return `${lines.join("\n")}\n`;
}

/** Files under a directory, relative to it (for leftover checks of a TFTP root). */
export async function listFiles(root: string): Promise<string[]> {
  const entries = await readdir(root, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name).slice(root.length + 1));
}
