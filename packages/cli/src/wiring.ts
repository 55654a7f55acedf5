import {
  type Bmi,
  type BmiConfig,
  type BmiSettings,
  type BootDriver,
  createBmi,
  createCommandLimit,
  createExecaRunner,
  type ExportDriver,
  type IsolationDriver,
  type Logger,
  limitRunner,
  openSqliteStore,
  type PowerDriver,
  type SqliteStore,
  type StorageDriver,
  settingsFromConfig,
  silentLogger,
} from "@bmi/core";
import { createStorageFromConfig } from "@bmi/driver-ceph";
import {
  createHilIsolation,
  createHilPower,
  type HilClient,
  hilOptionsFromConfig,
  powerOptionsFromConfig,
} from "@bmi/driver-hil";
import { createPxeBoot, pxeOptionsFromConfig } from "@bmi/driver-pxe";
import { createTgtExport, tgtOptionsFromConfig } from "@bmi/driver-tgt";

export interface WiringOptions {
  logger?: Logger;
  /** Where `HIL_USERNAME` / `HIL_PASSWORD` come from when the config has no credentials. */
  env?: Record<string, string | undefined>;
  /** Create the database if `[db] path` does not exist (only `bmi db init` and labs do). */
  createStore?: boolean;
}

export interface ConfigDrivers {
  storage: StorageDriver;
  export: ExportDriver;
  boot: BootDriver;
  isolation: IsolationDriver & { client: HilClient };
  /** Nodes' power through HIL's OBM (HIL ≥ 0.4 redirects each call to the node's obmd). */
  power: PowerDriver;
}

/** The drivers of a deployment, each from its section of `bmi_config.cfg`. */
export function createDriversFromConfig(config: BmiConfig, options?: WiringOptions): ConfigDrivers;
/** Only the named drivers (the others are left out), e.g. for checks that must not depend on each other. */
export function createDriversFromConfig<K extends keyof ConfigDrivers>(
  config: BmiConfig,
  options: WiringOptions,
  only: readonly K[],
): Pick<ConfigDrivers, K>;
export function createDriversFromConfig(
  config: BmiConfig,
  options: WiringOptions = {},
  only?: readonly (keyof ConfigDrivers)[],
): Partial<ConfigDrivers> {
  const logger = options.logger ?? silentLogger;
  // rbd and tgtadm share one bound on running processes ([bmi] concurrency, CON-4).
  const limit = createCommandLimit(config.bmi.concurrency);
  const runner = (subsystem: "storage" | "export", timeoutMs: number) =>
    limitRunner(createExecaRunner({ subsystem, timeoutMs }), limit);
  const factories: { [K in keyof ConfigDrivers]: () => ConfigDrivers[K] } = {
    storage: () => createStorageFromConfig(config, runner("storage", config.fs.timeout_ms)),
    export: () =>
      createTgtExport(
        tgtOptionsFromConfig(config, { logger, runner: runner("export", config.iscsi.timeout_ms) }),
      ),
    boot: () => createPxeBoot(pxeOptionsFromConfig(config)),
    isolation: () =>
      createHilIsolation({ ...hilOptionsFromConfig(config, options.env ?? process.env), logger }),
    power: () => createHilPower({ ...powerOptionsFromConfig(config, options.env ?? process.env), logger }),
  };
  const keys = only ?? (Object.keys(factories) as (keyof ConfigDrivers)[]);
  return Object.fromEntries(keys.map((key) => [key, factories[key]()]));
}

export interface WiredBmi {
  bmi: Bmi;
  store: SqliteStore;
  drivers: ConfigDrivers;
  settings: BmiSettings;
  config: BmiConfig;
  /** Closes the database. The drivers hold no open connections. */
  close(): void;
}

/**
 * One BMI wired from a loaded config exactly as a deployment runs it: the SQLite store from
 * `[db] path` and the Ceph, tgt, PXE and HIL (isolation and power) drivers. Every CLI command and the server use this.
 */
export function createBmiFromConfig(config: BmiConfig, options: WiringOptions = {}): WiredBmi {
  const logger = options.logger ?? silentLogger;
  const settings = settingsFromConfig(config);
  const drivers = createDriversFromConfig(config, options);
  const store = openSqliteStore({
    path: config.db.path,
    uid: settings.uid,
    snapshotName: settings.snapshotName,
    logger,
    create: options.createStore === true,
  });
  try {
    const bmi = createBmi({ ...drivers, store, settings, logger });
    return { bmi, store, drivers, settings, config, close: () => store.close() };
  } catch (error) {
    store.close();
    throw error;
  }
}
