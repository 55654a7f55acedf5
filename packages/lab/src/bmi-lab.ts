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
  type PowerDriver,
  type SqliteStore,
  type StorageDriver,
  silentLogger,
  type TargetInfo,
} from "@bmi/core";
import { createHilPower } from "@bmi/driver-hil";
import { type HilServer, startHilServer } from "@bmi/driver-hil/testing";
import { installTftpRoot } from "@bmi/driver-pxe";
import { createBmiFromConfig } from "@bmi/wiring";
import { execa } from "execa";
import {
  type BmiLabNetworkMode,
  chooseLabNetwork,
  LAB_ISCSI_PORT,
  LAB_PROVISIONING_VLAN,
  startBmiLabNetwork,
} from "./bmi-lab-network.js";
import { bootSector, buildBootImage } from "./boot-image.js";
import { type CephLab, type CephLabInfo, startCephLab } from "./ceph.js";
import {
  createLabNodeVm,
  type LabNodeSettings,
  type LabNodeVm,
  type NodeConsole,
  type PowerEvent,
} from "./lab-node.js";
import { inNetns } from "./network/commands.js";
import { LAB_SWITCH, type LabNetwork } from "./network/lab-network.js";
import { makeTempDir } from "./process.js";
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
  /**
   * `user` (default): qemu's user-mode network, its built-in DHCP/TFTP, tgtd on 127.0.0.1.
   * `netns`: the lab's own provisioning network (namespace, a bridge per VLAN as HIL's switch,
   * a tap per node, dnsmasq, tgtd's portal on it; see startLabNetwork); throws where it cannot
   * be made. `auto`: netns when root with `ip netns` and taps, else user, saying why (`log`).
   */
  network?: BmiLabNetworkMode;
  /** Where the lab says which network it uses and why (one line each); default the logger. */
  log?: (line: string) => void;
  logger?: Logger;
  /** Called as each part comes up, for progress displays. */
  onProgress?: (part: "ceph" | "network" | "tgtd" | "hil" | "tftp" | "config" | "bmi", ms: number) => void;
}

export interface BmiLab {
  dir: string;
  configPath: string;
  config: BmiConfig;
  settings: BmiSettings;
  bmi: Bmi;
  store: SqliteStore;
  drivers: {
    storage: StorageDriver;
    export: ExportDriver;
    boot: BootDriver;
    isolation: IsolationDriver;
    power: PowerDriver;
  };
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
  /** The network the nodes boot on: the lab's own (`netns`) or qemu's user mode. */
  network: "netns" | "user";
  /** Why the lab uses qemu's user-mode network; null on its own network. */
  networkReason: string | null;
  /** The lab's own network (namespace, taps, dnsmasq), null in user mode. */
  labNetwork: LabNetwork | null;
  /** The network's topology in a few lines: namespace, bridges and VLANs, taps, addresses, portal. */
  describe(): string;
  /**
   * Imports a disk image into Ceph and registers it as a golden image: `file` (e.g. the Debian
   * image from `buildDebianImage`), or else a boot sector the lab builds that prints `marker`.
   */
  createGoldenImage(
    name: string,
    options?: { marker?: string; file?: string; public?: boolean },
  ): Promise<Image>;
  /**
   * Sets how the node's VM starts at its next power-on (the lab's nodes have a BMC: HIL's OBM
   * → the obmd-compatible endpoint → QMP → qemu; nothing else starts them). Replaces earlier settings.
   */
  configureNode(node: string, settings: LabNodeSettings): void;
  /** The node's serial console (a file appended to by every boot). */
  console(node: string): NodeConsole;
  /** When the node's BMC started, reset and stopped its VM (wall-clock ms), oldest first. */
  powerHistory(node: string): readonly PowerEvent[];
  /**
   * Writes a new boot sector printing `marker` into a disk through its iSCSI target, as the node
   * itself would write to its root disk (the write lands in the clone, never in the golden image).
   */
  writeBootMarker(disk: { target: TargetInfo | null }, marker: string): Promise<void>;
  /** What BMI made that is still there: RBD images (besides imported sources), targets, boot files. */
  leftovers(): Promise<{ images: string[]; targets: string[]; bootFiles: string[] }>;
  /** Tears everything down that the lab started, in reverse order; safe to call twice (a second call resolves once the first has finished). */
  stop(): Promise<void>;
}

