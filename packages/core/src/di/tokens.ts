/** DI tokens. Drivers register their objects under these with `container.registerInstance`. */
export const TOKENS = {
  storage: Symbol.for("@bmi/StorageDriver"),
  export: Symbol.for("@bmi/ExportDriver"),
  boot: Symbol.for("@bmi/BootDriver"),
  isolation: Symbol.for("@bmi/IsolationDriver"),
  /** Optional, like `createBmi`'s `power`: nodes' BMCs (HIL's OBM API in the stock wiring). */
  power: Symbol.for("@bmi/PowerDriver"),
  store: Symbol.for("@bmi/Store"),
  settings: Symbol.for("@bmi/BmiSettings"),
  logger: Symbol.for("@bmi/Logger"),
  runner: Symbol.for("@bmi/CommandRunner"),
} as const;
