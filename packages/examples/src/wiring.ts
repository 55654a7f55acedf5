// Example: wire BMI from a bmi_config.cfg with plain factories, no container. This is what the
// README's quick start shows; the other examples start from it.
import { type Bmi, createBmi, type Logger, loadConfig, openSqliteStore, settingsFromConfig } from "@bmi/core";
import { cephOptionsFromConfig, createCephStorage } from "@bmi/driver-ceph";
import { createHilIsolation, hilOptionsFromConfig } from "@bmi/driver-hil";
import { createPxeBoot, pxeOptionsFromConfig } from "@bmi/driver-pxe";
import { createTgtExport, tgtOptionsFromConfig } from "@bmi/driver-tgt";

/** A BMI wired from `configPath` (default: `$BMI_CONFIG`, else /etc/bmi/bmiconfig.cfg). Close it when done. */
export function bmiFromConfig(configPath?: string, logger?: Logger): { bmi: Bmi; close: () => void } {
  const { config, warnings } = loadConfig({ path: configPath });
  for (const warning of warnings) logger?.warn(warning);
  const settings = settingsFromConfig(config);
  const store = openSqliteStore({
    path: config.db.path,
    uid: settings.uid,
    snapshotName: settings.snapshotName,
  });
  const bmi = createBmi({
    storage: createCephStorage(cephOptionsFromConfig(config)),
    export: createTgtExport(tgtOptionsFromConfig(config, { logger })),
    boot: createPxeBoot(pxeOptionsFromConfig(config)),
    isolation: createHilIsolation({ ...hilOptionsFromConfig(config), logger }),
    store,
    settings,
    logger,
  });
  return { bmi, close: () => store.close() };
}
