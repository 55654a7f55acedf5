/**
 * End to end, issue 16: BMI powers the lab's nodes through HIL's OBM (HIL answers 307 to the
 * node's obmd-compatible endpoint, which drives the node's qemu over QMP) and knows when they have
 * booted from what tgt shows of the node's iSCSI sessions, with no agent on the node.
 *
 * Real: the run's shared Ceph, tgtd, the HIL-compatible server with its obmd endpoint, qemu (TCG).
 * The golden image is the lab's boot sector (fast): iPXE logs in and boots it, it prints its
 * marker; it has no OS that logs in again, so the waits here end at `firmware_login`
 * (debian-os.test.ts waits for the OS's own login).
 */
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { type BmiLab, startBmiLab } from "@bmi/lab";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { tearDownLab } from "./lab-teardown.js";
import { formatTimings, STAGE_LINES, watchStages } from "./stage-timings.js";

const ceph = inject("ceph");
const MARKER = "BMI-BOOT-OK";
/** TCG on a shared 2-core host: iPXE reaches the SAN step in ~10 s when idle. */
const BOOT_BOUND_MS = 240_000;

let lab: BmiLab;
const report: string[] = [];

beforeAll(async () => {
  lab = await startBmiLab({ ceph, nodes: 2, project: "power" });
  await lab.createGoldenImage("golden", { marker: MARKER });
  await lab.bmi.createProject({ name: "other" });
}, 180_000);

afterAll(async () => {
  try {
    await tearDownLab(lab, ["golden"]);
  } finally {
    if (report.length > 0) process.stderr.write(`e2e power and boot:\n${report.join("\n")}\n`);
  }
}, 180_000);

/** Calls that reached the obmd endpoint so far (HIL itself only redirects). */
const obmdCalls = () => [...lab.hil.obmd.faults.requests.values()].reduce((sum, n) => sum + n, 0);

describe("power and boot through HIL -> obmd -> QMP -> qemu", () => {
  it("power as a project that does not own the node is forbidden, and no call reaches obmd", async () => {
    const node = lab.nodes[1]?.name ?? "";
    const before = obmdCalls();
    for (const action of ["on", "off", "cycle"] as const) {
      await expect(
        lab.bmi.power({ project: "other", node, action, bootDevice: "pxe" }),
      ).rejects.toMatchObject({ code: "forbidden", message: expect.stringContaining(node) });
    }
    await expect(lab.bmi.powerStatus({ project: "other", node })).rejects.toMatchObject({
      code: "forbidden",
    });
    expect(obmdCalls()).toBe(before);
    expect(lab.powerHistory(node)).toEqual([]);
    // The owner's call does reach it (so the count above could have moved).
    expect(await lab.bmi.powerStatus({ project: lab.project, node })).toBe("off");
    expect(obmdCalls()).toBeGreaterThan(before);
  });

  it("provision with power cycle and wait: SUCCESS with the stages in order, then the boot sector's line", async () => {
    const node = lab.nodes[0]?.name ?? "";
    const watch = await watchStages(lab, node, {
      firmware_login: STAGE_LINES.firmware_login,
      ready_line: new RegExp(`${MARKER}\\r?\\n`),
    });
    const from = await lab.console(node).mark();
    const started = Date.now();
    const provisioned = await lab.bmi.provision({
      project: lab.project,
      node,
      disk: `${node}-disk`,
      image: "golden",
      power: "cycle",
      wait: true,
      until: "firmware_login",
      timeoutMs: BOOT_BOUND_MS,
    });
    const provisionMs = Date.now() - started;
    expect(provisioned.boot?.state).toBe("SUCCESS");
    expect(provisioned.boot?.stages.map((s) => s.stage)).toEqual(["powered_on", "firmware_login"]);
    const ready = await lab.console(node).waitFor(new RegExp(`${MARKER}\\r?\\n`), {
      from,
      timeoutMs: BOOT_BOUND_MS,
    });
    // The VM booted from SAN: iPXE attached the target BMI exported, then ran its boot sector.
    expect(ready.text.indexOf("Registered SAN device 0x80")).toBeLessThan(ready.text.indexOf(MARKER));
    expect(await lab.bmi.powerStatus({ project: lab.project, node })).toBe("on");
    const timings = await watch.report();
    expect(timings.map((t) => t.stage)).toEqual(["powered_on", "firmware_login", "ready_line"]);
    // The waiter cannot report a login before the node made it (the console is polled, 100 ms).
    const login = timings.find((t) => t.stage === "firmware_login");
    expect(login?.noticeMs).toBeGreaterThan(-200);
    report.push(
      formatTimings(`${node}, boot sector, provision(power cycle, wait) ${provisionMs} ms`, timings),
    );
  }, 400_000);

  it("a running node's disk is not snapshotted; once powered off through HIL it is", async () => {
    const node = lab.nodes[0]?.name ?? "";
    const disk = `${node}-disk`;
    expect(await lab.bmi.powerStatus({ project: lab.project, node })).toBe("on");
    await expect(
      lab.bmi.snapshotDisk({ project: lab.project, disk, snapshot: "while-running" }),
    ).rejects.toMatchObject({
      code: "busy",
      message: expect.stringMatching(/boots node node-01 and it is powered on: power the node off first/),
    });
    expect(await lab.bmi.listSnapshots({ project: lab.project })).toEqual([]);

    expect(await lab.bmi.power({ project: lab.project, node, action: "off" })).toBe("off");
    expect(lab.powerHistory(node).at(-1)?.event).toBe("stop");
    const snapshot = await lab.bmi.snapshotDisk({ project: lab.project, disk, snapshot: "powered-off" });
    expect(snapshot.name).toBe("powered-off");
    await lab.bmi.removeImage({ project: lab.project, image: "powered-off" });
    await lab.bmi.deprovision({ project: lab.project, node, deleteDisk: true });
  }, 120_000);

  it("a node whose boot files are gone never logs in: TIMEOUT naming the last stage and the time in it", async () => {
    const node = lab.nodes[1]?.name ?? "";
    await lab.bmi.provision({ project: lab.project, node, disk: `${node}-disk`, image: "golden" });
    const entry = await lab.drivers.boot.read(node);
    expect(entry?.files.length).toBeGreaterThan(0);
    for (const file of entry?.files ?? []) await rm(join(lab.tftpRoot, file), { force: true });
    const from = await lab.console(node).mark();

    const waiting = lab.bmi.waitForBoot(
      { project: lab.project, node, until: "firmware_login" },
      { timeoutMs: 40_000 },
    );
    await lab.bmi.power({ project: lab.project, node, action: "cycle", force: true, bootDevice: "pxe" });
    const result = await waiting;
    expect(result.state).toBe("TIMEOUT");
    expect(result.stages.map((s) => s.stage)).toEqual(["powered_on"]);
    expect(result.reason).toMatch(
      new RegExp(
        `^node ${node} did not reach firmware_login: stopped after powered_on \\((\\d+) ms there\\)$`,
      ),
    );
    const there = Number(/\((\d+) ms there\)/.exec(result.reason ?? "")?.[1]);
    expect(there).toBeGreaterThan(20_000);
    // The node itself shows why: iPXE found no script for its MAC.
    const text = await lab.console(node).read(from);
    expect(text).not.toContain("Registered SAN device");
    report.push(
      `${node}, boot files removed: ${result.state} after ${result.durationMs} ms: ${result.reason}`,
    );
    await lab.bmi.deprovision({ project: lab.project, node, deleteDisk: true, powerOff: true });
    expect(await lab.bmi.powerStatus({ project: lab.project, node })).toBe("off");
  }, 180_000);
});
