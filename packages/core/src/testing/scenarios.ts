import type { Bmi } from "../ops/bmi.js";
import type { OperationOptions } from "../ops/call-context.js";

/**
 * Where the operation scenarios run: the in-memory BMI or a real lab. The base state is a golden
 * image named `golden` in `project`, which owns `node`; `otherProject` exists and is empty.
 */
export interface ScenarioWorld {
  project: string;
  otherProject: string;
  node: string;
  /** An RBD image BMI does not manage, for `importImage`; scenarios that need it are left out without. */
  source?: string;
  /** A free RBD name for `exportImage`, which the world removes when it resets. */
  exportName?: string;
}

/** One multi-step operation, from a state where it succeeds. */
export interface OperationScenario {
  name: string;
  /** Brings the base state to the precondition, on a BMI without faults. */
  prepare?: (bmi: Bmi, world: ScenarioWorld) => Promise<unknown>;
  /** The operation under test, on the BMI whose faults (or signal) are being tried. */
  run: (bmi: Bmi, world: ScenarioWorld, options?: OperationOptions) => Promise<unknown>;
  /** World fields it cannot run without. */
  needs?: readonly ("source" | "exportName")[];
}

const disk = (w: ScenarioWorld) => ({ project: w.project, image: "golden", disk: "d1" });
const provisioned = (bmi: Bmi, w: ScenarioWorld) =>
  bmi.provision({ project: w.project, node: w.node, disk: "d1", image: "golden" });
const copyOfGolden = (name: string) => (bmi: Bmi, w: ScenarioWorld) =>
  bmi.copyImage({ project: w.project, image: "golden", destProject: w.project, destName: name });

/**
 * Every multi-step operation, written once for both environments (issue 20.8): the unit suite
 * runs them on the in-memory BMI, the reliability suite on the real lab, each with a failure (or
 * an abort) at every step and the state compared before and after.
 */
export const OPERATION_SCENARIOS: readonly OperationScenario[] = [
  { name: "create project", run: (bmi, _w, o) => bmi.createProject({ name: "scenario-p9" }, o) },
  {
    name: "import image",
    needs: ["source"],
    run: (bmi, w, o) =>
      bmi.importImage({ project: w.otherProject, source: w.source ?? "", name: "imported" }, o),
  },
  { name: "create disk", run: (bmi, w, o) => bmi.createDisk(disk(w), o) },
  {
    name: "delete disk",
    prepare: (bmi, w) => bmi.createDisk(disk(w)),
    run: (bmi, w, o) => bmi.deleteDisk({ project: w.project, disk: "d1" }, o),
  },
  { name: "provision from image", run: (bmi, w, o) => bmi.provision({ ...disk(w), node: w.node }, o) },
  {
    name: "provision an existing disk",
    prepare: (bmi, w) => bmi.createDisk(disk(w)),
    run: (bmi, w, o) => bmi.provision({ project: w.project, node: w.node, disk: "d1" }, o),
  },
  {
    name: "deprovision",
    prepare: provisioned,
    run: (bmi, w, o) => bmi.deprovision({ project: w.project, node: w.node }, o),
  },
  {
    name: "deprovision and delete the disk",
    prepare: provisioned,
    run: (bmi, w, o) => bmi.deprovision({ project: w.project, node: w.node, deleteDisk: true }, o),
  },
  {
    name: "snapshot disk",
    prepare: (bmi, w) => bmi.createDisk(disk(w)),
    run: (bmi, w, o) => bmi.snapshotDisk({ project: w.project, disk: "d1", snapshot: "s1" }, o),
  },
  {
    name: "copy image",
    run: (bmi, w, o) =>
      bmi.copyImage({ project: w.project, image: "golden", destProject: w.otherProject }, o),
  },
  {
    name: "move image",
    prepare: copyOfGolden("m1"),
    run: (bmi, w, o) => bmi.moveImage({ project: w.project, image: "m1", destProject: w.otherProject }, o),
  },
  {
    name: "export image",
    needs: ["exportName"],
    run: (bmi, w, o) =>
      bmi.exportImage({ project: w.project, image: "golden", rbdName: w.exportName ?? "" }, o),
  },
  {
    name: "remove image",
    prepare: copyOfGolden("r1"),
    run: (bmi, w, o) => bmi.removeImage({ project: w.project, image: "r1" }, o),
  },
  { name: "mount image", run: (bmi, w, o) => bmi.mountImage({ project: w.project, image: "golden" }, o) },
  {
    name: "unmount image",
    prepare: (bmi, w) => bmi.mountImage({ project: w.project, image: "golden" }),
    run: (bmi, w, o) => bmi.unmountImage({ project: w.project, image: "golden" }, o),
  },
];

/** The scenarios a world can run (those whose `needs` it provides). */
export const scenariosFor = (world: ScenarioWorld): OperationScenario[] =>
  OPERATION_SCENARIOS.filter((s) => (s.needs ?? []).every((field) => world[field] !== undefined));

/**
 * Saga steps after an operation's point of no return: cleanups whose failure does not fail the
 * operation (it is journalled for `reconcile()` instead).
 */
export const CLEANUP_STEPS: ReadonlySet<string> = new Set([
  "unprotect source snapshot",
  "remove source snapshot",
  "unprotect disk snapshot",
  "remove disk snapshot",
]);

/** Scenarios that change rows only: no driver call to inject a fault into. */
export const ROWS_ONLY_SCENARIOS: ReadonlySet<string> = new Set(["create project", "move image"]);

/**
 * The environments named by `BMI_DRIVERS` (comma-separated, e.g. `memory,lab`; unset or empty:
 * all of them), in the order given. An unknown name is an error, never a silently empty run.
 */
export function selectEnvironments<T>(
  available: Record<string, () => T>,
  env: Record<string, string | undefined> = process.env,
): T[] {
  const names = (env.BMI_DRIVERS ?? "")
    .split(",")
    .map((name) => name.trim())
    .filter((name) => name !== "");
  const wanted = names.length > 0 ? names : Object.keys(available);
  return wanted.map((name) => {
    const create = available[name];
    if (!create) {
      throw new Error(
        `BMI_DRIVERS: unknown environment ${name} (known: ${Object.keys(available).join(", ")})`,
      );
    }
    return create();
  });
}
