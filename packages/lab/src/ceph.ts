import { randomUUID } from "node:crypto";
import { chmod, mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { join, resolve } from "node:path";
import { execa } from "execa";
import { commandLineOf, freePort, isAlive, makeTempDir, stopPid, waitFor } from "./process.js";

/**
 * A throwaway single-node Ceph cluster (spec/ceph-tgt-lab.md): mon `a`, one memstore OSD, an
 * optional mgr, cephx on, a client restricted to one pool, 127.0.0.1 only, all under one directory.
 */
export interface CephLabOptions {
  /** Where the cluster lives. Default: a fresh temp dir, wiped by `stop()`. */
  dir?: string;
  /** rbd needs no mgr for image operations; off by default (about 2 s faster, 300 MiB less). */
  withMgr?: boolean;
  pool?: string;
  clientId?: string;
  /** msgr v2 and v1 ports; default: free ports picked on 127.0.0.1. */
  monPorts?: { v2: number; v1: number };
  /** RAM the memstore OSD may use. */
  osdBytes?: number;
  /** Bound on each start-up stage (mon answering, OSD up, health). */
  stageTimeoutMs?: number;
  /** Clone format new clones get (2 = clones of unprotected snapshots, spec §9). */
  minCompatClient?: "luminous" | "mimic";
}

/** Connection info a test or script needs; plain data so it can cross vitest's `provide`. */
export interface CephLabInfo {
  dir: string;
  conf: string;
  keyring: string;
  clientId: string;
  pool: string;
  adminKeyring: string;
  monHost: string;
  /** The variables of `cluster.env` (CEPH_CONF, CEPH_KEYRING, CEPH_CLIENT_ID, CEPH_POOL, ...). */
  env: Record<string, string>;
}

export interface CephLab extends CephLabInfo {
  pids: { mon: number; osd: number; mgr?: number };
  /** Wall time of `startCephLab`, in ms (0.4 s when an already running lab was reused). */
  startMs: number;
  reused: boolean;
  /** Runs `ceph` as client.admin against this cluster; resolves with stdout, throws on failure. */
  ceph(args: readonly string[], options?: { input?: string; timeoutMs?: number }): Promise<string>;
  /** Stops our daemons by PID; wipes the directory unless `wipe: false` (default: wipe). */
  stop(options?: { wipe?: boolean }): Promise<void>;
}

const DEFAULTS = {
  pool: "bmi",
  clientId: "bmi",
  osdBytes: 8 * 1024 ** 3,
  stageTimeoutMs: 60_000,
};
const CMD_TIMEOUT_MS = 30_000;

/** Starts (or, when `dir` already holds a running lab, reuses) a Ceph lab. */
export async function startCephLab(options: CephLabOptions = {}): Promise<CephLab> {
  const started = performance.now();
  const temp = options.dir ? undefined : await makeTempDir("ceph");
  const dir = resolve(options.dir ?? (temp?.path as string));
  await mkdir(dir, { recursive: true });
  const release = await lockDir(join(dir, ".lock"), 300_000);
  try {
    const running = await runningLab(dir, options);
    if (running) return finish(running, true);
    await killLeftovers(dir);
    await wipeClusterFiles(dir);
    try {
      return finish(await build(dir, options), false);
    } catch (error) {
      await killLeftovers(dir).catch(() => {});
      if (temp) await temp.remove().catch(() => {});
      throw error;
    }
  } finally {
    await release();
  }

  function finish(lab: Omit<CephLab, "startMs" | "reused" | "stop">, reused: boolean): CephLab {
    return {
      ...lab,
      startMs: Math.round(performance.now() - started),
      reused,
      stop: (stopOptions) => stopCephLab(lab, stopOptions),
    };
  }
}

/** Stops the daemons of the lab in `dir` (only those whose command line names its ceph.conf). */
export async function stopCephLab(
  lab: Pick<CephLabInfo, "dir">,
  options: { wipe?: boolean } = {},
): Promise<void> {
  const pids = await ourPids(lab.dir);
  // OSD first: stopping mon and OSD together makes the OSD wait osd_mon_shutdown_timeout (5 s).
  if (pids.osd) await stopPid(pids.osd, { graceMs: 15_000 });
  await Promise.all(
    [pids.mgr, pids.mon].filter((p) => p !== undefined).map((p) => stopPid(p, { graceMs: 15_000 })),
  );
  if (options.wipe ?? true) await rm(lab.dir, { recursive: true, force: true });
  else await rm(join(lab.dir, "run"), { recursive: true, force: true }).catch(() => {});
}

/** Reads `cluster.env` of a lab directory (for scripts that did not start the lab). */
export async function readCephLabInfo(dir: string): Promise<CephLabInfo> {
  const env = parseEnv(await readFile(join(dir, "cluster.env"), "utf8"));
  return infoFromEnv(resolve(dir), env);
}

async function build(
  dir: string,
  options: CephLabOptions,
): Promise<Omit<CephLab, "startMs" | "reused" | "stop">> {
  const pool = options.pool ?? DEFAULTS.pool;
  const clientId = options.clientId ?? DEFAULTS.clientId;
  const stageTimeoutMs = options.stageTimeoutMs ?? DEFAULTS.stageTimeoutMs;
  const conf = join(dir, "ceph.conf");
  for (const sub of ["mon/ceph-a", "osd/ceph-0", "mgr/ceph-x", "run", "log", "crash"]) {
    await mkdir(join(dir, sub), { recursive: true });
  }
  const ports = options.monPorts ?? (await twoFreePorts());
  const monHost = `[v2:127.0.0.1:${ports.v2},v1:127.0.0.1:${ports.v1}]`;
  const fsid = randomUUID();
  await writeFile(
    conf,
    cephConf({ dir, fsid, monHost, clientId, osdBytes: options.osdBytes ?? DEFAULTS.osdBytes }),
  );
  const ceph = await startMon(dir, conf, fsid, monHost, stageTimeoutMs);
  await startOsd(dir, conf, ceph);
  if (options.withMgr) await startMgr(dir, conf, ceph);
  if (options.minCompatClient === "mimic") {
    await ceph(["osd", "set-require-min-compat-client", "mimic"]);
  }
  const keyring = await createPool(dir, conf, ceph, { pool, clientId, stageTimeoutMs });
  await waitHealthy(ceph, Boolean(options.withMgr), stageTimeoutMs);

  const info = infoFromEnv(dir, {
    CEPH_CONF: conf,
    CEPH_KEYRING: keyring,
    CEPH_CLIENT_ID: clientId,
    CEPH_POOL: pool,
    CEPH_ADMIN_KEYRING: join(dir, "keyring.admin"),
    CEPH_MON_HOST: monHost,
  });
  await writeFile(
    join(dir, "cluster.env"),
    `${Object.entries(info.env)
      .map(([k, v]) => `${k}=${v}`)
      .join("\n")}\n`,
  );
  const pids = await ourPids(dir);
  if (!pids.mon || !pids.osd) throw new Error(`Ceph lab in ${dir}: daemon pid files missing after start`);
  return { ...info, pids: { mon: pids.mon, osd: pids.osd, mgr: pids.mgr }, ceph };
}

type AdminCli = CephLab["ceph"];
const authtool = (args: string[]) => run("ceph-authtool", args);

/** The mon. and client.admin keys, the monitor's store, the monitor; resolves when it answers. */
async function startMon(dir: string, conf: string, fsid: string, monHost: string, stageTimeoutMs: number) {
  const monKeyring = join(dir, "keyring.mon");
  const adminKeyring = join(dir, "keyring.admin");
  await authtool([monKeyring, "--create-keyring", "--gen-key", "-n", "mon.", "--cap", "mon", "allow *"]);
  const adminCaps = ["mon", "osd", "mds", "mgr"].flatMap((daemon) => ["--cap", daemon, "allow *"]);
  await authtool([adminKeyring, "--create-keyring", "--gen-key", "-n", "client.admin", ...adminCaps]);
  await authtool([monKeyring, "--import-keyring", adminKeyring]);

  const monmap = join(dir, "monmap");
  await run("monmaptool", ["--create", "--fsid", fsid, "--addv", "a", monHost, monmap]);
  await run("ceph-mon", ["-c", conf, "--mkfs", "-i", "a", "--monmap", monmap, "--keyring", monKeyring]);
  await run("ceph-mon", ["-c", conf, "-i", "a"], { daemon: true });
  const ceph = adminCli(conf);
  await waitFor(
    "the Ceph monitor to answer",
    () => ceph(["mon", "stat"], { timeoutMs: 5_000 }).then(() => true),
    { timeoutMs: stageTimeoutMs, intervalMs: 50 },
  );
  return ceph;
}

/** OSD 0 (memstore): registered with its own key, its store made, started. */
async function startOsd(dir: string, conf: string, ceph: AdminCli) {
  const osdUuid = randomUUID();
  const osdKey = (await run("ceph-authtool", ["--gen-print-key"])).trim();
  await ceph(["osd", "new", osdUuid, "-i", "-"], { input: JSON.stringify({ cephx_secret: osdKey }) });
  const osdKeyring = join(dir, "osd/ceph-0/keyring");
  await authtool([osdKeyring, "--create-keyring", "--name", "osd.0", "--add-key", osdKey]);
  await run("ceph-osd", ["-c", conf, "-i", "0", "--mkfs", "--osd-uuid", osdUuid]);
  await run("ceph-osd", ["-c", conf, "-i", "0"], { daemon: true });
}

async function startMgr(dir: string, conf: string, ceph: AdminCli) {
  const mgrKeyring = join(dir, "mgr/ceph-x/keyring");
  const caps = ["mon", "allow profile mgr", "osd", "allow *", "mds", "allow *"];
  await ceph(["auth", "get-or-create", "mgr.x", ...caps, "-o", mgrKeyring]);
  await chmod(mgrKeyring, 0o600);
  await run("ceph-mgr", ["-c", conf, "-i", "x"], { daemon: true });
}

/** The RBD pool and BMI's client key limited to it; resolves with the key's keyring path. */
async function createPool(
  dir: string,
  conf: string,
  ceph: AdminCli,
  o: { pool: string; clientId: string; stageTimeoutMs: number },
): Promise<string> {
  const { pool, clientId } = o;
  // The pool can be created while the OSD boots; `rbd pool init` needs the OSD up.
  await ceph(["osd", "pool", "create", pool, "8", "8"]);
  await waitFor(
    "OSD 0 to be up and in",
    async () => {
      const dump = JSON.parse(await ceph(["osd", "dump", "--format", "json"], { timeoutMs: 10_000 })) as {
        osds?: Array<{ osd: number; up: number; in: number }>;
      };
      return dump.osds?.some((d) => d.osd === 0 && d.up === 1 && d.in === 1) ?? false;
    },
    { timeoutMs: o.stageTimeoutMs, intervalMs: 100 },
  );
  await run("rbd", ["-c", conf, "pool", "init", pool], { timeoutMs: 120_000 });
  const keyring = join(dir, `keyring.${clientId}`);
  const caps = ["mon", "profile rbd", "osd", `profile rbd pool=${pool}`, "mgr", `profile rbd pool=${pool}`];
  await ceph(["auth", "get-or-create", `client.${clientId}`, ...caps, "-o", keyring]);
  for (const file of ["keyring.mon", "keyring.admin", `keyring.${clientId}`])
    await chmod(join(dir, file), 0o600);
  await run("rbd", ["-c", conf, "--id", clientId, "--keyring", keyring, "ls", pool], { timeoutMs: 60_000 });
  return keyring;
}

async function waitHealthy(ceph: AdminCli, withMgr: boolean, stageTimeoutMs: number) {
  if (withMgr) {
    await waitFor(
      "the Ceph manager to be available",
      async () =>
        (JSON.parse(await ceph(["mgr", "stat", "--format", "json"])) as { available?: boolean }).available,
      { timeoutMs: stageTimeoutMs, intervalMs: 200 },
    );
  }
  await waitFor("HEALTH_OK", async () => (await ceph(["health"])).startsWith("HEALTH_OK"), {
    timeoutMs: stageTimeoutMs,
    intervalMs: 100,
  });
}

/** The lab in `dir` if its daemons are ours, alive, and the cluster answers with OSD 0 up. */
async function runningLab(
  dir: string,
  options: CephLabOptions,
): Promise<Omit<CephLab, "startMs" | "reused" | "stop"> | undefined> {
  let info: CephLabInfo;
  try {
    info = await readCephLabInfo(dir);
  } catch {
    return undefined;
  }
  const pids = await ourPids(dir);
  if (!pids.mon || !pids.osd || (options.withMgr && !pids.mgr)) return undefined;
  if ((options.pool ?? DEFAULTS.pool) !== info.pool) return undefined;
  const ceph = adminCli(info.conf);
  try {
    const dump = JSON.parse(await ceph(["osd", "dump", "--format", "json"], { timeoutMs: 10_000 })) as {
      osds?: Array<{ osd: number; up: number; in: number }>;
    };
    if (!dump.osds?.some((o) => o.osd === 0 && o.up === 1 && o.in === 1)) return undefined;
  } catch {
    return undefined;
  }
  return { ...info, pids: { mon: pids.mon, osd: pids.osd, mgr: pids.mgr }, ceph };
}

/** PIDs from `run/*.pid` whose process is alive and was started with this lab's ceph.conf. */
async function ourPids(dir: string): Promise<{ mon?: number; osd?: number; mgr?: number }> {
  const conf = join(dir, "ceph.conf");
  const read = async (name: string) => {
    try {
      const pid = Number((await readFile(join(dir, "run", `${name}.pid`), "utf8")).trim());
      if (!Number.isInteger(pid) || pid <= 1 || !(await isAlive(pid))) return undefined;
      return (await commandLineOf(pid)).includes(conf) ? pid : undefined;
    } catch {
      return undefined;
    }
  };
  return { mon: await read("mon.a"), osd: await read("osd.0"), mgr: await read("mgr.x") };
}

async function killLeftovers(dir: string): Promise<void> {
  const pids = await ourPids(dir);
  await Promise.all(
    [pids.osd, pids.mgr, pids.mon]
      .filter((p) => p !== undefined)
      .map((p) => stopPid(p, { signal: "SIGKILL" })),
  );
}

/** A stopped memstore cluster has lost its data: delete everything but the lock and rebuild. */
async function wipeClusterFiles(dir: string): Promise<void> {
  for (const entry of await readdir(dir)) {
    if (entry !== ".lock") await rm(join(dir, entry), { recursive: true, force: true });
  }
}

/**
 * Holds an flock on `path` through a `flock … cat` child (Node has no flock): once `cat` echoes a
 * line the lock is ours; closing its stdin releases it. Daemons never inherit the lock.
 */
async function lockDir(path: string, timeoutMs: number): Promise<() => Promise<void>> {
  const holder = execa("flock", ["-w", String(Math.ceil(timeoutMs / 1000)), path, "cat"], {
    stdin: "pipe",
    stdout: "pipe",
    stderr: "pipe",
    reject: false,
  });
  await new Promise<void>((resolveLock, rejectLock) => {
    holder.stdout?.once("data", () => resolveLock());
    holder.once("exit", (code) => rejectLock(new Error(`could not lock ${path} (flock exit ${code})`)));
    holder.stdin?.write("locked\n");
  });
  return async () => {
    holder.stdin?.end();
    await holder;
  };
}

/** Runs a Ceph tool; throws with its last stderr line (and the whole stderr as cause) on failure. */
async function run(
  file: string,
  args: readonly string[],
  options: { input?: string; timeoutMs?: number; daemon?: boolean } = {},
): Promise<string> {
  const child = execa(file, [...args], {
    reject: false,
    input: options.input,
    // A daemon forks and detaches; its child must not hold our pipes open (its log is in log/).
    stdout: options.daemon ? "ignore" : "pipe",
    stderr: options.daemon ? "ignore" : "pipe",
    timeout: options.timeoutMs ?? CMD_TIMEOUT_MS,
    forceKillAfterDelay: 2_000,
    env: { CEPH_ARGS: "" },
  });
  const result = await child;
  if (result.exitCode !== 0 || result.timedOut) {
    const stderr = String(result.stderr ?? "");
    const last = stderr.trim().split("\n").at(-1) ?? "";
    const why = result.timedOut
      ? `timed out after ${options.timeoutMs ?? CMD_TIMEOUT_MS} ms`
      : `exit ${result.exitCode}`;
    throw new Error(`${file} ${args.slice(0, 4).join(" ")}: ${why}: ${last}`, { cause: stderr });
  }
  return String(result.stdout ?? "");
}

/** The options that make `ceph`, `rados` or `rbd` act as client.admin on this lab's cluster. */
export function cephAdminArgs(ceph: Pick<CephLabInfo, "conf" | "adminKeyring">): string[] {
  return ["--conf", ceph.conf, "--name", "client.admin", "--keyring", ceph.adminKeyring];
}

function adminCli(conf: string): CephLab["ceph"] {
  return (args, options = {}) => run("ceph", ["-c", conf, "--connect-timeout", "10", ...args], options);
}

function infoFromEnv(dir: string, env: Record<string, string>): CephLabInfo {
  const get = (key: string) => {
    const value = env[key];
    if (!value) throw new Error(`cluster.env in ${dir} has no ${key}`);
    return value;
  };
  return {
    dir,
    conf: get("CEPH_CONF"),
    keyring: get("CEPH_KEYRING"),
    clientId: get("CEPH_CLIENT_ID"),
    pool: get("CEPH_POOL"),
    adminKeyring: get("CEPH_ADMIN_KEYRING"),
    monHost: get("CEPH_MON_HOST"),
    env: { ...env },
  };
}

function parseEnv(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const at = line.indexOf("=");
    if (at > 0) env[line.slice(0, at).trim()] = line.slice(at + 1).trim();
  }
  return env;
}

