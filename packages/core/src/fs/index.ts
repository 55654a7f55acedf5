export * from "./safe-path.js";
