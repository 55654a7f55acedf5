/**
 * Issue 10 §1: a failure at every step, on the real drivers (shared Ceph, tgtd, PXE files, the
 * HIL-compatible server). For each operation: a failure injected before each saga step (the
 * `beforeStep` hook), and inside each mutating driver call, once before the call does its work
 * (the daemon refused) and once after (the work happened, the reply was lost). After each, the
 * lab's RBD images and snapshots, targets, boot files, HIL attachments and DB rows equal what
 * they were before the operation.
 */
import { type Bmi, BmiError, createBmi, type StepHook } from "@bmi/core";
import { type OperationScenario, type ScenarioWorld, scenariosFor } from "@bmi/core/testing";
import { type BmiLab, startBmiLab } from "@bmi/lab";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createFaultInjector, labState } from "./helpers.js";
import { labWorld, OTHER_PROJECT, resetLab } from "./scenarios.js";

const ceph = inject("ceph");
let lab: BmiLab;
let source: string;
let faulty: Bmi;
let world: ScenarioWorld;
let stepFault: number | null = null;
let stepFired = false;
const injector = createFaultInjector();
const points = { steps: 0, driverBefore: 0, driverAfter: 0 };

const stepHook: StepHook = ({ index, operation, step }) => {
  if (stepFault !== null && index === stepFault) {
    stepFired = true;
    throw new BmiError("unavailable", `injected failure before step ${step} of ${operation}`);
  }
};

beforeAll(async () => {
  lab = await startBmiLab({ ceph, nodes: 2, hilActionDelayMs: 5 });
  source = `lab${lab.settings.uid}-golden-src`;
  await lab.drivers.storage.create(source, 8 * 1024 * 1024);
  await lab.bmi.importImage({ project: lab.project, source, name: "golden" });
  await lab.bmi.createProject({ name: OTHER_PROJECT });
  world = labWorld(lab, source);
  faulty = createBmi({
    storage: injector.wrap("storage", lab.drivers.storage),
    export: injector.wrap("export", lab.drivers.export),
    boot: injector.wrap("boot", lab.drivers.boot),
    isolation: injector.wrap("isolation", lab.drivers.isolation),
    store: lab.store,
    settings: lab.settings,
    beforeStep: stepHook,
  });
});

afterAll(async () => {
  process.stderr.write(
    `fault injection: ${points.steps} step points, ${points.driverBefore} driver-call points (before), ${points.driverAfter} (after); ${points.steps + points.driverBefore + points.driverAfter} in all\n`,
  );
  if (!lab) return;
  try {
    await resetLab(lab, []);
    if (await lab.drivers.storage.exists(source)) await lab.drivers.storage.remove(source);
    const left = await lab.leftovers();
    expect(left).toEqual({ images: [], targets: [], bootFiles: [] });
  } finally {
    await lab.stop();
  }
});

/**
 * Runs `scenario` with a fault armed by `arm(k)` for k = 0, 1, 2, ... until the operation runs
 * through without the fault firing; returns how many points were injected.
 */
async function everyPoint(
  scenario: OperationScenario,
  arm: (k: number) => void,
  disarm: () => void,
  fired: () => boolean,
): Promise<number> {
  // A failed run must leave the precondition as it was, so the next point reuses it.
  let before: Awaited<ReturnType<typeof labState>> | null = null;
  for (let k = 0; ; k++) {
    if (before === null) {
      await resetLab(lab);
      await scenario.prepare?.(lab.bmi, world);
      before = await labState(lab);
    }
    arm(k);
    let outcome: { ok: true } | { ok: false; error: unknown };
    try {
      await scenario.run(faulty, world);
      outcome = { ok: true };
    } catch (error) {
      outcome = { ok: false, error };
    } finally {
      disarm();
    }
    const didFire = fired();
    if (outcome.ok && !didFire) return k;
    const context = `${scenario.name}, point ${k}`;
    if (outcome.ok) {
      // The fault hit a step after the point of no return (a cleanup): the operation stands and
      // what the cleanup left is journalled drift that reconcile() removes.
      const report = await lab.bmi.reconcile({ repair: true });
      expect(report.failed, context).toEqual([]);
      expect((await lab.bmi.reconcile()).drift, context).toEqual([]);
      before = null;
      continue;
    }
    expect(outcome.error, context).toBeInstanceOf(BmiError);
    expect((outcome.error as BmiError).message, context).toMatch(/injected failure/);
    expect(await labState(lab), context).toEqual(before);
  }
}

/**
 * The shared catalogue (the unit suite runs the same on the in-memory BMI). The world's fields are
 * known only once the lab runs, so every scenario is listed; none needs more than the lab gives.
 */
const SCENARIOS = scenariosFor({ project: "", otherProject: "", node: "", source: "", exportName: "" });
/** Operations that make no driver call at all (rows only): nothing to inject inside a driver. */
const ROWS_ONLY = new Set(["create project", "move image"]);

describe("a failure before every saga step leaves nothing behind", () => {
  for (const scenario of SCENARIOS) {
    it(scenario.name, { timeout: 600_000 }, async () => {
      const n = await everyPoint(
        scenario,
        (k) => {
          stepFault = k;
          stepFired = false;
        },
        () => {
          stepFault = null;
        },
        () => stepFired,
      );
      expect(n).toBeGreaterThan(0);
      points.steps += n;
    });
  }
});

describe("a failure inside every mutating driver call leaves nothing behind", () => {
  for (const mode of ["before", "after"] as const) {
    for (const scenario of SCENARIOS.filter((s) => !ROWS_ONLY.has(s.name))) {
      it(`${scenario.name} (${mode} the work)`, { timeout: 600_000 }, async () => {
        const n = await everyPoint(
          scenario,
          (k) => injector.arm({ at: k + 1, mode, onlyMutating: true }),
          () => injector.arm(null),
          () => injector.fired,
        );
        expect(n).toBeGreaterThan(0);
        if (mode === "before") points.driverBefore += n;
        else points.driverAfter += n;
      });
    }
  }
});