async function twoFreePorts(): Promise<{ v2: number; v1: number }> {
  const v2 = await freePort();
  let v1 = await freePort();
  while (v1 === v2) v1 = await freePort();
  return { v2, v1 };
}

/** Whether 127.0.0.1:`port` can be bound right now. */
export function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolvePort) => {
    const server = createServer();
    server.once("error", () => resolvePort(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolvePort(true)));
  });
}

function cephConf(p: {
  dir: string;
  fsid: string;
  monHost: string;
  clientId: string;
  osdBytes: number;
}): string {
  const { dir } = p;
  // $cluster, $id and $name are Ceph metavariables and must reach the file literally.
  return `[global]
fsid = ${p.fsid}
mon_host = ${p.monHost}
mon_initial_members = a
public_network = 127.0.0.0/8
public_addr = 127.0.0.1
ms_bind_ipv4 = true
ms_bind_ipv6 = false
auth_cluster_required = cephx
auth_service_required = cephx
auth_client_required = cephx
auth_allow_insecure_global_id_reclaim = false
run_dir = ${dir}/run
crash_dir = ${dir}/crash
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
osd_crush_chooseleaf_type = 0
mon_allow_pool_size_one = true
mon_allow_pool_delete = true
mon_warn_on_pool_no_redundancy = false
mon_data_avail_warn = 2
mon_data_avail_crit = 1
mgr_initial_modules =
osd_objectstore = memstore

[client.admin]
keyring = ${dir}/keyring.admin
[client.${p.clientId}]
keyring = ${dir}/keyring.${p.clientId}

[mon]
mon_data = ${dir}/mon/$cluster-$id
paxos_propose_interval = 0.1
log_file = ${dir}/log/$cluster-$name.log
admin_socket = ${dir}/run/$cluster-$name.asok
pid_file = ${dir}/run/$name.pid

[osd]
osd_data = ${dir}/osd/$cluster-$id
keyring = ${dir}/osd/$cluster-$id/keyring
log_file = ${dir}/log/$cluster-$name.log
admin_socket = ${dir}/run/$cluster-$name.asok
pid_file = ${dir}/run/$name.pid
memstore_device_bytes = ${p.osdBytes}

[mgr]
mgr_data = ${dir}/mgr/$cluster-$id
keyring = ${dir}/mgr/$cluster-$id/keyring
log_file = ${dir}/log/$cluster-$name.log
admin_socket = ${dir}/run/$cluster-$name.asok
pid_file = ${dir}/run/$name.pid
`;
}
