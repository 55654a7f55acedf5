import type { BmiSettings } from "../config/settings.js";
import type { Image, Project } from "../domain/model.js";
import { BmiError } from "../errors/index.js";
import type { Logger } from "../log/index.js";
import type {
  BootDriver,
  ExportDriver,
  IsolationDriver,
  PowerDriver,
  StorageDriver,
} from "../ports/index.js";
import type { Store } from "../store/index.js";
import type { EventHub } from "./events.js";
import { withLocks } from "./locks.js";
import { runSaga, type Saga, type StepHook } from "./saga.js";

export interface Drivers {
  storage: StorageDriver;
  export: ExportDriver;
  boot: BootDriver;
  isolation: IsolationDriver;
  /** Optional: nodes' power through their BMCs (HIL's OBM). Without it BMI never powers a node. */
  power?: PowerDriver;
}

/** Everything an operation needs; built once by `createBmi`. */
export interface BmiContext {
  drivers: Drivers;
  store: Store;
  settings: BmiSettings;
  logger: Logger;
  events: EventHub;
  beforeStep?: StepHook;
}

/** Runs `body` as a saga while holding `locks`. */
export function operation<T>(
  ctx: BmiContext,
  name: string,
  subject: Record<string, unknown>,
  locks: string[],
  body: (saga: Saga) => Promise<T>,
): Promise<T> {
  return withLocks(ctx.store, locks, ctx.settings.lockLeaseMs, () =>
    runSaga(
      { store: ctx.store, logger: ctx.logger, events: ctx.events, beforeStep: ctx.beforeStep },
      name,
      subject,
      body,
    ),
  );
}

export async function requireProject(ctx: BmiContext, name: string): Promise<Project> {
  const project = await ctx.store.projects.get(name);
  if (!project)
    throw new BmiError("not_found", `project ${name} not found`, {
      subsystem: "store",
      details: { project: name },
    });
  return project;
}

export async function requireImage(
  ctx: BmiContext,
  project: Project,
  name: string,
  what = "image",
): Promise<Image> {
  const image = await ctx.store.images.get(project.id, name);
  if (!image) {
    throw new BmiError("not_found", `${what} ${name} not found in project ${project.name}`, {
      subsystem: "store",
      details: { project: project.name, [what]: name },
    });
  }
  return image;
}

export function requireKind(image: Image, kinds: Image["kind"][], project: Project, operation: string): void {
  if (!kinds.includes(image.kind)) {
    throw new BmiError(
      "invalid_input",
      `${image.name} in project ${project.name} is a ${image.kind}; ${operation} needs a ${kinds.join(" or ")}`,
      { details: { image: image.name, kind: image.kind } },
    );
  }
}
