import { spawn } from "node:child_process";
import { rm } from "node:fs/promises";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";
import { execa } from "execa";
import { type CephLabInfo, cephAdminArgs } from "../ceph.js";
import { stopPid, waitFor } from "../process.js";
import { inNetns } from "./commands.js";

// The half inside the namespace: listens on its own 127.0.0.1:<port> for each port and pipes
// every connection into `<dir>/lo-<port>.sock`, a unix socket (those cross namespaces, routes do not).
const INSIDE = `
const net = require("node:net");
const [dir, ...ports] = process.argv.slice(1);
for (const port of ports) {
  net.createServer((client) => {
    const host = net.createConnection(dir + "/lo-" + port + ".sock");
    client.pipe(host).pipe(client);
    const end = () => { client.destroy(); host.destroy(); };
    client.on("error", end); host.on("error", end); client.on("close", end); host.on("close", end);
  }).listen(Number(port), "127.0.0.1", () => process.stdout.write("listening " + port + "\\n"));
}`;

export interface LoopbackBridge {
  /** The process inside the namespace (recorded in the state file, stopped by PID). */
  readonly pid: number;
  stop(): Promise<void>;
}

const pipeBoth = (a: Socket, b: Socket) => {
  a.pipe(b).pipe(a);
  const end = () => {
    a.destroy();
    b.destroy();
  };
  for (const socket of [a, b]) {
    socket.on("error", end);
    socket.on("close", end);
  }
};

/**
 * Makes the host's 127.0.0.1:`port`s reachable at 127.0.0.1:`port` inside `netns`, through unix
 * sockets in `dir`, for tgtd's rbd backing store inside the lab namespace to reach the lab's Ceph
 * on the host's loopback. Nothing is routed: no address or route leaves the namespace.
 */
export async function bridgeLoopbackPorts(
  netns: string,
  dir: string,
  ports: readonly number[],
): Promise<LoopbackBridge> {
  const servers: Server[] = [];
  for (const port of ports) {
    const path = join(dir, `lo-${port}.sock`);
    await rm(path, { force: true });
    const server = createServer((inside) => pipeBoth(inside, createConnection({ host: "127.0.0.1", port })));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(path, () => resolve());
    });
    server.unref();
    servers.push(server);
  }
  const [command, args] = inNetns(netns, process.execPath, ["-e", INSIDE, dir, ...ports.map(String)]);
  const child = spawn(command, args, { stdio: ["ignore", "pipe", "inherit"] });
  child.on("error", () => {});
  let out = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    out += chunk.toString();
  });
  const closeAll = async () => {
    await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  };
  const pid = child.pid;
  try {
    if (pid === undefined) throw new Error("cannot start the loopback bridge inside the lab namespace");
    await waitFor(
      "the loopback bridge inside the lab namespace",
      () => ports.every((port) => out.includes(`listening ${port}\n`)),
      { timeoutMs: 15_000 },
    );
  } catch (error) {
    if (pid !== undefined) await stopPid(pid, { signal: "SIGKILL" });
    await closeAll();
    throw error;
  }
  child.stdout?.destroy();
  child.unref();
  return {
    pid,
    async stop() {
      await stopPid(pid, { signal: "SIGTERM", graceMs: 2_000 });
      await closeAll();
    },
  };
}

/** The TCP ports a Ceph client talks to: every monitor's and every OSD's (v1 and v2), from the cluster. */
export async function cephClientPorts(ceph: CephLabInfo): Promise<number[]> {
  const admin = [...cephAdminArgs(ceph), "--connect-timeout", "10"];
  const dump = async (what: string) =>
    JSON.stringify(
      JSON.parse(
        (await execa("ceph", [...admin, what, "dump", "--format", "json"], { timeout: 30_000 })).stdout,
      ),
    );
  const text = (await dump("mon")) + (await dump("osd"));
  const ports = [...text.matchAll(/127\.0\.0\.1:(\d+)/g)].map((m) => Number(m[1]));
  return [...new Set(ports)].sort((a, b) => a - b);
}