const HIL_USER = { name: "bmi", password: "lab-hil-password" };
const PROVISIONING_NETWORK = "bmi-provision";
/** The PXE driver's dnsmasq host entries, a directory of their own in the TFTP root. */
const DHCP_HOSTS_DIR = "dhcp-hosts";

/** Node i's MAC: the low two bytes count nodes, so a lab has up to 65,535 of them. */
const labMac = (i: number) => {
  const n = i + 1;
  const hex = (b: number) => b.toString(16).padStart(2, "0");
  return `52:54:00:b1:${hex((n >> 8) & 0xff)}:${hex(n & 0xff)}`;
};
/** Distinct per node (iPXE's initiator name comes from it) and per lab, so labs never share one. */
const labUuid = (i: number) =>
  `b1000000-0000-4000-8000-${(process.pid * 256 + i + 1).toString(16).padStart(12, "0").slice(-12)}`;

type LabPart = Parameters<NonNullable<BmiLabOptions["onProgress"]>>[0];

/** What every stage of a lab's start shares: where it lives, how to time a part, what to tear down. */
interface LabStart {
  readonly options: BmiLabOptions;
  readonly dir: string;
  readonly project: string;
  readonly logger: Logger;
  /** Runs `fn` and reports how long `part` took to come up (onProgress). */
  timed<T>(part: LabPart, fn: () => Promise<T>): Promise<T>;
  /** Registers an undo; they run in reverse order at `stop()`. */
  onStop(cleanup: () => Promise<unknown>): void;
  /** Tears everything down that the lab started, in reverse order; safe to call twice. */
  stop(): Promise<void>;
}

/**
 * A whole BMI on one machine: a throwaway Ceph cluster, tgtd (on loopback, or inside the lab's
 * own network with `network: "netns"`), a HIL-compatible server with nodes owned by one project,
 * a TFTP root with the boot loaders, a SQLite DB, and a generated bmi_config.cfg that the SDK is
 * wired from, exactly as a deployment would be.
 */
export async function startBmiLab(options: BmiLabOptions = {}): Promise<BmiLab> {
  const start = await beginLab(options);
  try {
    const ceph = await labCeph(start);
    const nodes = labNodes(options.nodes ?? 2);
    const tftpRoot = join(start.dir, "tftpboot");
    const installed = await start.timed("tftp", () => installTftpRoot({ root: tftpRoot }));
    const { choice, network } = await labOwnNetwork(start, { ceph, tftpRoot, installed, nodes });
    const tgtd = await labTgtd(start, network);
    const vms = labVms(start, { nodes, tftpRoot, installed, network });
    await mkdir(join(start.dir, "nodes"), { recursive: true });
    const hil = await labHil(start, { nodes, network, vms });
    const wired = await wireLab(start, { ceph, tgtd, hil, tftpRoot, network });
    return {
      ...wired,
      ceph,
      tgtd,
      hil,
      tftpRoot,
      ipxeBootfile: installed.dispatcher,
      project: start.project,
      nodes,
      hilUser: HIL_USER,
      network: choice.kind,
      networkReason: choice.kind === "user" ? choice.reason : null,
      labNetwork: network,
      describe: () => describeNetwork(network, tgtd, choice),
      configureNode(name, nodeSettings) {
        vms.of(name).configure(nodeSettings);
      },
      console: (name) => vms.of(name).console,
      powerHistory: (name) => vms.of(name).history,
      ...labDiskHelpers(start, wired, { tgtd, network }),
      stop: start.stop,
    };
  } catch (error) {
    await start.stop();
    throw error;
  }
}

