import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import type { BmiEvent } from "../src/index.js";
import { setup, thrown } from "./ops-helpers.js";

const FAST = { minDelayMs: 5, maxDelayMs: 20 };

async function provisioned() {
  const env = await setup();
  const record = await env.bmi.provision({ project: "p1", node: "n1", disk: "d1", image: "golden" });
  return { ...env, target: record.target.name };
}

describe("waitForBoot (issue 16.3)", () => {
  it("reports powered on, firmware login and OS login in order, as events too", async () => {
    const env = await provisioned();
    const events: BmiEvent[] = [];
    env.bmi.on((e) => events.push(e));
    const waiting = env.bmi.waitForBoot({ project: "p1", node: "n1" }, { ...FAST, timeoutMs: 30_000 });
    await env.bmi.power({ project: "p1", node: "n1", action: "cycle", bootDevice: "pxe" });
    await sleep(30);
    const ipxe = env.exporter.login(env.target, "iqn.2010-04.org.ipxe:n1", "10.0.2.15");
    await sleep(30);
    env.exporter.logout(env.target, ipxe); // sanboot hands over to the OS...
    env.exporter.login(env.target, "iqn.2010-04.org.ipxe:n1", "10.0.2.15"); // ...which logs in again
    const result = await waiting;
    expect(result.state).toBe("SUCCESS");
    expect(result.stages.map((s) => s.stage)).toEqual(["powered_on", "firmware_login", "os_login"]);
    const times = result.stages.map((s) => s.atMs);
    expect(times).toEqual([...times].sort((a, b) => a - b));
    expect(
      events.filter((e) => e.type === "boot:stage").map((e) => e.type === "boot:stage" && e.stage),
    ).toEqual(["powered_on", "firmware_login", "os_login"]);
  });

  it("ignores sessions of an earlier boot and times out naming the stage it stopped at", async () => {
    const env = await provisioned();
    env.exporter.login(env.target, "iqn.2010-04.org.ipxe:n1"); // from before the wait
    await env.bmi.power({ project: "p1", node: "n1", action: "on" });
    const result = await env.bmi.waitForBoot({ project: "p1", node: "n1" }, { ...FAST, timeoutMs: 200 });
    expect(result.state).toBe("TIMEOUT");
    expect(result.stages.map((s) => s.stage)).toEqual(["powered_on"]);
    expect(result.reason).toMatch(
      /^node n1 did not reach firmware_login: stopped after powered_on \(\d+ ms there\)$/,
    );
  });

  it("fails when the node powers off while booting, and ends ABORTED when the caller aborts", async () => {
    const env = await provisioned();
    await env.bmi.power({ project: "p1", node: "n1", action: "on" });
    const failing = env.bmi.waitForBoot({ project: "p1", node: "n1" }, FAST);
    await sleep(30);
    env.power.setPower("n1", "off");
    expect(await failing).toMatchObject({ state: "FAILURE", reason: "node n1 powered off while booting" });

    const controller = new AbortController();
    const aborted = env.bmi.waitForBoot(
      { project: "p1", node: "n1" },
      { ...FAST, signal: controller.signal },
    );
    await sleep(30);
    controller.abort();
    expect(await aborted).toMatchObject({ state: "ABORTED", reason: "cancelled by the caller" });
  });

  it("refuses a node that is not provisioned, or not by this project, and bad options", async () => {
    const env = await provisioned();
    expect((await thrown(() => env.bmi.waitForBoot({ project: "p1", node: "n2" }))).code).toBe("not_found");
    expect((await thrown(() => env.bmi.waitForBoot({ project: "p2", node: "n1" }))).code).toBe("forbidden");
    const bad = await thrown(() => env.bmi.waitForBoot({ project: "p1", node: "n1" }, { timeoutMs: -1 }));
    expect(bad.code).toBe("invalid_input");
    expect(bad.message).toMatch(/timeoutMs/);
  });
});

