// Example: how a user unit-tests their own integration with BMI, without any daemon.
// `batchProvision` (src/batch-provision.ts) stands for "your code"; @bmi/core/testing gives a whole
// BMI on in-memory drivers, and @bmi/driver-hil/testing a real HTTP server speaking HIL's API.
import { BmiError, createBmi, defaultSettings, openSqliteStore } from "@bmi/core";
import {
  createMemoryBmi,
  createMemoryBoot,
  createMemoryExport,
  createMemoryStorage,
} from "@bmi/core/testing";
import { testBootDriver } from "@bmi/core/testing/contracts";
import { createHilIsolation } from "@bmi/driver-hil";
import { type HilServer, startHilServer } from "@bmi/driver-hil/testing";
import { afterEach, describe, expect, it } from "vitest";
import { batchProvision } from "../src/batch-provision.js";
import { type AuditRecord, createAuditedBoot } from "../src/di-wiring.js";

const MIB = 1024 * 1024;
const nodes = ["rack1-01", "rack1-02", "rack1-03"];

async function memoryBmiWithGolden() {
  const memory = createMemoryBmi({
    isolation: {
      nodes: [
        ...nodes.map((name, i) => ({
          name,
          project: "ops",
          nics: [{ label: "eth0", mac: `52:54:00:00:10:0${i}` }],
        })),
        { name: "other-01", project: "someone-else", nics: [{ label: "eth0", mac: "52:54:00:00:20:01" }] },
      ],
    },
  });
  await memory.bmi.createProject({ name: "ops" });
  await memory.storage.create("centos7", 4 * MIB);
  await memory.bmi.importImage({ project: "ops", source: "centos7", name: "centos7" });
  return memory;
}

describe("my rack provisioning, against in-memory BMI", () => {
  it("provisions every node and reports each one", async () => {
    const { bmi, boot } = await memoryBmiWithGolden();
    const report = await batchProvision(bmi, { project: "ops", image: "centos7", nodes });
    expect(report.failed).toEqual([]);
    expect(report.provisioned.map((p) => p.node)).toEqual(nodes);
    expect((await boot.list()).map((e) => e.node).sort()).toEqual(nodes);
  });

  it("reports a node of another project as failed, and leaves nothing of it behind", async () => {
    const { bmi, state } = await memoryBmiWithGolden();
    const before = await state();
    const report = await batchProvision(bmi, { project: "ops", image: "centos7", nodes: ["other-01"] });
    expect(report.failed).toEqual([
      expect.objectContaining({ node: "other-01", code: "forbidden", retryable: false }),
    ]);
    expect(await state()).toEqual(before);
  });

  it("survives a storage outage in the middle of a batch: failed nodes are retryable and fully undone", async () => {
    const { bmi, storage, state } = await memoryBmiWithGolden();
    await batchProvision(bmi, { project: "ops", image: "centos7", nodes: [nodes[0] as string] });
    const before = await state();
    storage.failNext("clone", new BmiError("unavailable", "ceph is down", { subsystem: "storage" }));
    const report = await batchProvision(bmi, {
      project: "ops",
      image: "centos7",
      nodes: [nodes[1] as string],
      concurrency: 1,
    });
    expect(report.failed).toEqual([
      expect.objectContaining({ node: nodes[1], code: "unavailable", retryable: true }),
    ]);
    expect(await state()).toEqual(before);
    const retry = await batchProvision(bmi, {
      project: "ops",
      image: "centos7",
      nodes: [nodes[1] as string],
    });
    expect(retry.failed).toEqual([]);
  });
});

describe("my rack provisioning, against the HIL-compatible server", () => {
  let hil: HilServer | undefined;
  afterEach(async () => {
    await hil?.close();
  });

  it("checks node ownership and attaches the provisioning network in HIL", async () => {
    hil = await startHilServer({
      auth: "basic",
      fixture: {
        projects: ["ops", "someone-else"],
        users: [{ name: "ops-bot", password: "s3cret-ops", projects: ["ops"] }],
        nodes: [
          { name: "rack1-01", project: "ops", nics: [{ label: "eth0", macaddr: "52:54:00:00:10:00" }] },
          {
            name: "other-01",
            project: "someone-else",
            nics: [{ label: "eth0", macaddr: "52:54:00:00:20:01" }],
          },
        ],
        networks: [{ name: "provision", owner: "admin", access: ["ops"] }],
      },
    });
    const storage = createMemoryStorage();
    const settings = defaultSettings({ provisioningNetwork: "provision" });
    const bmi = createBmi({
      storage,
      export: createMemoryExport(),
      boot: createMemoryBoot(),
      isolation: createHilIsolation({ url: hil.url, username: "ops-bot", password: "s3cret-ops" }),
      store: openSqliteStore({
        create: true,
        path: ":memory:",
        uid: settings.uid,
        snapshotName: settings.snapshotName,
      }),
      settings,
    });
    await bmi.createProject({ name: "ops" });
    await storage.create("centos7", MIB);
    await bmi.importImage({ project: "ops", source: "centos7" });

    const report = await batchProvision(bmi, {
      project: "ops",
      image: "centos7",
      nodes: ["rack1-01", "other-01"],
    });
    expect(report.provisioned.map((p) => p.node)).toEqual(["rack1-01"]);
    expect(report.failed).toEqual([expect.objectContaining({ node: "other-01", code: "forbidden" })]);
    const nic = hil.state.nodes.get("rack1-01")?.nics.get("eth0");
    expect(Object.fromEntries(nic?.networks ?? [])).toEqual({ "vlan/native": "provision" });
  });
});

// Your own driver passes the same contract suite as ours.
const audit: AuditRecord[] = [];
testBootDriver({
  name: "audited in-memory boot (example custom driver)",
  create: async () => ({ driver: createAuditedBoot(createMemoryBoot(), audit) }),
  additionalTests: () => {
    it("records every write and remove", async () => {
      const before = audit.length;
      const driver = createAuditedBoot(createMemoryBoot(), audit);
      await driver.write({
        node: "n1",
        macs: ["52:54:00:00:00:01"],
        target: { name: "iqn.2026-11.org.bmi:1img2", portal: "10.0.0.5", port: 3260, lun: 1 },
        firmware: "bios",
        label: "d1",
      });
      await driver.remove("n1");
      expect(audit.slice(before).map((a) => [a.action, a.node])).toEqual([
        ["write", "n1"],
        ["remove", "n1"],
      ]);
    });
  },
});
