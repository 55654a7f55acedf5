// Example: a BMI from a bmi_config.cfg, wired as the CLI and `bmi serve` wire it (the stock
// drivers, the SQLite store, the shared command limit, your logger). This is what the README's
// quick start shows; the other examples start from it.
import { type Logger, loadConfig } from "@bmi/core";
import { createBmiFromConfig, type WiredBmi } from "@bmi/wiring";

/**
 * A BMI wired from `configPath` (default: `$BMI_CONFIG`, else /etc/bmi/bmiconfig.cfg). Close it
 * when done (`await close()`, or `await using wired = bmiFromConfig()`).
 */
export function bmiFromConfig(configPath?: string, logger?: Logger): WiredBmi {
  const { config, warnings } = loadConfig(configPath === undefined ? {} : { path: configPath });
  for (const warning of warnings) logger?.warn(warning);
  return createBmiFromConfig(config, { logger });
}
