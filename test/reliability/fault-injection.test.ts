/**
 * Issue 10 §1 and 20.8: a failure at every step of every operation, written once in the testing
 * kit (`testOperationFailures`) and run in one loop over the environments `BMI_DRIVERS` names
 * (`memory,lab`; default both): the in-memory BMI, and the real drivers (shared Ceph, tgtd, PXE
 * files, the HIL-compatible server). For each operation: a failure injected before each saga step
 * (the `beforeStep` hook), and inside each mutating driver call, once before the call does its
 * work (the daemon refused) and once after (the work happened, the reply was lost). After each,
 * RBD images and snapshots, targets, boot files, HIL attachments and DB rows equal what they were
 * before the operation.
 *
 *   BMI_DRIVERS=memory pnpm exec vitest run test/reliability/fault-injection.test.ts
 */
import { createBmi, type StepHook } from "@bmi/core";
import { createFaultInjector, selectEnvironments } from "@bmi/core/testing";
import {
  memoryScenarioEnvironment,
  type ScenarioEnvironment,
  type ScenarioTarget,
  testOperationFailures,
} from "@bmi/core/testing/contracts";
import { type BmiLab, startBmiLab } from "@bmi/lab";
import { expect, inject } from "vitest";
import { labState } from "./helpers.js";
import { labWorld, OTHER_PROJECT, resetLab } from "./scenarios.js";

/** The real lab: one for the whole loop, reset to the base state (golden in the lab's project) each time. */
function labEnvironment(): ScenarioEnvironment {
  let lab: BmiLab | undefined;
  let source = "";
  let target: ScenarioTarget | undefined;
  return {
    name: "lab",
    provides: ["source", "exportName"],
    async start() {
      lab = await startBmiLab({ ceph: inject("ceph"), nodes: 2, hilActionDelayMs: 5 });
      source = `lab${lab.settings.uid}-golden-src`;
      await lab.drivers.storage.create(source, 8 * 1024 * 1024);
      await lab.bmi.importImage({ project: lab.project, source, name: "golden" });
      await lab.bmi.createProject({ name: OTHER_PROJECT });
      const injector = createFaultInjector();
      let hook: StepHook | undefined;
      const faulty = createBmi({
        storage: injector.wrap("storage", lab.drivers.storage),
        export: injector.wrap("export", lab.drivers.export),
        boot: injector.wrap("boot", lab.drivers.boot),
        isolation: injector.wrap("isolation", lab.drivers.isolation),
        store: lab.store,
        settings: lab.settings,
        beforeStep: (info) => hook?.(info),
      });
      const started = lab;
      target = {
        world: labWorld(lab, source),
        bmi: lab.bmi,
        faulty,
        injector,
        setStepHook: (next) => {
          hook = next;
        },
        state: () => labState(started),
      };
    },
    async base() {
      if (!lab || !target) throw new Error("the lab did not start");
      await resetLab(lab);
      return target;
    },
    async stop() {
      if (!lab) return;
      try {
        await resetLab(lab, []);
        if (await lab.drivers.storage.exists(source)) await lab.drivers.storage.remove(source);
        expect(await lab.leftovers()).toEqual({ images: [], targets: [], bootFiles: [] });
      } finally {
        await lab.stop();
      }
    },
  };
}

for (const env of selectEnvironments({ memory: memoryScenarioEnvironment, lab: labEnvironment })) {
  testOperationFailures(env);
}
