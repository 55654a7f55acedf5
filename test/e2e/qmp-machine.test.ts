import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createHilPower } from "@bmi/driver-hil";
import { startHilServer } from "@bmi/driver-hil/testing";
import { createQmpMachine, qmp, stopPid } from "@bmi/lab";
import { afterEach, expect, it } from "vitest";

// Issue 16 point 2: a node's power through HIL -> the obmd-compatible endpoint -> QMP -> a real
// (tiny, diskless, NIC-less) qemu VM. qemu must be installed: a missing binary fails the test.

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

it("powers a qemu VM on, resets it and powers it off through HIL and obmd", async () => {
  const dir = await mkdtemp(join(tmpdir(), "bmi-qmp-"));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const pids: number[] = [];
  cleanups.push(async () => {
    for (const pid of pids) await stopPid(pid, { graceMs: 2_000 });
  });
  const bootDevices: (string | null)[] = [];
  const machine = createQmpMachine({
    async start(bootDevice) {
      bootDevices.push(bootDevice);
      const qmpSocket = join(dir, `qmp-${pids.length}.sock`);
      const vm = spawn(
        "qemu-system-x86_64",
        ["-nodefaults", "-display", "none", "-m", "32", "-nic", "none", "-accel", "tcg"].concat([
          "-qmp",
          `unix:${qmpSocket},server=on,wait=off`,
        ]),
        { stdio: "ignore" },
      );
      const exited = new Promise((resolve) => vm.once("exit", resolve));
      await new Promise<void>((resolve, reject) => {
        vm.once("spawn", resolve);
        vm.once("error", reject);
      });
      if (vm.pid) pids.push(vm.pid);
      return { qmpSocket, exited };
    },
  });
  const hil = await startHilServer({
    fixture: { projects: ["p"], nodes: [{ name: "vm1", project: "p" }] },
    auth: "none",
    machine: () => machine,
  });
  cleanups.push(() => hil.close());
  const power = createHilPower({ url: hil.url, timeoutMs: 20_000 });
  await power.client.setObm("vm1", true);

  expect(await power.powerState("vm1")).toBe("off");
  await power.setBootDevice("vm1", "pxe");
  await power.powerOn("vm1");
  expect(await power.powerState("vm1")).toBe("on");
  expect(bootDevices).toEqual(["pxe"]);
  const socket = join(dir, "qmp-0.sock");
  expect((await qmp(socket, "query-status")).return).toMatchObject({ status: "running" });

  await power.powerCycle("vm1", { force: true }); // system_reset: the same VM keeps running
  expect(await power.powerState("vm1")).toBe("on");
  expect(pids).toHaveLength(1);

  await power.powerOff("vm1"); // quit: the process ends
  expect(await power.powerState("vm1")).toBe("off");
  await expect(qmp(socket, "query-status", 1_000)).rejects.toThrow();

  await power.powerCycle("vm1", { force: false }); // off: a cycle powers it on (a new VM)
  expect(await power.powerState("vm1")).toBe("on");
  expect(pids).toHaveLength(2);
  await power.powerOff("vm1");
});
