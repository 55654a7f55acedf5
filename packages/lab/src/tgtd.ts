import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { closeSync, openSync } from "node:fs";
import { readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { execa } from "execa";
import { freePort, isAlive, makeTempDir, stopPid, waitFor } from "./process.js";

/** Where tgtd and tgtadm meet: `<base>.<control port>` (and `.lock`), unless TGT_IPC_SOCKET moves it. */
const IPC_BASE = "/var/run/tgtd/socket";
/** tgtd's `-C` accepts 0..32767; stay clear of the small numbers people pick by hand. */
const CONTROL_PORT_MIN = 1024;
const CONTROL_PORT_MAX = 32767;

export interface StartTgtdOptions {
  /** Directory for the log; a fresh temp dir (removed on stop) when omitted. */
  dir?: string;
  /** The address the iSCSI portal listens on. Loopback only in tests. */
  portal?: string;
  /** iSCSI port; a free one when omitted. */
  port?: number;
  /** tgtd's `-C` control port (names its IPC socket); a random unused one when omitted. */
  controlPort?: number;
  /** How long to wait for tgtd to answer. */
  timeoutMs?: number;
  /**
   * Run tgtd inside this network namespace (the lab network's), so its portal is on the lab's
   * provisioning VLAN; tgtadm still reaches it through its control socket in /var/run/tgtd.
   */
  netns?: string;
}

export interface TgtdHandle {
  readonly portal: string;
  readonly port: number;
  readonly controlPort: number;
  /** The current tgtd's PID (changes on restart). */
  readonly pid: number;
  logFile: string;
  /** Runs `tgtadm -C <controlPort> ...args` against this daemon. */
  tgtadm(args: readonly string[]): Promise<{ exitCode: number; stdout: string; stderr: string }>;
  /** Deletes every target (forced), asks tgtd to exit, then makes sure by PID. Removes what start made. */
  stop(): Promise<void>;
  /** SIGKILL, as a crash: the targets are lost. */
  kill(): Promise<void>;
  /** Starts tgtd again on the same portal and control port (after `kill()` or a crash). */
  restart(): Promise<void>;
}

const tgtadmRaw = async (controlPort: number, args: readonly string[], timeoutMs = 10_000) => {
  const result = await execa("tgtadm", ["-C", String(controlPort), ...args], {
    reject: false,
    timeout: timeoutMs,
    encoding: "utf8",
  });
  return { exitCode: result.exitCode ?? -1, stdout: String(result.stdout), stderr: String(result.stderr) };
};

class TgtdStartError extends Error {
  constructor(
    message: string,
    readonly retryWith: "controlPort" | "port" | "none",
  ) {
    super(message);
  }
}

async function launch(
  netns: string | undefined,
  portal: string,
  port: number,
  controlPort: number,
  logFile: string,
  timeoutMs: number,
): Promise<ChildProcess> {
  const fd = openSync(logFile, "a");
  let child: ChildProcess;
  try {
    const args = ["-f", "-C", String(controlPort), "--iscsi", `portal=${portal}:${port}`];
    // `ip netns exec` execs tgtd itself, so the PID we stop is tgtd's.
    child =
      netns === undefined
        ? spawn("tgtd", args, { stdio: ["ignore", fd, fd] })
        : spawn("ip", ["netns", "exec", netns, "tgtd", ...args], { stdio: ["ignore", fd, fd] });
  } finally {
    closeSync(fd);
  }
  const pid = child.pid;
  if (pid === undefined) {
    await new Promise((resolve) => child.once("error", resolve));
    throw new TgtdStartError("could not start tgtd (is the tgt package installed?)", "none");
  }
  child.on("error", () => {});
  const portalLine = `Portal: ${portal}:${port},`;
  // waitFor retries on thrown errors, so a definite failure is returned as a value to stop at once.
  const outcome = await waitFor(
    `tgtd on ${portal}:${port} (control port ${controlPort})`,
    async (): Promise<"ready" | TgtdStartError | false> => {
      if (!(await isAlive(pid))) {
        const log = await readFile(logFile, "utf8").catch(() => "");
        return /another tgtd is using|unable to get lock/.test(log)
          ? new TgtdStartError(`control port ${controlPort} is taken`, "controlPort")
          : new TgtdStartError(`tgtd exited at start-up; see ${logFile}`, "none");
      }
      const shown = await tgtadmRaw(
        controlPort,
        ["--lld", "iscsi", "--mode", "portal", "--op", "show"],
        2000,
      );
      if (shown.exitCode !== 0) return false;
      // Our own daemon answers with our portal; another one on the same control port would not.
      if (shown.stdout.includes(portalLine)) return "ready";
      const log = await readFile(logFile, "utf8").catch(() => "");
      // tgtd keeps running without a portal when the port is taken.
      return log.includes(`failed to create/bind to portal ${portal}:${port}`)
        ? new TgtdStartError(`iSCSI port ${port} is taken`, "port")
        : false;
    },
    { timeoutMs, intervalMs: 50 },
  ).catch(
    (error: unknown) => new TgtdStartError(error instanceof Error ? error.message : String(error), "none"),
  );
  if (outcome !== "ready") {
    await stopPid(pid, { signal: "SIGKILL", graceMs: 2000 });
    throw outcome;
  }
  return child;
}

const randomControlPort = () =>
  CONTROL_PORT_MIN + Math.floor(Math.random() * (CONTROL_PORT_MAX - CONTROL_PORT_MIN + 1));

/**
 * A private tgtd in the foreground on `portal:port` with its own control port, so several run side
 * by side (other developers' and CI jobs' included). Stop it with `stop()`; it ignores SIGTERM.
 */
export async function startTgtd(options: StartTgtdOptions = {}): Promise<TgtdHandle> {
  const portal = options.portal ?? "127.0.0.1";
  const timeoutMs = options.timeoutMs ?? 20_000;
  const temp = options.dir === undefined ? await makeTempDir("tgtd") : undefined;
  const dir = options.dir ?? (temp?.path as string);
  const logFile = join(dir, "tgtd.log");

  let port = options.port ?? (await freePort());
  let controlPort = options.controlPort ?? randomControlPort();
  let child: ChildProcess | undefined;
  for (let attempt = 1; ; attempt++) {
    try {
      child = await launch(options.netns, portal, port, controlPort, logFile, timeoutMs);
      break;
    } catch (error) {
      const retryWith = error instanceof TgtdStartError ? error.retryWith : "none";
      const canRetry =
        attempt < 8 &&
        ((retryWith === "controlPort" && options.controlPort === undefined) ||
          (retryWith === "port" && options.port === undefined));
      if (!canRetry) {
        await temp?.remove();
        throw error;
      }
      if (retryWith === "controlPort") controlPort = randomControlPort();
      else port = await freePort();
    }
  }

  let current: ChildProcess = child;
  const pidOf = () => current.pid as number;
  const forgetIpcFiles = async () => {
    // tgtd leaves its socket and lock file behind; they are ours only while we hold this port.
    await rm(`${IPC_BASE}.${controlPort}`, { force: true });
    await rm(`${IPC_BASE}.${controlPort}.lock`, { force: true });
  };
  const tgtadm = (args: readonly string[]) => tgtadmRaw(controlPort, args);

  /**
   * Waits until the kernel has reaped our tgtd. A multi-threaded tgtd (librbd) shows as a zombie
   * while its other threads still exit and hold the IPC lock, so the zombie check is not enough.
   */
  const reaped = async (child: ChildProcess) => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    await Promise.race([once(child, "exit"), sleep(10_000)]);
  };

  const kill = async () => {
    await stopPid(pidOf(), { signal: "SIGKILL", graceMs: 5000 });
    await reaped(current);
  };

  const stop = async () => {
    const pid = pidOf();
    if (await isAlive(pid)) {
      // `system delete` refuses while targets exist, so delete them first (forced: sessions may be open).
      const shown = await tgtadm(["--lld", "iscsi", "--mode", "target", "--op", "show"]).catch(
        () => undefined,
      );
      const tids = [...(shown?.stdout ?? "").matchAll(/^Target (\d+): /gm)].map((m) => m[1] as string);
      for (const tid of tids) {
        await tgtadm(["--lld", "iscsi", "--mode", "target", "--op", "delete", "--force", "--tid", tid]).catch(
          () => undefined,
        );
      }
      await tgtadm(["--mode", "system", "--op", "delete"]).catch(() => undefined);
      const exited = await waitFor("tgtd to exit", async () => !(await isAlive(pid)), {
        timeoutMs: 3000,
      }).catch(() => false);
      if (!exited) await stopPid(pid, { signal: "SIGKILL", graceMs: 3000 });
    }
    await reaped(current);
    await forgetIpcFiles();
    await temp?.remove();
  };

  const restart = async () => {
    if (await isAlive(pidOf())) await kill();
    current = await launch(options.netns, portal, port, controlPort, logFile, timeoutMs);
  };

  return {
    portal,
    get port() {
      return port;
    },
    get controlPort() {
      return controlPort;
    },
    get pid() {
      return pidOf();
    },
    logFile,
    tgtadm,
    stop,
    kill,
    restart,
  };
}