/** The lab's directory (a fresh temp dir unless `dir` is given) and its teardown stack. */
async function beginLab(options: BmiLabOptions): Promise<LabStart> {
  const temp = options.dir ? undefined : await makeTempDir("lab");
  const dir = options.dir ?? (temp?.path as string);
  await mkdir(dir, { recursive: true });
  const cleanups: (() => Promise<unknown>)[] = [];
  let stopping: Promise<void> | undefined;
  return {
    options,
    dir,
    project: options.project ?? "demo",
    logger: options.logger ?? silentLogger,
    async timed(part, fn) {
      const started = performance.now();
      const result = await fn();
      options.onProgress?.(part, Math.round(performance.now() - started));
      return result;
    },
    onStop: (cleanup) => cleanups.push(cleanup),
    // A second stop() (a signal handler's and the caller's finally) waits for the first to end,
    // so no caller goes on, or exits, while the daemons are still being stopped.
    stop() {
      stopping ??= (async () => {
        for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
        if (temp) await temp.remove();
      })();
      return stopping;
    },
  };
}

/** The shared cluster when given, else a throwaway one under the lab's directory. */
async function labCeph(start: LabStart): Promise<CephLabInfo> {
  if (start.options.ceph) return start.options.ceph;
  const started: CephLab = await start.timed("ceph", () => startCephLab({ dir: join(start.dir, "ceph") }));
  start.onStop(() => started.stop());
  return started;
}

function labNodes(count: number): LabNode[] {
  return Array.from({ length: count }, (_, i) => ({
    name: `node-${String(i + 1).padStart(2, "0")}`,
    mac: labMac(i),
    nic: "eth0",
  }));
}

/** The lab's own network when chosen (`network` option), else null: qemu's user mode. */
async function labOwnNetwork(
  start: LabStart,
  parts: { ceph: CephLabInfo; tftpRoot: string; installed: { dispatcher: string }; nodes: LabNode[] },
) {
  const { options, logger } = start;
  const log = options.log ?? ((line: string) => logger.info(line));
  const choice = await chooseLabNetwork(options.network ?? "user");
  if (choice.kind === "user" && options.network === "auto")
    log(`lab network: qemu user-mode networking, not the lab's own (${choice.reason})`);
  if (choice.kind === "user") return { choice, network: null };
  const network = await start.timed("network", () =>
    startBmiLabNetwork({
      ceph: parts.ceph,
      tftpRoot: parts.tftpRoot,
      dhcpHostsDir: join(parts.tftpRoot, DHCP_HOSTS_DIR),
      ipxeBootFile: parts.installed.dispatcher,
      nodes: parts.nodes,
      log,
    }),
  );
  // Stopped after tgtd and the VMs inside it (cleanups run in reverse).
  start.onStop(() => network.stop());
  return { choice, network };
}

/** tgtd with its portal on the lab's network, or on the host's loopback in user mode. */
async function labTgtd(start: LabStart, network: LabNetwork | null): Promise<TgtdHandle> {
  const dir = join(start.dir, "tgtd");
  await mkdir(dir, { recursive: true });
  const tgtd = await start.timed("tgtd", () =>
    startTgtd(
      network
        ? { dir, netns: network.netns, portal: network.hostAddress, port: LAB_ISCSI_PORT }
        : { dir, portal: "127.0.0.1" },
    ),
  );
  start.onStop(() => tgtd.stop());
  return tgtd;
}

/** The nodes' VMs: each started only by its BMC (HIL's OBM). */
interface LabVms {
  of(name: string): LabNodeVm;
  stopAll(): Promise<unknown>;
}

