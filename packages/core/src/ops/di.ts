import type { BmiSettings } from "../config/settings.js";
import type { DependencyContainer } from "../di/index.js";
import { TOKENS } from "../di/index.js";
import type { Logger } from "../log/index.js";
import type {
  BootDriver,
  ExportDriver,
  IsolationDriver,
  PowerDriver,
  StorageDriver,
} from "../ports/index.js";
import type { Store } from "../store/index.js";
import { type Bmi, type CreateBmiOptions, createBmi } from "./bmi.js";

/**
 * Builds the facade from a tsyringe container where drivers registered themselves under
 * `TOKENS` (each driver package's `registerXxx(container, options)`). Power, settings and logger
 * are optional registrations.
 */
export function resolveBmi(
  container: DependencyContainer,
  extra: Pick<CreateBmiOptions, "beforeStep"> = {},
): Bmi {
  const optional = <T>(token: symbol): T | undefined =>
    container.isRegistered(token, true) ? container.resolve<T>(token) : undefined;
  return createBmi({
    storage: container.resolve<StorageDriver>(TOKENS.storage),
    export: container.resolve<ExportDriver>(TOKENS.export),
    boot: container.resolve<BootDriver>(TOKENS.boot),
    isolation: container.resolve<IsolationDriver>(TOKENS.isolation),
    power: optional<PowerDriver>(TOKENS.power),
    store: container.resolve<Store>(TOKENS.store),
    settings: optional<BmiSettings>(TOKENS.settings),
    logger: optional<Logger>(TOKENS.logger),
    ...extra,
  });
}
