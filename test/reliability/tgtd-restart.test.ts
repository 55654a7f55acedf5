/**
 * Issue 10 §3: tgtd dies with 100 targets exported through BMI; after it is started again,
 * `restoreTargets()` brings every one back from the store (timed and printed), with its LUN on the
 * disk's RBD image, and reconcile() then sees no drift.
 */
import { BmiError } from "@bmi/core";
import { type BmiLab, startBmiLab } from "@bmi/lab";
import { afterAll, beforeAll, expect, inject, it } from "vitest";
import { resetLab } from "./scenarios.js";

const TARGETS = 100;
const ceph = inject("ceph");
let lab: BmiLab;
let source: string;

beforeAll(async () => {
  lab = await startBmiLab({ ceph, nodes: 1 });
  source = `lab${lab.settings.uid}-golden-src`;
  await lab.drivers.storage.create(source, 4 * 1024 * 1024);
  await lab.bmi.importImage({ project: lab.project, source, name: "golden" });
});

afterAll(async () => {
  if (!lab) return;
  try {
    // The killed tgtd's RBD watches linger until Ceph times them out (osd_client_watch_timeout,
    // 30 s): until then rbd rm answers busy, as it would for any crashed client.
    for (let attempt = 0; ; attempt++) {
      try {
        await resetLab(lab, []);
        break;
      } catch (error) {
        if (!(error instanceof BmiError && error.code === "busy") || attempt >= 30) throw error;
        await new Promise((resolve) => setTimeout(resolve, 3_000));
      }
    }
    if (await lab.drivers.storage.exists(source)) await lab.drivers.storage.remove(source);
    expect(await lab.leftovers()).toEqual({ images: [], targets: [], bootFiles: [] });
  } finally {
    await lab.stop();
  }
});

/** Runs `fn` over `items`, at most `width` at once. */
async function inBatches<T>(items: T[], width: number, fn: (item: T) => Promise<unknown>): Promise<void> {
  for (let i = 0; i < items.length; i += width) await Promise.all(items.slice(i, i + width).map(fn));
}

it(`restoreTargets() brings back all ${TARGETS} targets after tgtd is killed`, {
  timeout: 600_000,
}, async () => {
  const names = Array.from({ length: TARGETS }, (_, i) => `disk-${String(i).padStart(3, "0")}`);
  await inBatches(names, 8, (disk) => lab.bmi.createDisk({ project: lab.project, image: "golden", disk }));
  const expected = (await lab.bmi.listDisks({ project: lab.project }))
    .map((d) => ({ target: d.target?.name, image: d.cephName }))
    .sort((a, b) => String(a.target).localeCompare(String(b.target)));
  expect(expected).toHaveLength(TARGETS);
  const live = async () =>
    (await lab.drivers.export.list())
      // What tgtd reports of a backing store is its pool/image, not the client options.
      .map((t) => ({ target: t.target, image: "image" in t.backing ? t.backing.image : undefined }))
      .sort((a, b) => a.target.localeCompare(b.target));
  expect(await live()).toEqual(expected);

  const oldPid = lab.tgtd.pid;
  await lab.tgtd.kill();
  await lab.tgtd.restart();
  expect(lab.tgtd.pid).not.toBe(oldPid);
  expect(await lab.drivers.export.list()).toEqual([]);
  expect((await lab.bmi.reconcile()).drift.filter((d) => d.kind === "missing_target")).toHaveLength(TARGETS);

  const started = performance.now();
  const restored = await lab.bmi.restoreTargets();
  const ms = performance.now() - started;
  process.stderr.write(
    `restoreTargets: ${restored.length} targets in ${Math.round(ms)} ms after a tgtd restart\n`,
  );

  expect(restored.sort()).toEqual(expected.map((e) => e.target));
  expect(await live()).toEqual(expected);
  expect((await lab.bmi.reconcile()).drift).toEqual([]);
  // A second restore finds nothing missing.
  expect(await lab.bmi.restoreTargets()).toEqual([]);
});