function labVms(
  start: LabStart,
  parts: {
    nodes: LabNode[];
    tftpRoot: string;
    installed: { dispatcher: string };
    network: LabNetwork | null;
  },
): LabVms {
  const { network } = parts;
  const vms = new Map<string, LabNodeVm>();
  for (const [i, node] of parts.nodes.entries()) {
    const vm = createLabNodeVm({
      name: node.name,
      mac: node.mac,
      uuid: labUuid(i),
      dir: join(start.dir, "nodes"),
      tftpRoot: parts.tftpRoot,
      ipxeBootfile: parts.installed.dispatcher,
      ...(network ? { network: { tap: network.tapOf(node.name, node.nic), netns: network.netns } } : {}),
    });
    vms.set(node.name, vm);
  }
  return {
    of(name) {
      const vm = vms.get(name);
      if (!vm) throw new Error(`the lab has no node ${name}`);
      return vm;
    },
    stopAll: () => Promise.all([...vms.values()].map((vm) => vm.stop())),
  };
}

/** The HIL-compatible server: the lab's nodes owned by `project`, each with a BMC driving its VM. */
async function labHil(
  start: LabStart,
  parts: { nodes: LabNode[]; network: LabNetwork | null; vms: LabVms },
): Promise<HilServer> {
  const { nodes, network, vms } = parts;
  const hil = await start.timed("hil", () =>
    startHilServer({
      auth: "basic",
      machine: (name) => vms.of(name).machine,
      actionDelayMs: start.options.hilActionDelayMs ?? 20,
      ...(network ? { switch: network.switch } : {}),
      fixture: hilFixture(start.project, nodes, network),
    }),
  );
  start.onStop(() => hil.close());
  // Every VM the nodes' BMCs started goes before the HIL server (and the rest) does.
  start.onStop(() => vms.stopAll());
  // As an admin does for each node with a BMC (HIL fetches a token from the node's obmd).
  const obm = createHilPower({ url: hil.url, username: HIL_USER.name, password: HIL_USER.password });
  for (const node of nodes) await obm.client.setObm(node.name, true);
  return hil;
}

/** The lab's BMI: a bmi_config.cfg written for its parts, wired from it as a deployment is. */
async function wireLab(
  start: LabStart,
  parts: {
    ceph: CephLabInfo;
    tgtd: TgtdHandle;
    hil: HilServer;
    tftpRoot: string;
    network: LabNetwork | null;
  },
) {
  const { dir, options, project } = start;
  const configPath = join(dir, "bmi_config.cfg");
  const uid = options.uid ?? (options.ceph ? String(100 + Math.floor(Math.random() * 900_000)) : "1");
  await writeFile(
    configPath,
    renderConfig({ dir, ...parts, uid, overrides: options.configOverrides ?? {} }),
    { mode: 0o600 },
  );
  const { config } = await start.timed("config", async () => loadConfig({ path: configPath }));
  // Wired from the config exactly as a deployment (and the bmi CLI) is.
  const { bmi, store, drivers, settings, close } = createBmiFromConfig(config, {
    logger: start.logger,
    env: {},
    createStore: true,
  });
  start.onStop(async () => close());
  await start.timed("bmi", async () => {
    // As `bmi db init` does: the admin project marks the database as a deployment's own.
    for (const name of new Set([settings.adminProject, project])) {
      if (!(await bmi.listProjects()).some((p) => p.name === name)) await bmi.createProject({ name });
    }
  });
  return { dir, configPath, config, settings, bmi, store, drivers };
}

type WiredLab = Awaited<ReturnType<typeof wireLab>>;

