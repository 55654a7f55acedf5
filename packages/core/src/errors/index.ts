export * from "./bmi-error.js";
