import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BmiError } from "../../errors/index.js";
import { type Bmi, createBmi } from "../../ops/bmi.js";
import type { StepHook } from "../../ops/saga.js";
import { createFaultInjector, type FaultInjector } from "../fault-injector.js";
import { createMemoryBmi } from "../memory-bmi.js";
import {
  CLEANUP_STEPS,
  OPERATION_SCENARIOS,
  type OperationScenario,
  ROWS_ONLY_SCENARIOS,
  type ScenarioWorld,
} from "../scenarios.js";

/** A BMI in the scenarios' base state, with a second facade over the same drivers and store for faults. */
export interface ScenarioTarget {
  world: ScenarioWorld;
  /** Fault-free: prepares preconditions and repairs with `reconcile`. */
  bmi: Bmi;
  /** The same drivers (wrapped by `injector`) and store, with the step hook `setStepHook` sets. */
  faulty: Bmi;
  injector: FaultInjector;
  setStepHook(hook: StepHook | undefined): void;
  /** Everything an operation can change, compared before and after a failed one. */
  state(): Promise<unknown>;
}

/** Where the operation scenarios run: the in-memory BMI, a real lab, your own drivers. */
export interface ScenarioEnvironment {
  name: string;
  /** The optional world fields it provides; scenarios that need another one show as skipped. */
  provides: readonly ("source" | "exportName")[];
  start?(): Promise<void>;
  stop?(): Promise<void>;
  /** The base state: a new BMI, or the same one reset. */
  base(): Promise<ScenarioTarget>;
}

interface Fault {
  arm(target: ScenarioTarget, k: number): void;
  disarm(target: ScenarioTarget): void;
  /** The step it fired at, `""` when it fired outside a step hook, null when it did not fire. */
  firedAt(target: ScenarioTarget): string | null;
}

function stepFault(): Fault {
  let fired: string | null = null;
  return {
    arm(target, k) {
      fired = null;
      target.setStepHook(({ index, operation, step }) => {
        if (index !== k) return;
        fired = step;
        throw new BmiError("unavailable", `injected failure before step ${step} of ${operation}`);
      });
    },
    disarm: (target) => target.setStepHook(undefined),
    firedAt: () => fired,
  };
}

function driverFault(mode: "before" | "after"): Fault {
  return {
    arm: (target, k) => target.injector.arm({ at: k + 1, mode, onlyMutating: true }),
    disarm: (target) => target.injector.arm(null),
    firedAt: (target) => (target.injector.fired ? "" : null),
  };
}

/**
 * Runs `scenario` with the fault armed at point k = 0, 1, 2, ... until it runs through without
 * the fault firing; returns how many points were injected. A failed run must leave the state as
 * it was, so the next point reuses it; a fault past the point of no return leaves journalled
 * drift that `reconcile()` removes.
 */
async function everyPoint(env: ScenarioEnvironment, scenario: OperationScenario, fault: Fault) {
  let target: ScenarioTarget | null = null;
  let before: unknown = null;
  for (let k = 0; ; k++) {
    if (target === null) {
      target = await env.base();
      await scenario.prepare?.(target.bmi, target.world);
      before = await target.state();
    }
    fault.arm(target, k);
    const outcome = await scenario.run(target.faulty, target.world).then(
      () => null,
      (error: unknown) => ({ error }),
    );
    fault.disarm(target);
    const firedAt = fault.firedAt(target);
    const context = `${env.name}: ${scenario.name}, point ${k}`;
    if (outcome === null && firedAt === null) return k;
    if (outcome === null) {
      if (firedAt !== "")
        expect(CLEANUP_STEPS.has(firedAt as string), `${context}: "${firedAt}" failed silently`).toBe(true);
      expect((await target.bmi.reconcile({ repair: true })).failed, context).toEqual([]);
      expect((await target.bmi.reconcile()).drift, context).toEqual([]);
      target = null;
      continue;
    }
    expect(outcome.error, context).toBeInstanceOf(BmiError);
    expect((outcome.error as BmiError).message, context).toMatch(/injected failure/);
    expect(await target.state(), context).toEqual(before);
  }
}

