import { createConnection } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import type { ObmdMachine } from "@bmi/driver-hil/testing";

/** A VM the lab started for a node: how to reach its QMP socket, and when it is gone. */
export interface QmpVm {
  /** The `-qmp unix:<path>,server=on,wait=off` socket. */
  qmpSocket: string;
  /** Settles when the qemu process has ended (after `quit`, a crash, or a kill). */
  exited: Promise<unknown>;
}

export interface QmpMachineOptions {
  /**
   * Starts the node's VM (qemu with the node's MACs, booting `bootDevice`) and resolves once it
   * is spawned. The lab owns the process: it names it, logs it and stops it by PID on teardown.
   */
  start(bootDevice: string | null): Promise<QmpVm>;
  /** How long to wait for the QMP socket to accept a connection after a start; default 10 s. */
  connectTimeoutMs?: number;
}

interface QmpReply {
  return?: unknown;
  error?: { class: string; desc: string };
}

/** One QMP command on a fresh connection: greeting, `qmp_capabilities`, the command, its reply. */
export function qmp(socket: string, command: string, timeoutMs = 10_000): Promise<QmpReply> {
  return new Promise((resolve, reject) => {
    const connection = createConnection(socket);
    const timer = setTimeout(
      () => finish(new Error(`QMP ${command}: no answer within ${timeoutMs} ms`)),
      timeoutMs,
    );
    let buffer = "";
    let stage: "greeting" | "capabilities" | "command" = "greeting";
    const finish = (error: Error | null, reply?: QmpReply) => {
      clearTimeout(timer);
      connection.destroy();
      if (error) reject(error);
      else resolve(reply ?? {});
    };
    const send = (execute: string) => connection.write(`${JSON.stringify({ execute })}\n`);
    connection.on("error", (error) => finish(error));
    // `quit` may close the socket before its reply arrives: the VM is going away either way.
    connection.on("close", () =>
      finish(stage === "command" && command === "quit" ? null : new Error(`QMP ${command}: socket closed`)),
    );
    connection.on("data", (chunk: Buffer) => {
      buffer += chunk.toString("utf8");
      for (let end = buffer.indexOf("\n"); end >= 0; end = buffer.indexOf("\n")) {
        const line = buffer.slice(0, end).trim();
        buffer = buffer.slice(end + 1);
        if (!line) continue;
        const message = JSON.parse(line) as QmpReply & { QMP?: unknown; event?: unknown };
        if (message.event !== undefined) continue;
        if (stage === "greeting" && message.QMP !== undefined) {
          stage = "capabilities";
          send("qmp_capabilities");
        } else if (stage === "capabilities") {
          stage = "command";
          send(command);
        } else if (stage === "command") finish(null, message);
      }
    });
  });
}

/**
 * A node's BMC over qemu's QMP, for the obmd-compatible endpoint: power on starts the VM (through
 * `start`), off quits it, a cycle is `system_reset`, the state is `query-status` ("running" is on;
 * a VM started with `-S`, paused or gone is off). The boot device is kept for the next start.
 */
export function createQmpMachine(options: QmpMachineOptions): ObmdMachine {
  let vm: (QmpVm & { alive: boolean }) | undefined;
  let bootDevice: string | null = null;
  const connectTimeoutMs = options.connectTimeoutMs ?? 10_000;

  const running = () => (vm?.alive ? vm : undefined);
  async function command(name: string): Promise<QmpReply> {
    const current = running();
    if (!current) throw new Error(`QMP ${name}: the VM is not running`);
    const reply = await qmp(current.qmpSocket, name);
    if (reply.error) throw new Error(`QMP ${name}: ${reply.error.class}: ${reply.error.desc}`);
    return reply;
  }
  async function waitForQmp(started: QmpVm): Promise<void> {
    const deadline = Date.now() + connectTimeoutMs;
    for (;;) {
      try {
        await qmp(started.qmpSocket, "query-status", 2_000);
        return;
      } catch (error) {
        if (Date.now() > deadline || !vm?.alive) throw error;
        await sleep(50);
      }
    }
  }

  return {
    async powerOn() {
      if (running()) {
        // A VM started with -S (or paused) is "off" until it runs.
        const status = (await command("query-status")).return as { status?: string } | undefined;
        if (status?.status !== "running") await command("cont");
        return;
      }
      const started = await options.start(bootDevice);
      const current = { ...started, alive: true };
      vm = current;
      void started.exited.finally(() => {
        current.alive = false;
      });
      await waitForQmp(started);
    },
    async powerOff() {
      const current = running();
      if (!current) return;
      await command("quit");
      await current.exited.catch(() => undefined);
    },
    async reset() {
      await command("system_reset");
    },
    async state() {
      if (!running()) return "off";
      const reply = await command("query-status").catch(() => undefined);
      return (reply?.return as { status?: string } | undefined)?.status === "running" ? "on" : "off";
    },
    async setBootDevice(device) {
      bootDevice = device;
    },
  };
}
