import type { BmiSettings } from "../config/settings.js";
import { defaultSettings } from "../config/settings.js";
import type { AddressRange } from "../domain/addresses.js";
import type { Logger } from "../log/index.js";
import { type Bmi, createBmi } from "../ops/bmi.js";
import type { StepHook } from "../ops/saga.js";
import { openSqliteStore, type SqliteStore } from "../store/index.js";
import { createMemoryBoot, type MemoryBoot } from "./memory/boot.js";
import { createMemoryExport, type MemoryExportDriver } from "./memory/export.js";
import {
  createMemoryIsolation,
  type MemoryIsolation,
  type MemoryIsolationOptions,
} from "./memory/isolation.js";
import { createMemoryPower, type MemoryPower } from "./memory/power.js";
import { createMemoryStorage, type MemoryStorage } from "./memory/storage.js";
import { type CapturedState, captureState } from "./state.js";

export interface MemoryBmiOptions {
  /** The isolation service's nodes and networks (who owns which node, their NICs). */
  isolation: MemoryIsolationOptions;
  settings?: Partial<BmiSettings>;
  logger?: Logger;
  /** Run before every saga step; throw from it to inject a failure. Changeable later with `setBeforeStep`. */
  beforeStep?: StepHook;
  /** The store (default: a new in-memory SQLite store); pass one to share it or to wrap it. */
  store?: SqliteStore;
  /** Fixed node addresses for the boot driver (with `settings.iscsi.perNode`: per-node access). */
  nodeAddresses?: AddressRange;
}

export interface MemoryBmi {
  bmi: Bmi;
  storage: MemoryStorage;
  export: MemoryExportDriver;
  boot: MemoryBoot;
  isolation: MemoryIsolation;
  /** A BMC for every node of the isolation service, all powered off at first. */
  power: MemoryPower;
  /** The store: by default an in-memory SQLite store (the real store, on `:memory:`). */
  store: SqliteStore;
  /** Everything the operations can change, for "nothing left behind" assertions. */
  state(): Promise<CapturedState>;
  setBeforeStep(hook: StepHook | undefined): void;
}

/**
 * A whole BMI on in-memory drivers and an in-memory store: for unit tests of code that uses BMI
 * (yours and ours). No daemons, no files.
 */
export function createMemoryBmi(options: MemoryBmiOptions): MemoryBmi {
  const nodes = options.isolation.nodes.map((n) => n.name);
  const drivers = {
    storage: createMemoryStorage(),
    export: createMemoryExport(),
    boot: createMemoryBoot(options.nodeAddresses ? { nodeAddresses: options.nodeAddresses } : {}),
    isolation: createMemoryIsolation(options.isolation),
    power: createMemoryPower({ nodes }),
  };
  const settings = defaultSettings(options.settings);
  const store =
    options.store ??
    openSqliteStore({ path: ":memory:", uid: settings.uid, snapshotName: settings.snapshotName });
  let hook = options.beforeStep;
  const bmi = createBmi({
    ...drivers,
    store,
    settings,
    logger: options.logger,
    beforeStep: (info) => hook?.(info),
  });
  return {
    bmi,
    ...drivers,
    store,
    state: () => captureState({ ...drivers, nodes, store }),
    setBeforeStep: (h) => {
      hook = h;
    },
  };
}