/**
 * The failure scenarios of issue 20.8, written once: every multi-step operation with a failure
 * before each saga step, and inside each mutating driver call before its work (refused) and
 * after it (the reply lost); each time the state must equal what it was before. Loop it over
 * environments (`selectEnvironments` reads `BMI_DRIVERS`), as kysely loops over dialects.
 */
export function testOperationFailures(env: ScenarioEnvironment): void {
  describe(`operation failures on ${env.name}`, () => {
    const points = { steps: 0, before: 0, after: 0 };
    beforeAll(async () => env.start?.(), 600_000);
    afterAll(async () => {
      const all = points.steps + points.before + points.after;
      process.stderr.write(
        `fault injection on ${env.name}: ${points.steps} step points, ${points.before} driver-call points (before), ${points.after} (after); ${all} in all\n`,
      );
      await env.stop?.();
    }, 600_000);
    const scenarioTest = (name: string, scenario: OperationScenario, body: () => Promise<void>) => {
      const missing = (scenario.needs ?? []).filter((field) => !env.provides.includes(field));
      const title =
        missing.length > 0 ? `${name} (skipped: ${env.name} provides no ${missing.join(", ")})` : name;
      it.skipIf(missing.length > 0)(title, { timeout: 600_000 }, body);
    };

    describe("a failure before every saga step leaves nothing behind", () => {
      for (const scenario of OPERATION_SCENARIOS) {
        scenarioTest(scenario.name, scenario, async () => {
          const injected = await everyPoint(env, scenario, stepFault());
          expect(injected).toBeGreaterThan(0);
          points.steps += injected;
        });
      }
    });

    describe("a failure inside every mutating driver call leaves nothing behind", () => {
      for (const mode of ["before", "after"] as const) {
        for (const scenario of OPERATION_SCENARIOS) {
          const rowsOnly = ROWS_ONLY_SCENARIOS.has(scenario.name);
          scenarioTest(`${scenario.name} (${mode} the work)`, scenario, async () => {
            const injected = await everyPoint(env, scenario, driverFault(mode));
            // Rows-only operations make no mutating driver call at all: nothing was there to inject.
            if (rowsOnly) expect(injected).toBe(0);
            else expect(injected).toBeGreaterThan(0);
            points[mode] += injected;
          });
        }
      }
    });
  });
}

/**
 * The in-memory environment: golden in p1, which owns n1; p2 empty; centos7 an RBD image BMI does
 * not manage; every base state a new in-memory BMI.
 */
export function memoryScenarioEnvironment(): ScenarioEnvironment {
  const world: ScenarioWorld = {
    project: "p1",
    otherProject: "p2",
    node: "n1",
    source: "centos7",
    exportName: "out",
  };
  return {
    name: "memory",
    provides: ["source", "exportName"],
    async base() {
      const memory = createMemoryBmi({
        isolation: {
          nodes: [{ name: "n1", project: "p1", nics: [{ label: "eth0", mac: "52:54:00:00:00:01" }] }],
          networks: ["prov"],
        },
        settings: { provisioningNetwork: "prov" },
      });
      const { bmi, storage } = memory;
      // The admin project marks the database as a deployment's own, as `bmi db init` does (reconcile repairs only then).
      await bmi.createProject({ name: bmi.settings.adminProject });
      await bmi.createProject({ name: "p1" });
      await bmi.createProject({ name: "p2" });
      await storage.create("centos7", 4 * 1024 * 1024);
      await bmi.importImage({ project: "p1", source: "centos7", name: "golden" });
      const injector = createFaultInjector();
      let hook: StepHook | undefined;
      const faulty = createBmi({
        storage: injector.wrap("storage", memory.storage),
        export: injector.wrap("export", memory.export),
        boot: injector.wrap("boot", memory.boot),
        isolation: injector.wrap("isolation", memory.isolation),
        store: memory.store,
        settings: bmi.settings,
        beforeStep: (info) => hook?.(info),
      });
      return {
        world,
        bmi,
        faulty,
        injector,
        setStepHook: (next) => {
          hook = next;
        },
        state: memory.state,
      };
    },
  };
}
