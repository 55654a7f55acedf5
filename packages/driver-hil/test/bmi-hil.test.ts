import { BmiError, createBmi, defaultSettings, openSqliteStore } from "@bmi/core";
import { createMemoryBoot, createMemoryExport, createMemoryStorage } from "@bmi/core/testing";
import { afterEach, describe, expect, it } from "vitest";
import { createHilIsolation } from "../src/index.js";
import { type HilServer, startHilServer } from "../src/testing/index.js";
import { ALICE, hilFixture } from "./fixture.js";

// Issue 19 points 2 and 3 end to end: BMI's operations over the real HTTP HIL-compatible server
// with its networking daemon stopped (a slow switch, a crashed daemon), storage/export/boot in
// memory.

const MIB = 1024 * 1024;
const servers: HilServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function setup(options: { actionTimeoutMs?: number } = {}) {
  const fixture = {
    ...hilFixture,
    nodes: [
      ...(hilFixture.nodes ?? []),
      { name: "node4", project: "proj1", nics: [{ label: "eth0", macaddr: "not-a-mac" }] },
    ],
  };
  const server = await startHilServer({ fixture, auth: "basic", actionDelayMs: 5 });
  servers.push(server);
  const isolation = createHilIsolation({
    url: server.url,
    ...ALICE,
    retries: 2,
    retryBaseMs: 1,
    retryMaxMs: 5,
    pollMs: 2,
    actionTimeoutMs: options.actionTimeoutMs ?? 150,
  });
  const storage = createMemoryStorage();
  const settings = defaultSettings({ provisioningNetwork: "prov" });
  const store = openSqliteStore({ path: ":memory:", uid: settings.uid, snapshotName: settings.snapshotName });
  const bmi = createBmi({
    storage,
    export: createMemoryExport(),
    boot: createMemoryBoot(),
    isolation,
    store,
    settings,
  });
  for (const name of ["proj1", "bmi_infra"]) await bmi.createProject({ name });
  await storage.create("centos7", 4 * MIB);
  await bmi.importImage({ project: "proj1", source: "centos7", name: "golden" });
  const nic = () => server.state.nodes.get("node1")?.nics.get("eth0");
  return { server, isolation, bmi, store, nic };
}

const provision = { project: "proj1", node: "node1", disk: "d1", image: "golden" };

async function failure(promise: Promise<unknown>): Promise<BmiError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(BmiError);
  return error as BmiError;
}

describe("a provision whose attach is still queued in HIL (issue 19 point 2)", () => {
  it("the undo waits for the queued attach by its status id, then detaches: nothing left", async () => {
    const { server, bmi, store, nic } = await setup({ actionTimeoutMs: 400 });
    server.pauseDaemon();
    // The daemon comes back while the undo waits for the queued attach (after the attach's own wait).
    const provisioning = bmi.provision(provision);
    while (
      !(await store.journal.list()).some(
        (j) => j.step === "attach provisioning network" && j.status === "failed",
      )
    )
      await new Promise((r) => setTimeout(r, 5));
    server.resumeDaemon();
    expect((await failure(provisioning)).code).toBe("timeout");
    expect(nic()?.networks.size).toBe(0);
    expect(server.faults.requests.get("POST /v0/node/node1/nic/eth0/detach_network")).toBe(1);
    const attachUndo = (await store.journal.list())
      .filter((j) => j.step === "attach provisioning network")
      .map((j) => j.status);
    expect(attachUndo).toEqual(["started", "failed", "undone"]);
    expect((await bmi.reconcile()).drift).toEqual([]);
  });

  it("an undo that cannot complete is journalled as such; reconcile finds the node HIL attached later and detaches it", async () => {
    const { server, bmi, store, isolation, nic } = await setup({ actionTimeoutMs: 100 });
    server.pauseDaemon();
    expect((await failure(bmi.provision(provision))).code).toBe("timeout");
    const attachUndo = (await store.journal.list())
      .filter((j) => j.step === "attach provisioning network")
      .map((j) => j.status);
    // Not "compensation_skipped" ("did nothing"): the attach is still queued.
    expect(attachUndo).toEqual(["started", "failed", "undo_failed"]);
    // HIL applies the attach later: the node is on the provisioning network with no record.
    server.resumeDaemon();
    expect(nic()?.networks.get("vlan/native")).toBe("prov");
    expect(await bmi.listProvisionings()).toEqual([]);

    const report = await bmi.reconcile();
    expect(report.drift.map((d) => [d.kind, d.subject]).sort()).toEqual([
      ["incomplete_undo", expect.any(String)],
      ["orphan_attachment", "node1"],
    ]);
    const repaired = await bmi.reconcile({ repair: true });
    expect(repaired.failed).toEqual([]);
    expect(nic()?.networks.size).toBe(0);
    expect((await bmi.reconcile()).drift).toEqual([]);
    // And the tenant can give the node back in HIL.
    await isolation.client.projectDetachNode("proj1", "node1");
    expect(server.state.nodes.get("node1")?.project).toBeNull();
  });
});

describe("reconcile reads the provisioning network's attachments in HIL (issue 19 point 3)", () => {
  it("as a project member, per project: a node put on the network outside BMI is unknown until named", async () => {
    const { bmi, isolation, nic } = await setup();
    await isolation.client.connectNetwork("node1", "eth0", "prov");
    while (nic()?.networks.size !== 1) await new Promise((r) => setTimeout(r, 5));
    const report = await bmi.reconcile();
    expect(report.drift.map((d) => [d.kind, d.subject])).toEqual([["unknown", "node1"]]);
    await bmi.reconcile({ repair: true });
    expect(nic()?.networks.size).toBe(1);
    await bmi.reconcile({ repair: true, remove: ["node1"] });
    expect(nic()?.networks.size).toBe(0);
  });
});

describe("messages (issue 22 point 11)", () => {
  it("a NIC whose MAC in HIL is not a MAC is named as such, not 'NIC not found'", async () => {
    const { bmi } = await setup();
    const error = await failure(bmi.provision({ ...provision, node: "node4", nic: "eth0" }));
    expect(error.code).toBe("conflict");
    expect(error.message).toMatch(/NIC eth0 of node node4 has a MAC address in HIL that is not a valid MAC/);
    expect(error.message).not.toMatch(/not found/);
  });
});
