/**
 * Issue 10 §2: a child process provisioning 50 nodes is SIGKILLed at several moments (after k
 * finished saga steps). Each time, reconcile() reports the drift from the journal, repairs it on
 * request, and afterwards the DB, Ceph, tgt, the TFTP root and HIL agree, with nothing orphaned.
 * The next batch picks up where the killed one stopped; the last one runs to the end.
 */
import type { Drift } from "@bmi/core";
import { type BmiLab, startBmiLab } from "@bmi/lab";
import { afterAll, beforeAll, expect, inject, it } from "vitest";
import { scopedStorage } from "./helpers.js";
import { type Child, spawnChild } from "./spawn.js";

const NODES = 50;
/** Finished saga steps (of this run) after which each batch is killed; a provision from an image has 8. */
const KILL_AFTER_STEPS = [3, 17, 40, 60, 25, 9];
const ceph = inject("ceph");
let lab: BmiLab;
let source: string;
const children: Child[] = [];

beforeAll(async () => {
  lab = await startBmiLab({ ceph, nodes: NODES, hilActionDelayMs: 5 });
  source = `lab${lab.settings.uid}-golden-src`;
  await lab.drivers.storage.create(source, 4 * 1024 * 1024);
  await lab.bmi.importImage({ project: lab.project, source, name: "golden" });
});

afterAll(async () => {
  for (const child of children) await child.kill();
  if (!lab) return;
  try {
    const { bmi, project } = lab;
    await inParallel(await bmi.listProvisionings(), (p) =>
      bmi.deprovision({ project, node: p.node, deleteDisk: true }),
    );
    await inParallel(await bmi.listDisks({ project }), (d) => bmi.deleteDisk({ project, disk: d.name }));
    await bmi.removeImage({ project, image: "golden" });
    if (await lab.drivers.storage.exists(source)) await lab.drivers.storage.remove(source);
    expect(await lab.leftovers()).toEqual({ images: [], targets: [], bootFiles: [] });
  } finally {
    await lab.stop();
  }
});

async function inParallel<T>(items: T[], fn: (item: T) => Promise<unknown>, width = 4): Promise<void> {
  const queue = [...items];
  await Promise.all(
    Array.from({ length: width }, async () => {
      for (let item = queue.shift(); item !== undefined; item = queue.shift()) await fn(item);
    }),
  );
}

const batch = () => {
  const child = spawnChild(["batch", lab.configPath, lab.project, String(NODES), "golden"]);
  children.push(child);
  return child;
};

/**
 * reconcile({ repair: true }) until nothing fails. A child killed while librbd had one of its
 * clones open leaves a watch that Ceph keeps until osd_client_watch_timeout (30 s) passes, and
 * until then removing that clone is refused as busy: the one failure that may be retried here.
 */
async function repairAll(context: string): Promise<Drift[]> {
  const repaired: Drift[] = [];
  for (let attempt = 1; ; attempt++) {
    const report = await lab.bmi.reconcile({ repair: true });
    repaired.push(...report.repaired);
    const watched = report.failed.filter((f) => f.code === "busy" && f.error.includes("watchers"));
    if (watched.length === 0 || attempt > 15) {
      expect(report.failed, `${context}: repair failures (attempt ${attempt})`).toEqual([]);
      return repaired;
    }
    expect(report.failed, `${context}: only a dead client's watch blocks a repair`).toEqual(watched);
    expect(
      watched.every((f) => f.retryable),
      context,
    ).toBe(true);
    process.stderr.write(`crash batch: ${context}: ${watched.length} image(s) still watched, retrying\n`);
    await new Promise((resolve) => setTimeout(resolve, 3_000));
  }
}

/** DB, Ceph, tgt, the TFTP root and HIL say the same thing, and nothing is orphaned. */
async function expectAgreement(context: string): Promise<void> {
  const { store, drivers, settings } = lab;
  const rows = await store.images.list();
  const rbd = (await scopedStorage(lab).list()).filter((n) => n.startsWith(`${settings.uid}img`));
  expect(rbd.sort(), `${context}: RBD images = image rows`).toEqual(rows.map((r) => r.cephName).sort());
  for (const name of rbd) {
    const temps = (await drivers.storage.listSnapshots(name)).filter((s) => s.name.includes("-tmp-"));
    expect(temps, `${context}: temporary snapshots on ${name}`).toEqual([]);
  }
  const recorded = (await store.exports.list()).map((e) => e.target.name).sort();
  const live = (await drivers.export.list()).map((t) => t.target).sort();
  expect(live, `${context}: targets = export records`).toEqual(recorded);
  const provisioned = (await store.provisionings.list()).map((p) => p.node).sort();
  const booting = (await drivers.boot.list()).map((e) => e.node).sort();
  expect(booting, `${context}: boot files = provisionings`).toEqual(provisioned);
  const attached: string[] = [];
  for (const node of lab.nodes) {
    const on = await drivers.isolation.attachments(node.name);
    if (on.some((a) => a.network === settings.provisioningNetwork)) attached.push(node.name);
  }
  expect(attached, `${context}: HIL attachments = provisionings`).toEqual(provisioned);
  for (const p of await store.provisionings.list()) {
    expect(recorded, `${context}: ${p.node}'s disk is exported`).toContain(p.target.name);
  }
  expect((await lab.bmi.reconcile()).drift, `${context}: no drift left`).toEqual([]);
}

it(`a batch of ${NODES} provisionings killed at ${KILL_AFTER_STEPS.length} moments is repaired by reconcile()`, {
  timeout: 900_000,
}, async () => {
  let repairedKinds = new Set<string>();
  let before = 0;
  for (const steps of KILL_AFTER_STEPS) {
    const child = batch();
    let seen = 0;
    await child.until((line) => "step" in line && ++seen >= steps);
    await child.kill();
    const context = `killed after ${steps} steps`;

    const report = await lab.bmi.reconcile();
    const interrupted = report.drift.filter((d) => d.kind === "interrupted_operation");
    // Four provisionings run at once, so at least one was cut short.
    expect(interrupted.length, context).toBeGreaterThan(0);
    const repaired = await repairAll(context);
    // Not an exact match with the first report: a HIL action the dead process queued may finish in between.
    expect(repaired.length, context).toBeGreaterThan(0);
    repairedKinds = new Set([...repairedKinds, ...repaired.map((d) => d.kind)]);
    await expectAgreement(context);
    const done = (await lab.store.provisionings.list()).length;
    expect(done, `${context}: provisionings only grow`).toBeGreaterThanOrEqual(before);
    before = done;
  }
  process.stderr.write(`crash batch: drift kinds repaired: ${[...repairedKinds].sort().join(", ")}\n`);
  // Every kill leaves the dead process's lock rows, which reconcile clears (issue 22.11).
  expect([...repairedKinds]).toContain("stale_lock");

  // The last batch (no kill) finishes the job: the dead batches' locks and half-made disks do not block it.
  const last = batch();
  expect(await last.exited).toBe(0);
  expect(last.lines.at(-1)).toEqual({ done: NODES, failed: [] });
  expect(await lab.store.provisionings.list()).toHaveLength(NODES);
  await lab.bmi.reconcile({ repair: true });
  await expectAgreement("after the last batch");
});
