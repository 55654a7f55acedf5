// Issue 17.5: per-node iSCSI access set by provision, on the in-memory drivers.
import { describe, expect, it } from "vitest";
import { defaultSettings } from "../src/index.js";
import { setup, thrown } from "./ops-helpers.js";

const RANGE = { first: "10.247.0.10", last: "10.247.0.12" };
const ADMIN = "iqn.2026-12.org.test:admin";

/** A BMI whose targets admit ADMIN by default and, per node, the node's fixed address. */
function perNode(extra: { nodeAddresses?: typeof RANGE | undefined } = { nodeAddresses: RANGE }) {
  const { iscsi } = defaultSettings();
  return setup({
    settings: { iscsi: { ...iscsi, access: { initiators: { names: [ADMIN] } }, perNode: "address" } },
    ...extra,
  });
}

const provision = (env: Awaited<ReturnType<typeof setup>>, node: string) =>
  env.bmi.provision({ project: "p1", node, disk: `${node}-disk`, image: "golden" });

describe("per-node iSCSI access (issue 17.5)", () => {
  it("provision restricts the node's target to the node's fixed address; another node is refused", async () => {
    const env = await perNode();
    const one = await provision(env, "n1");
    const two = await provision(env, "n2");
    const [a, b] = [await env.boot.read("n1"), await env.boot.read("n2")];
    expect([a?.address, b?.address]).toEqual(["10.247.0.10", "10.247.0.11"]);
    const login = (target: string, address: string) => env.exporter.canLogin(target, { address });
    expect(login(one.target.name, "10.247.0.10")).toBe(true);
    expect(login(one.target.name, "10.247.0.11")).toBe(false);
    expect(login(two.target.name, "10.247.0.10")).toBe(false);
    // Not even under the admin name the configured access lets in: the node's address only.
    expect(env.exporter.canLogin(one.target.name, { name: ADMIN, address: "10.247.0.11" })).toBe(false);
    const record = await env.store.exports.get((await env.store.provisionings.get("n1"))?.diskId ?? -1);
    expect(record?.access.initiators).toEqual({ addresses: ["10.247.0.10"] });
    const listed = (await env.exporter.list()).find((t) => t.target === one.target.name);
    expect(listed?.initiators).toEqual({ addresses: ["10.247.0.10"] });
  });

  it("deprovision opens the target to the configured access again and frees the address for the next node", async () => {
    const env = await perNode();
    const one = await provision(env, "n1");
    await env.bmi.deprovision({ project: "p1", node: "n1" });
    expect(env.exporter.canLogin(one.target.name, { address: "10.247.0.10" })).toBe(false);
    expect(env.exporter.canLogin(one.target.name, { name: ADMIN })).toBe(true);
    const diskId = (await env.store.exports.list()).find((r) => r.target.name === one.target.name)?.imageId;
    expect((await env.store.exports.get(diskId ?? -1))?.access.initiators).toEqual({ names: [ADMIN] });
    const two = await provision(env, "n2");
    expect((await env.boot.read("n2"))?.address).toBe("10.247.0.10");
    expect(env.exporter.canLogin(two.target.name, { address: "10.247.0.10" })).toBe(true);
    // A disk provisioned again keeps to one node: n1 back on its old disk gets the next address.
    await env.bmi.provision({ project: "p1", node: "n1", disk: "n1-disk" });
    expect((await env.boot.read("n1"))?.address).toBe("10.247.0.11");
    expect(env.exporter.canLogin(one.target.name, { address: "10.247.0.11" })).toBe(true);
    expect(env.exporter.canLogin(one.target.name, { address: "10.247.0.10" })).toBe(false);
  });

  it("switchDisk moves the restriction: the new disk admits the node's address, the old one is reopened", async () => {
    const env = await perNode();
    const first = await provision(env, "n1");
    await env.bmi.createDisk({ project: "p1", image: "golden", disk: "n1-second" });
    const second = await env.bmi.provision({
      project: "p1",
      node: "n1",
      disk: "n1-second",
      switchDisk: true,
    });
    expect((await env.boot.read("n1"))?.address).toBe("10.247.0.10");
    expect(env.exporter.canLogin(second.target.name, { address: "10.247.0.10" })).toBe(true);
    expect(env.exporter.canLogin(second.target.name, { name: ADMIN })).toBe(false);
    expect(env.exporter.canLogin(first.target.name, { address: "10.247.0.10" })).toBe(false);
    expect(env.exporter.canLogin(first.target.name, { name: ADMIN })).toBe(true);
  });

  it("a provision failing after the restriction leaves the target, the record and the addresses as they were", async () => {
    const env = await perNode();
    await env.bmi.createDisk({ project: "p1", image: "golden", disk: "n1-disk" });
    const before = await env.state();
    env.setHook(({ step }) => {
      if (step === "attach provisioning network") throw new Error("injected after restrict");
    });
    await thrown(() => env.bmi.provision({ project: "p1", node: "n1", disk: "n1-disk" }));
    env.setHook(undefined);
    expect(await env.state()).toEqual(before);
    const target = (await env.exporter.list())[0];
    expect(target?.initiators).toEqual({ names: [ADMIN] });
    await provision(env, "n2");
    expect((await env.boot.read("n2"))?.address).toBe("10.247.0.10");
  });

  it("per-node access without node addresses is refused and leaves nothing behind", async () => {
    const env = await perNode({ nodeAddresses: undefined });
    const before = await env.state();
    const error = await thrown(() => provision(env, "n1"));
    expect(error.code).toBe("unsupported");
    expect(error.message).toMatch(/node_addresses/);
    expect(await env.state()).toEqual(before);
  });

  it("the range running out is an error, undone like any other", async () => {
    const env = await perNode({ nodeAddresses: { first: "10.247.0.10", last: "10.247.0.10" } });
    await provision(env, "n1");
    const before = await env.state();
    const error = await thrown(() => provision(env, "n2"));
    expect(error.message).toMatch(/no free node address/);
    expect(await env.state()).toEqual(before);
  });

  it("reconcile sees a target whose ACL no longer matches its node and repairs it", async () => {
    const env = await perNode();
    await env.bmi.createProject({ name: "bmi_infra" }); // repair refuses a database that looks new
    const one = await provision(env, "n1");
    await env.exporter.setInitiators?.(one.target.name, "ALL");
    const report = await env.bmi.reconcile();
    const drift = report.drift.filter((d) => d.kind === "access_mismatch");
    expect(drift.map((d) => d.subject)).toEqual([one.target.name]);
    expect(drift[0]?.detail).toMatch(/admits ALL.*node n1/);
    const repaired = await env.bmi.reconcile({ repair: true });
    expect(repaired.repaired.map((d) => d.kind)).toContain("access_mismatch");
    expect(env.exporter.canLogin(one.target.name, { address: "10.247.0.11" })).toBe(false);
    expect(env.exporter.canLogin(one.target.name, { address: "10.247.0.10" })).toBe(true);
    expect((await env.bmi.reconcile()).drift.filter((d) => d.kind === "access_mismatch")).toEqual([]);
  });
});

describe("per-node access and a node HIL gives to another project (issue 17.5)", () => {
  it("the ownership repair opens the target to the configured access before the node's address is freed", async () => {
    const env = await perNode();
    await env.bmi.createProject({ name: "bmi_infra" });
    const one = await provision(env, "n1");
    env.isolation.setOwner("n1", "p2");
    const report = await env.bmi.reconcile({ repair: true });
    expect(report.repaired.map((d) => d.kind)).toEqual(["ownership_changed"]);
    expect(env.exporter.canLogin(one.target.name, { address: "10.247.0.10" })).toBe(false);
    expect(env.exporter.canLogin(one.target.name, { name: ADMIN })).toBe(true);
    expect((await env.bmi.reconcile()).drift).toEqual([]);
  });
});
