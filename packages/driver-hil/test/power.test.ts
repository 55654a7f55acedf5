import { BmiError, createBmi, defaultSettings, openSqliteStore } from "@bmi/core";
import { createMemoryBoot, createMemoryExport, createMemoryStorage } from "@bmi/core/testing";
import { testPowerDriver } from "@bmi/core/testing/contracts";
import { afterEach, describe, expect, it } from "vitest";
import { createHilIsolation, createHilPower, type FetchLike, powerStateOf } from "../src/index.js";
import {
  createMemoryMachine,
  type HilServer,
  type MemoryMachine,
  type ObmdServer,
  startHilServer,
  startObmdServer,
} from "../src/testing/index.js";
import { ADMIN, ALICE, hilFixture } from "./fixture.js";
import { raw } from "./http.js";

// Issue 16: the PowerDriver over HIL's OBM API, against the HIL-compatible server and an
// obmd-compatible endpoint on its own port (real HTTP both ways).

interface Lab {
  hil: HilServer;
  obmd: ObmdServer;
  machine: MemoryMachine;
  /** Every request the power driver sent: URL and whether it carried an Authorization header. */
  sent: { url: string; authorized: boolean }[];
}

const labs: Lab[] = [];
afterEach(async () => {
  await Promise.all(labs.splice(0).map((l) => Promise.all([l.hil.close(), l.obmd.close()])));
});

async function startLab(): Promise<Lab> {
  const machine = createMemoryMachine();
  const obmd = await startObmdServer({ nodes: { node1: machine } });
  const nodes = (hilFixture.nodes ?? []).map((n) =>
    n.name === "node1" ? { ...n, obmd: { uri: obmd.uriOf("node1"), adminToken: obmd.adminToken } } : n,
  );
  const hil = await startHilServer({ fixture: { ...hilFixture, nodes }, auth: "basic", actionDelayMs: 5 });
  const lab: Lab = { hil, obmd, machine, sent: [] };
  labs.push(lab);
  return lab;
}

function powerFor(lab: Lab, credentials = ALICE, extra: { timeoutMs?: number } = {}) {
  const recording: FetchLike = (input, init) => {
    const headers = (init.headers ?? {}) as Record<string, string>;
    lab.sent.push({ url: input, authorized: "Authorization" in headers });
    return fetch(input, init);
  };
  return createHilPower({
    url: lab.hil.url,
    ...credentials,
    retries: 2,
    retryBaseMs: 1,
    retryMaxMs: 5,
    fetch: recording,
    ...extra,
  });
}

async function enableObm(lab: Lab, node = "node1") {
  await powerFor(lab).client.setObm(node, true);
}

async function failure(promise: Promise<unknown>): Promise<BmiError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(BmiError);
  return error as BmiError;
}

testPowerDriver({
  name: "hil power over HIL's 307 to an obmd-compatible endpoint",
  create: async () => {
    const lab = await startLab();
    await enableObm(lab);
    return { driver: powerFor(lab), node: "node1" };
  },
});

testPowerDriver({
  name: "hil power through the HIL-compatible server's built-in obmd",
  create: async () => {
    const hil = await startHilServer({ fixture: hilFixture, auth: "basic" });
    const driver = createHilPower({ url: hil.url, ...ALICE });
    await driver.client.setObm("node1", true);
    return { driver, node: "node1", cleanup: () => hil.close() };
  },
});

