import { describe, expect, it } from "vitest";
import { BmiError, type OperationOptions } from "../src/index.js";
import { CLEANUP_STEPS, type ScenarioWorld, scenariosFor } from "../src/testing/index.js";
import { type Env, setup, thrown } from "./ops-helpers.js";

interface Scenario {
  name: string;
  prepare?: (env: Env) => Promise<unknown>;
  run: (env: Env, options?: OperationOptions) => Promise<unknown>;
}

/** The in-memory world of `setup()`: golden in p1, which owns n1; p2 empty; centos7 unmanaged. */
const WORLD: ScenarioWorld = {
  project: "p1",
  otherProject: "p2",
  node: "n1",
  source: "centos7",
  exportName: "out",
};

/**
 * Every multi-step operation (the catalogue the real lab runs too), plus memory-only cases. A
 * failure at every step and inside every driver call runs on both environments in one loop
 * (test/reliability/fault-injection.test.ts, `BMI_DRIVERS=memory,lab`); an abort at every step here.
 */
const scenarios: Scenario[] = [
  ...scenariosFor(WORLD).map(
    (s): Scenario => ({
      name: s.name,
      ...(s.prepare ? { prepare: (e: Env) => s.prepare?.(e.bmi, WORLD) ?? Promise.resolve() } : {}),
      run: (e, o) => s.run(e.bmi, WORLD, o),
    }),
  ),
  {
    name: "import image from a snapshot",
    prepare: (e) => e.storage.createSnapshot({ image: "centos7", snapshot: "v1" }),
    run: (e, o) => e.bmi.importImage({ project: "p2", source: "centos7", snapshot: "v1", protect: true }, o),
  },
  {
    name: "switch a provisioned node to another disk (switchDisk)",
    prepare: async (e) => {
      await e.bmi.provision({ project: "p1", node: "n1", disk: "d1", image: "golden" });
      await e.bmi.createDisk({ project: "p1", image: "golden", disk: "d2" });
    },
    run: (e, o) => e.bmi.provision({ project: "p1", node: "n1", disk: "d2", switchDisk: true }, o),
  },
  {
    name: "delete a disk that boots a node (deprovision first)",
    prepare: (e) => e.bmi.provision({ project: "p1", node: "n1", disk: "d1", image: "golden" }),
    run: (e, o) => e.bmi.deleteDisk({ project: "p1", disk: "d1", deprovision: true }, o),
  },
];

async function stepsOf(scenario: Scenario): Promise<string[]> {
  const env = await setup();
  await scenario.prepare?.(env);
  const steps: string[] = [];
  env.setHook(({ step }) => {
    steps.push(step);
  });
  await scenario.run(env);
  return steps;
}

describe("an abort at each step (issue 20.2) ends cancelled with everything undone", () => {
  for (const scenario of scenarios) {
    it(scenario.name, async () => {
      const steps = await stepsOf(scenario);
      let cancelled = 0;
      // at = -1: aborted before the call (nothing may start); else while step `at` runs: its
      // driver call sees the signal and the next step never starts.
      for (let at = -1; at < steps.length; at++) {
        const env = await setup();
        await scenario.prepare?.(env);
        const before = await env.state();
        const controller = new AbortController();
        if (at === -1) controller.abort();
        env.setHook(({ index }) => {
          if (index === at) controller.abort();
        });
        const outcome = await scenario.run(env, { signal: controller.signal }).then(
          () => "succeeded",
          (error: unknown) => error,
        );
        env.setHook(undefined);
        const step = steps[at] ?? "(before the call)";
        if (outcome === "succeeded") {
          // An abort during the last step, or a cleanup past the point of no return: done, and tidy.
          expect(at === steps.length - 1 || CLEANUP_STEPS.has(step), `abort at "${step}" ignored`).toBe(true);
          expect((await env.bmi.reconcile()).drift, `after an abort at "${step}"`).toEqual([]);
          continue;
        }
        expect(outcome, `abort at "${step}"`).toMatchObject({ code: "cancelled" });
        expect(await env.state(), `after an abort at step ${at} (${step})`).toEqual(before);
        cancelled++;
      }
      expect(cancelled).toBeGreaterThan(0);
    });
  }
});

describe("undo failures", () => {
  it("journals an undo that fails and keeps undoing the other steps", async () => {
    const env = await setup();
    env.setHook(({ step }) => {
      if (step === "record export") throw new BmiError("unavailable", "injected");
    });
    env.exporter.failNext("unexport", new BmiError("unavailable", "tgtd went away", { subsystem: "export" }));
    const error = await thrown(() => env.bmi.createDisk({ project: "p1", image: "golden", disk: "d1" }));
    expect(error.message).toBe("injected");
    // The clone and the row were still undone; the target is left, and reconcile names it.
    expect(await env.storage.exists("1img2")).toBe(false);
    expect(await env.bmi.listDisks({ project: "p1" })).toEqual([]);
    const journal = (await env.store.journal.list()).filter((j) => j.status === "undo_failed");
    expect(journal.map((j) => j.step)).toEqual(["export target"]);
    const report = await env.bmi.reconcile();
    expect(report.drift.map((d) => d.kind)).toContain("orphan_target");
  });
});