describe("provision with power and wait (issue 16.4)", () => {
  /** Plays the node's part: once BMI powers it, iPXE logs in, then the OS. */
  function bootsWhenPowered(env: Awaited<ReturnType<typeof setup>>) {
    env.bmi.on(async (event) => {
      if (event.type !== "operation:finished" || event.operation !== "power") return;
      const provisioned = await env.bmi.listProvisionings();
      const target = (node: string) => provisioned.find((p) => p.node === node)?.target.name ?? "";
      for (const { node } of provisioned) {
        if (env.power.boots(node) === 0) continue;
        setTimeout(() => env.exporter.login(target(node), `iqn.2010-04.org.ipxe:${node}`), 20);
        setTimeout(() => env.exporter.login(target(node), `iqn.2010-04.org.ipxe:${node}`), 40);
      }
    });
  }

  it("sets PXE, power cycles and resolves once the OS has logged in", async () => {
    const env = await setup();
    bootsWhenPowered(env);
    const record = await env.bmi.provision({
      project: "p1",
      node: "n1",
      disk: "d1",
      image: "golden",
      power: "cycle",
      wait: true,
      timeoutMs: 30_000,
    });
    expect(record.boot?.state).toBe("SUCCESS");
    expect(record.boot?.stages.map((s) => s.stage)).toEqual(["powered_on", "firmware_login", "os_login"]);
    expect(env.power.bootDevice("n1")).toBe("pxe");
    expect(env.power.boots("n1")).toBe(1);
  });

  it("with until firmware_login, an image that never logs in again (a boot sector) succeeds at iPXE's login", async () => {
    const env = await setup();
    env.bmi.on(async (event) => {
      if (event.type !== "operation:finished" || event.operation !== "power") return;
      const target = (await env.bmi.listProvisionings()).find((p) => p.node === "n1")?.target.name ?? "";
      setTimeout(() => env.exporter.login(target, "iqn.2010-04.org.ipxe:n1"), 20); // iPXE only
    });
    const record = await env.bmi.provision({
      project: "p1",
      node: "n1",
      disk: "d1",
      image: "golden",
      power: "cycle",
      wait: true,
      until: "firmware_login",
      timeoutMs: 30_000,
    });
    expect(record.boot?.stages.map((s) => s.stage)).toEqual(["powered_on", "firmware_login"]);
    const error = await thrown(() =>
      env.bmi.provision({ project: "p1", node: "n2", disk: "d2", image: "golden", until: "kernel" } as never),
    );
    expect(error.code).toBe("invalid_input");
    expect(error.message).toMatch(/until/);
  });

  it("provisions many nodes, each powered and waited for", async () => {
    const env = await setup();
    bootsWhenPowered(env);
    const results = await env.bmi.provisionMany(
      ["n1", "n2"].map((node) => ({
        project: "p1",
        node,
        disk: `${node}-disk`,
        image: "golden",
        power: "cycle" as const,
        wait: true,
      })),
      { concurrency: 2 },
    );
    expect(results.map((r) => r.ok && r.value.boot?.state)).toEqual(["SUCCESS", "SUCCESS"]);
  });

  it("a boot that does not happen rejects with timeout and its stages, and keeps the provisioning", async () => {
    const env = await setup();
    const error = await thrown(() =>
      env.bmi.provision({
        project: "p1",
        node: "n1",
        disk: "d1",
        image: "golden",
        power: "on",
        wait: true,
        timeoutMs: 150,
      }),
    );
    expect(error.code).toBe("timeout");
    expect(error.message).toMatch(
      /^node n1 is provisioned, but node n1 did not reach firmware_login: stopped after powered_on/,
    );
    expect(error.details.boot).toMatchObject({ state: "TIMEOUT", stages: [{ stage: "powered_on" }] });
    expect((await env.bmi.listProvisionings()).map((p) => p.node)).toEqual(["n1"]);
  });

  it("rejects wait without power before anything runs", async () => {
    const env = await setup();
    const before = await env.state();
    const error = await thrown(() =>
      env.bmi.provision({ project: "p1", node: "n1", disk: "d1", image: "golden", wait: true }),
    );
    expect(error.code).toBe("invalid_input");
    expect(error.message).toMatch(/input\.wait needs input\.power/);
    expect(await env.state()).toEqual(before);
  });

  it("deprovision can power the node off first", async () => {
    const env = await setup();
    await env.bmi.provision({ project: "p1", node: "n1", disk: "d1", image: "golden", power: "on" });
    expect(await env.bmi.powerStatus({ project: "p1", node: "n1" })).toBe("on");
    await env.bmi.deprovision({ project: "p1", node: "n1", powerOff: true });
    expect(await env.bmi.powerStatus({ project: "p1", node: "n1" })).toBe("off");
    expect(await env.bmi.listProvisionings()).toEqual([]);
  });
});
