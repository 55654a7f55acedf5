/**
 * Issue 10 §7: two processes provision the same node at the same moment on one DB (the same
 * bmi_config.cfg): one wins, the other gets a conflict. And a lock whose holder was SIGKILLed
 * does not block the next provision.
 */
import { type BmiLab, startBmiLab } from "@bmi/lab";
import { afterAll, beforeAll, expect, inject, it } from "vitest";
import { radosAdmin, rbdAsClient } from "../integration/ceph-helpers.js";
import { labState } from "./helpers.js";
import { resetLab } from "./scenarios.js";
import { type Child, spawnChild } from "./spawn.js";

const ceph = inject("ceph");
let lab: BmiLab;
let source: string;
const children: Child[] = [];

beforeAll(async () => {
  lab = await startBmiLab({ ceph, nodes: 1, hilActionDelayMs: 5 });
  source = `lab${lab.settings.uid}-golden-src`;
  await lab.drivers.storage.create(source, 4 * 1024 * 1024);
  await lab.bmi.importImage({ project: lab.project, source, name: "golden" });
});

afterAll(async () => {
  for (const child of children) await child.kill();
  if (!lab) return;
  try {
    await resetLab(lab, []);
    if (await lab.drivers.storage.exists(source)) await lab.drivers.storage.remove(source);
    expect(await lab.leftovers()).toEqual({ images: [], targets: [], bootFiles: [] });
  } finally {
    await lab.stop();
  }
});

const node = () => lab.nodes[0]?.name as string;

it("two processes provision one node at once: one wins, the other gets a conflict", {
  timeout: 120_000,
}, async () => {
  // Both wait for the same instant after their start-up (tsx, config, drivers) is done.
  const startAt = String(Date.now() + 6_000);
  const run = (disk: string) => {
    const child = spawnChild(["provision", lab.configPath, lab.project, node(), disk, "golden", startAt]);
    children.push(child);
    return child;
  };
  const [a, b] = [run("da"), run("db")];
  await Promise.all([a.exited, b.exited]);
  const outcomes = [a.lines.at(-1), b.lines.at(-1)];
  const won = outcomes.filter((o) => o?.ok === true);
  const lost = outcomes.filter((o) => o?.ok === false);
  expect(won, JSON.stringify(outcomes)).toHaveLength(1);
  expect(lost).toHaveLength(1);
  // Whichever lost saw either the held lock or the winner's record: both are conflicts.
  expect(lost[0]?.code).toBe("conflict");
  expect(String(lost[0]?.message)).toMatch(new RegExp(`node ${node()}`));

  const provisionings = await lab.bmi.listProvisionings();
  expect(provisionings).toHaveLength(1);
  const winner = provisionings[0]?.disk;
  // The loser left nothing: only the winner's disk exists.
  expect((await lab.bmi.listDisks({ project: lab.project })).map((d) => d.name)).toEqual([winner]);
  expect((await lab.bmi.reconcile()).drift).toEqual([]);
});

it("a lock held by a SIGKILLed process does not block the next provision", { timeout: 120_000 }, async () => {
  await resetLab(lab);
  const holder = spawnChild(["hold", lab.configPath, lab.project, node(), "dk", "golden"]);
  children.push(holder);
  await holder.until((line) => line.holding === true);
  // While the holder lives, its lock stands.
  await expect(
    lab.bmi.provision({ project: lab.project, node: node(), disk: "dk", image: "golden" }),
  ).rejects.toMatchObject({ code: "conflict" });
  await holder.kill();

  // The dead holder's lock is taken over; its half-made disk (row, clone, target) is reused.
  const record = await lab.bmi.provision({ project: lab.project, node: node(), disk: "dk", image: "golden" });
  expect(record.disk).toBe("dk");
  const report = await lab.bmi.reconcile();
  expect(report.drift.map((d) => d.kind)).toEqual(["interrupted_operation"]);
  await lab.bmi.reconcile({ repair: true });
  expect((await lab.bmi.reconcile()).drift).toEqual([]);
  const state = await labState(lab);
  expect(state.db?.provisionings.map((p) => p.node)).toEqual([node()]);
  expect(state.boot.map((b) => b.node)).toEqual([node()]);
  expect(state.attachments).toHaveLength(1);
});

it("a clone its process died inside rbd_clone for (listed, no header yet) is removed by reconcile", {
  timeout: 120_000,
}, async () => {
  await resetLab(lab);
  const holder = spawnChild(["hold", lab.configPath, lab.project, node(), "dh", "golden", "export target"]);
  children.push(holder);
  await holder.until((line) => line.holding === true);
  await holder.kill();
  // rbd_clone adds the pool's directory entry before it writes the header (and only then links
  // the clone to its parent): a kill in between leaves an image that is listed but cannot be
  // opened, as seen in the crash-batch test. The dead holder's clone (not exported yet) is put in
  // that state: the finished clone goes, an image of the same name without a header comes back.
  const clone = (await lab.store.images.list()).find((r) => r.name === "dh")?.cephName ?? "";
  await lab.drivers.storage.remove(clone);
  await lab.drivers.storage.create(clone, 4 * 1024 * 1024);
  const info = await rbdAsClient(ceph, ["info", "--format", "json", `${ceph.pool}/${clone}`]);
  await radosAdmin(ceph, ["rm", `rbd_header.${(JSON.parse(info.stdout) as { id: string }).id}`]);
  expect(await lab.drivers.storage.list()).toContain(clone);
  expect(await lab.drivers.storage.exists(clone)).toBe(false);

  const repaired = await lab.bmi.reconcile({ repair: true });
  expect(repaired.failed).toEqual([]);
  expect(repaired.repaired.map((d) => [d.kind, d.subject])).toContainEqual(["half_made_disk", clone]);
  expect(await lab.drivers.storage.list()).not.toContain(clone);
  expect((await lab.bmi.reconcile()).drift).toEqual([]);
});
