// reflect-metadata must load before tsyringe, or tsyringe throws "requires a reflect polyfill".
import "reflect-metadata";

export { container, type DependencyContainer, inject, injectable } from "tsyringe";
export * from "./tokens.js";
