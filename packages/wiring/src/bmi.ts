import {
  type Bmi,
  type BmiConfig,
  type BmiSettings,
  createBmi,
  type SqliteStore,
  settingsFromConfig,
  silentLogger,
} from "@bmi/core";
import { type ConfigDrivers, createDriversFromConfig, type WiringOptions } from "./drivers.js";
import { openStoreFromConfig } from "./store.js";

export interface WiredBmi extends AsyncDisposable {
  bmi: Bmi;
  store: SqliteStore;
  drivers: ConfigDrivers;
  settings: BmiSettings;
  config: BmiConfig;
  /** `bmi.close()`: closes the drivers that hold connections (the librbd back end's) and the database. */
  close(): Promise<void>;
}

/**
 * One BMI wired from a loaded config exactly as a deployment runs it: the SQLite store from
 * `[db] path`, the Ceph, tgt, PXE and HIL (isolation and power) drivers, the command limit and
 * the logger. The CLI, `bmi serve`, the lab and the examples all use this.
 */
export function createBmiFromConfig(config: BmiConfig, options: WiringOptions = {}): WiredBmi {
  const logger = options.logger ?? silentLogger;
  const settings = settingsFromConfig(config);
  const store = openStoreFromConfig(config, options);
  try {
    const drivers = createDriversFromConfig(config, options);
    const bmi = createBmi({ ...drivers, store, settings, logger, beforeStep: options.beforeStep });
    return { bmi, store, drivers, settings, config, close: bmi.close, [Symbol.asyncDispose]: bmi.close };
  } catch (error) {
    // A wiring refused by createBmi's capability checks leaves nothing open: the drivers connect
    // lazily (librbd at its first call), so the database is all there is to close.
    store.close();
    throw error;
  }
}
