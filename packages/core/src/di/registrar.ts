import type { DependencyContainer } from "tsyringe";

/**
 * A driver package's `registerXxx(container, options)`: builds the driver with its factory and
 * registers the instance under a core token (`TOKENS.storage`...), returning it. One helper, so
 * every driver registers the same way.
 */
export function registrar<Options, Driver>(
  token: symbol,
  create: (options: Options) => Driver,
): (container: DependencyContainer, options: Options) => Driver {
  return (container, options) => {
    const driver = create(options);
    container.registerInstance(token, driver);
    return driver;
  };
}
