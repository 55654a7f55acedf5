import { describe, expect, it } from "vitest";
import { BmiError, createBmi, type OperationOptions } from "../src/index.js";
import {
  createFaultInjector,
  MUTATING_METHODS,
  type ScenarioWorld,
  scenariosFor,
} from "../src/testing/index.js";
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

/** Every multi-step operation (the catalogue the real lab runs too), plus memory-only cases. */
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

/** Steps after the point of no return (irreversible, or cleanups whose failure does not fail the op). */
const FINAL_STEPS = new Set([
  "unprotect source snapshot",
  "remove source snapshot",
  "unprotect disk snapshot",
  "remove disk snapshot",
]);

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

describe("a failure injected at each step leaves drivers and DB exactly as before", () => {
  for (const scenario of scenarios) {
    it(scenario.name, async () => {
      const steps = await stepsOf(scenario);
      expect(steps.length).toBeGreaterThan(0);
      let injected = 0;
      for (let at = 0; at < steps.length; at++) {
        const env = await setup();
        await scenario.prepare?.(env);
        const before = await env.state();
        const injectedError = new BmiError("unavailable", `injected at step ${at}`, { subsystem: "storage" });
        env.setHook(({ index }) => {
          if (index === at) throw injectedError;
        });
        const outcome = await scenario.run(env).then(
          () => "succeeded",
          (error: unknown) => error,
        );
        const step = steps[at] ?? "";
        if (outcome === "succeeded") {
          // Only a cleanup step may fail without failing the operation; it is journalled instead.
          expect(FINAL_STEPS.has(step), `step "${step}" failed silently`).toBe(true);
          continue;
        }
        expect(outcome).toBe(injectedError);
        env.setHook(undefined);
        expect(await env.state(), `after a failure at step ${at} (${step})`).toEqual(before);
        injected++;
      }
      expect(injected).toBeGreaterThan(0);
    });
  }
});

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
          expect(at === steps.length - 1 || FINAL_STEPS.has(step), `abort at "${step}" ignored`).toBe(true);
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
    expect(env.bmi.listDisks({ project: "p1" })).toEqual([]);
    const journal = env.store.listJournal().filter((j) => j.status === "undo_failed");
    expect(journal.map((j) => j.step)).toEqual(["export target"]);
    const report = await env.bmi.reconcile();
    expect(report.drift.map((d) => d.kind)).toContain("orphan_target");
  });
});

/** The same BMI with every driver wrapped by a fault injector (from @bmi/core/testing). */
function injected(env: Env) {
  const injector = createFaultInjector();
  const bmi = createBmi({
    storage: injector.wrap("storage", env.storage),
    export: injector.wrap("export", env.exporter),
    boot: injector.wrap("boot", env.boot),
    isolation: injector.wrap("isolation", env.isolation),
    store: env.store,
    settings: env.settings,
  });
  return { env: { ...env, bmi }, injector };
}

describe("a reply lost after each mutating driver call (the work happened) is undone too", () => {
  // Creating a project and moving an image change rows only: no driver call to lose.
  for (const scenario of scenarios.filter((s) => s.name !== "create project" && s.name !== "move image")) {
    it(scenario.name, async () => {
      const counting = await setup();
      await scenario.prepare?.(counting);
      const probe = injected(counting);
      probe.injector.arm({ at: Number.MAX_SAFE_INTEGER, mode: "after", onlyMutating: true });
      await scenario.run(probe.env);
      const total = probe.injector.calls.filter((c) => {
        const [subsystem, method] = c.split(".") as [keyof typeof MUTATING_METHODS, string];
        return MUTATING_METHODS[subsystem].includes(method);
      }).length;
      expect(total).toBeGreaterThan(0);
      for (let at = 1; at <= total; at++) {
        const env = await setup();
        await scenario.prepare?.(env);
        const before = await env.state();
        const { env: faulty, injector } = injected(env);
        injector.arm({ at, mode: "after", onlyMutating: true });
        const outcome = await scenario.run(faulty).then(
          () => "succeeded",
          (error: unknown) => error,
        );
        expect(injector.fired, `lost reply ${at}`).toBe(true);
        // A lost reply to a cleanup after the point of no return does not fail the operation.
        if (outcome === "succeeded") continue;
        expect(outcome, `lost reply ${at}`).toBeInstanceOf(BmiError);
        expect(await env.state(), `after losing the reply of mutating call ${at}`).toEqual(before);
      }
    });
  }
});
