import {
  type BmiConfig,
  type BmiSettings,
  type DependencyContainer,
  type SqliteStore,
  settingsFromConfig,
  silentLogger,
  TOKENS,
} from "@bmi/core";
import { type ConfigDrivers, createDriversFromConfig, type WiringOptions } from "./drivers.js";
import { openStoreFromConfig } from "./store.js";

export interface RegisteredFromConfig {
  drivers: ConfigDrivers;
  store: SqliteStore;
  settings: BmiSettings;
}

/**
 * Registers a deployment's drivers, store, settings and logger under core's `TOKENS`, wired
 * exactly as `createBmiFromConfig` wires them (same command limit, same logger); then
 * `resolveBmi(container)` builds the facade, and a child container can override one registration.
 * The resolved BMI's `close()` closes what was registered here.
 */
export function registerFromConfig(
  container: DependencyContainer,
  config: BmiConfig,
  options: WiringOptions = {},
): RegisteredFromConfig {
  const logger = options.logger ?? silentLogger;
  const settings = settingsFromConfig(config);
  const drivers = createDriversFromConfig(config, options);
  const store = openStoreFromConfig(config, options);
  container.registerInstance(TOKENS.storage, drivers.storage);
  container.registerInstance(TOKENS.export, drivers.export);
  container.registerInstance(TOKENS.boot, drivers.boot);
  container.registerInstance(TOKENS.isolation, drivers.isolation);
  container.registerInstance(TOKENS.power, drivers.power);
  container.registerInstance(TOKENS.store, store);
  container.registerInstance(TOKENS.settings, settings);
  container.registerInstance(TOKENS.logger, logger);
  return { drivers, store, settings };
}
