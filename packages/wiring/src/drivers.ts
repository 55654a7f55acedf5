import {
  type BmiConfig,
  type BootDriver,
  type CommandRunner,
  createCommandLimit,
  createExecaRunner,
  type ExportDriver,
  type IsolationDriver,
  type Logger,
  limitRunner,
  type PowerDriver,
  type StepHook,
  type StorageDriver,
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
  /** Passed to the store, the facade and every driver that logs (default: silent). */
  logger?: Logger | undefined;
  /** Where `HIL_USERNAME` / `HIL_PASSWORD` come from when the config has no credentials (default `process.env`). */
  env?: Record<string, string | undefined> | undefined;
  /** Create the database if `[db] path` does not exist (only `bmi db init` and labs do). */
  createStore?: boolean | undefined;
  /** Passed to `createBmi`: a test hook run before every saga step (throw to inject a failure). */
  beforeStep?: StepHook | undefined;
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
  const env = options.env ?? process.env;
  const runner = sharedRunner(config);
  const factories: { [K in keyof ConfigDrivers]: () => ConfigDrivers[K] } = {
    storage: () => createStorageFromConfig(config, runner("storage", config.fs.timeout_ms)),
    export: () =>
      createTgtExport(
        tgtOptionsFromConfig(config, { logger, runner: runner("export", config.iscsi.timeout_ms) }),
      ),
    boot: () => createPxeBoot(pxeOptionsFromConfig(config)),
    isolation: () => createHilIsolation({ ...hilOptionsFromConfig(config, env), logger }),
    power: () => createHilPower({ ...powerOptionsFromConfig(config, env), logger }),
  };
  const keys = only ?? (Object.keys(factories) as (keyof ConfigDrivers)[]);
  return Object.fromEntries(keys.map((key) => [key, factories[key]()]));
}

/**
 * Runners for the drivers that run commands: rbd and tgtadm share one bound on running processes
 * (`[bmi] concurrency`, CON-4), so a batch cannot start more of them than the host takes.
 */
function sharedRunner(config: BmiConfig) {
  const limit = createCommandLimit(config.bmi.concurrency);
  return (subsystem: "storage" | "export", timeoutMs: number): CommandRunner =>
    limitRunner(createExecaRunner({ subsystem, timeoutMs }), limit);
}