describe("hil power: what reaches obmd, and how failures are named", () => {
  it("follows the redirect with the same body and without HIL's credentials", async () => {
    const lab = await startLab();
    await enableObm(lab);
    const power = powerFor(lab);
    await power.setBootDevice("node1", "pxe");
    await power.powerCycle("node1", { force: true });
    expect(lab.machine.bootDevice).toBe("pxe");
    expect(lab.machine.power).toBe("on");
    const toObmd = lab.sent.filter((s) => s.url.startsWith(lab.obmd.url));
    expect(toObmd.map((s) => new URL(s.url).pathname)).toEqual([
      "/node/node1/boot_device",
      "/node/node1/power_cycle",
    ]);
    expect(toObmd.every((s) => !s.authorized)).toBe(true);
    expect(lab.sent.filter((s) => s.url.startsWith(lab.hil.url)).every((s) => s.authorized)).toBe(true);
  });

  it("a project that does not own the node is forbidden before any call reaches HIL's OBM or obmd", async () => {
    const lab = await startLab();
    // As HIL's admin, so that only BMI's own ownership check can stop the call.
    const isolation = createHilIsolation({ url: lab.hil.url, ...ADMIN, retryBaseMs: 1 });
    const power = powerFor(lab, ADMIN);
    await power.client.setObm("node3", true);
    const settings = defaultSettings({ provisioningNetwork: "prov" });
    const store = openSqliteStore({
      path: ":memory:",
      uid: settings.uid,
      snapshotName: settings.snapshotName,
    });
    const bmi = createBmi({
      storage: createMemoryStorage(),
      export: createMemoryExport(),
      boot: createMemoryBoot(),
      isolation,
      power,
      store,
      settings,
    });
    await bmi.createProject({ name: "proj1" });
    const seen = lab.sent.length;
    const error = await failure(bmi.power({ project: "proj1", node: "node3", action: "cycle" }));
    expect(error.code).toBe("forbidden");
    expect(lab.sent.slice(seen)).toEqual([]);
    expect(lab.obmd.faults.requests.size).toBe(0);
    expect([...lab.hil.faults.requests.keys()].some((k) => /power|boot_device/.test(k))).toBe(false);
    await expect(bmi.powerStatus({ project: "proj1", node: "node3" })).rejects.toMatchObject({
      code: "forbidden",
    });
    store.close();
  });

  it("OBM disabled: a clear conflict, and nothing reaches obmd", async () => {
    const lab = await startLab();
    const error = await failure(powerFor(lab).powerOn("node1"));
    expect(error).toMatchObject({ code: "conflict", subsystem: "power", retryable: false });
    expect(error.message).toMatch(/OBM of node node1 is not enabled/);
    expect(lab.obmd.faults.requests.size).toBe(0);
  });

  it("obmd down: unavailable (retryable) naming the node; enabling the OBM then is HIL's HTML 500", async () => {
    const lab = await startLab();
    await enableObm(lab);
    await lab.obmd.stop();
    const error = await failure(powerFor(lab).powerOn("node1"));
    expect(error).toMatchObject({ code: "unavailable", subsystem: "power", retryable: true });
    expect(error.message).toMatch(/node node1/);
    expect(lab.machine.power).toBe("off");
    const enable = await raw(lab.hil.url, "PUT", "/v0/node/node1/obm", {
      body: { enabled: true },
      auth: ALICE,
    });
    expect(enable.status).toBe(500);
    expect(enable.text).toMatch(/Failed to get a token for node node1/);
    await lab.obmd.start();
    await powerFor(lab).powerOn("node1");
    expect(lab.machine.power).toBe("on");
  });

  it("obmd 500 on a power POST: unavailable (retryable by the caller) naming the node, sent once", async () => {
    const lab = await startLab();
    await enableObm(lab);
    lab.obmd.faults.status({ match: "POST /node/node1/power_on", status: 500 });
    const error = await failure(powerFor(lab).powerOn("node1"));
    expect(error).toMatchObject({ code: "unavailable", subsystem: "power", retryable: true });
    expect(error.details.outcome).toBeUndefined();
    expect(error.message).toMatch(/node node1/);
    expect(lab.obmd.faults.requests.get("POST /node/node1/power_on")).toBe(1);
  });

  it("a power POST that timed out at obmd is not repeated: its outcome is unknown", async () => {
    const lab = await startLab();
    await enableObm(lab);
    lab.obmd.faults.delay({ match: "POST /node/node1/power_cycle", ms: 400 });
    const power = powerFor(lab, ALICE, { timeoutMs: 100 });
    const error = await failure(power.powerCycle("node1", { force: true }));
    expect(error).toMatchObject({ code: "timeout", subsystem: "power", retryable: false });
    expect(error.details).toMatchObject({ node: "node1", outcome: "unknown" });
    expect(lab.obmd.faults.requests.get("POST /node/node1/power_cycle")).toBe(1);
    // The slow BMC still acts on the one request it got.
    for (let i = 0; i < 50 && lab.machine.power !== "on"; i++) await new Promise((r) => setTimeout(r, 20));
    expect(lab.machine.boots).toBe(1);
  });

  it("a boot device obmd rejects, a node obmd does not know, a stale token", async () => {
    const lab = await startLab();
    await enableObm(lab);
    const power = powerFor(lab);
    lab.obmd.nodes.delete("node1");
    expect(await failure(power.powerState("node1"))).toMatchObject({ code: "not_found", subsystem: "power" });
    lab.obmd.nodes.set("node1", lab.machine);
    lab.obmd.issueToken("node1"); // obmd's token changed behind HIL's back: fetched again, still stale
    const stale = await failure(power.powerOn("node1"));
    expect(stale).toMatchObject({ code: "conflict", subsystem: "power" });
    expect(lab.obmd.faults.requests.get("POST /node/node1/power_on")).toBe(2);
    expect(lab.machine.power).toBe("off");
  });
});

describe("powerStateOf", () => {
  it("reads ipmitool's and obmd's texts, and nothing else", () => {
    expect(powerStateOf("Chassis Power is on\n")).toBe("on");
    expect(powerStateOf("Chassis Power is off")).toBe("off");
    expect(powerStateOf("on")).toBe("on");
    expect(powerStateOf("off")).toBe("off");
    expect(powerStateOf("Mock Status")).toBe("unknown");
    expect(powerStateOf("Chassis Power Control: Up/On")).toBe("unknown");
  });
});
