// Saga step helpers shared by the operations: each pairs a driver call with its undo.
export * from "./boot.js";
export * from "./export.js";
export * from "./images.js";
export * from "./node-access.js";
export * from "./snapshots.js";
