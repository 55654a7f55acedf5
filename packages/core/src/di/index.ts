// The runtime container (tsyringe, and the global reflect-metadata polyfill it needs) is on the
// `@bmi/core/di` subpath, so importing `@bmi/core` installs no global. Drivers need only the
// tokens and the container's type to register themselves.
export type { DependencyContainer } from "tsyringe";
export * from "./registrar.js";
export * from "./tokens.js";
