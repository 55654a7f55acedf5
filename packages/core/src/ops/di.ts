import type { BmiSettings } from "../config/settings.js";
import type { DependencyContainer } from "../di/index.js";
import { TOKENS } from "../di/index.js";
import type { Logger } from "../log/index.js";
import type { Store } from "../store/index.js";
import { type Bmi, type CreateBmiOptions, createBmi } from "./bmi.js";
import type { Drivers } from "./context.js";

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
    storage: container.resolve<Drivers["storage"]>(TOKENS.storage),
    export: container.resolve<Drivers["export"]>(TOKENS.export),
    boot: container.resolve<Drivers["boot"]>(TOKENS.boot),
    isolation: container.resolve<Drivers["isolation"]>(TOKENS.isolation),
    power: optional<NonNullable<Drivers["power"]>>(TOKENS.power),
    store: container.resolve<Store>(TOKENS.store),
    settings: optional<BmiSettings>(TOKENS.settings),
    logger: optional<Logger>(TOKENS.logger),
    ...extra,
  });
}