/** The lab's disk helpers: golden images from files, boot markers written over iSCSI, leftovers. */
function labDiskHelpers(
  start: LabStart,
  { bmi, drivers, settings }: WiredLab,
  { tgtd, network }: { tgtd: TgtdHandle; network: LabNetwork | null },
): Pick<BmiLab, "createGoldenImage" | "writeBootMarker" | "leftovers"> {
  const { dir, project } = start;
  return {
    async createGoldenImage(name, imageOptions = {}) {
      const file = imageOptions.file ?? join(dir, `${name}.raw`);
      if (!imageOptions.file) await buildBootImage(file, { marker: imageOptions.marker });
      const source = `lab${settings.uid}-${name}-src`; // unique in a shared pool
      await drivers.storage.importFile?.(file, source);
      start.onStop(async () => {
        if (await drivers.storage.exists(source)) await drivers.storage.remove(source);
      });
      return bmi.importImage({ project, source, name, isPublic: imageOptions.public ?? true });
    },
    async writeBootMarker(disk, marker) {
      if (!disk.target) throw new Error("the disk is not exported");
      const file = join(dir, `marker-${process.pid}-${Date.now()}.raw`);
      await writeFile(file, bootSector(marker));
      try {
        // Where tgtd's portal is: inside the lab's namespace, or the host's loopback (the
        // user-mode guest's 10.0.2.2).
        const url = `iscsi://${tgtd.portal}:${tgtd.port}/${disk.target.name}/${disk.target.lun}`;
        const args = ["dd", "-f", "raw", "-O", "raw", `if=${file}`, `of=${url}`, "bs=512", "count=1"];
        const [command, argv] = network ? inNetns(network.netns, "qemu-img", args) : ["qemu-img", args];
        await execa(command, argv, { timeout: 60_000 });
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
  };
}

/** HIL's view of the lab: its nodes, owned by `project`, cabled to the lab's switch when there is one. */
function hilFixture(project: string, nodes: readonly LabNode[], network: LabNetwork | null) {
  const cable = (n: LabNode) =>
    network ? { cable: { switch: LAB_SWITCH, port: network.tapOf(n.name, n.nic) } } : {};
  return {
    projects: [project],
    users: [{ name: HIL_USER.name, password: HIL_USER.password, projects: [project] }],
    ...(network ? { switches: [{ name: LAB_SWITCH, ports: [...network.taps.values()] }] } : {}),
    nodes: nodes.map((n) => ({
      name: n.name,
      project,
      nics: [{ label: n.nic, macaddr: n.mac, ...cable(n) }],
    })),
    networks: [
      {
        name: PROVISIONING_NETWORK,
        owner: "admin",
        access: [project],
        // The switch's VLAN for it: the bridge the host side (dnsmasq, tgtd) is on.
        ...(network ? { netId: String(LAB_PROVISIONING_VLAN) } : {}),
      },
    ],
  };
}

function describeNetwork(
  network: LabNetwork | null,
  tgtd: TgtdHandle,
  choice: { kind: "netns" } | { kind: "user"; reason: string },
): string {
  if (network === null) {
    const reason = choice.kind === "user" ? choice.reason : "";
    return [
      `qemu user-mode network (${reason}): no switch, no VLANs; each VM alone with qemu's DHCP/TFTP`,
      `  nodes reach tgtd ${tgtd.portal}:${tgtd.port} as ${QEMU_HOST_ADDRESS}:${tgtd.port}`,
    ].join("\n");
  }
  return [
    network.describe(),
    `  tgtd portal ${tgtd.portal}:${tgtd.port} inside ${network.netns} (driven through its control socket ${tgtd.controlPort})`,
    `  HIL network ${PROVISIONING_NETWORK} = VLAN ${network.provisioningVlan}; nothing routes out of the namespace`,
  ].join("\n");
}

function renderConfig(p: {
  dir: string;
  ceph: CephLabInfo;
  tgtd: TgtdHandle;
  hil: HilServer;
  tftpRoot: string;
  network: LabNetwork | null;
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
      // On the lab's network the portal's own address; in user mode the VM reaches the host's
      // loopback tgtd through qemu.
      ip: p.network ? p.network.hostAddress : QEMU_HOST_ADDRESS,
      port: String(p.tgtd.port),
      tgt_control_port: String(p.tgtd.controlPort),
      initiators: "ALL",
    },
    tftp: {
      ipxe_path: `${p.tftpRoot}/`,
      pxelinux_path: `${p.tftpRoot}/pxelinux.cfg/`,
      // dnsmasq answers only the MACs the PXE driver wrote an entry for, and re-reads on SIGHUP.
      ...(p.network
        ? {
            dhcp_hosts_path: `${join(p.tftpRoot, DHCP_HOSTS_DIR)}/`,
            dnsmasq_pid_file: p.network.dnsmasq.pidFile,
          }
        : {}),
    },
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
