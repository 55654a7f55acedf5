export { type CephStorageOptions, createCephStorage, registerCephStorage } from "./ceph-storage.js";
export * from "./from-config.js";
export type { LibrbdStep } from "./librbd-errors.js";
export { classifyLibrbdFailure, librbdError } from "./librbd-errors.js";
export { createLibrbdStorage, type LibrbdStorage, type LibrbdStorageOptions } from "./librbd-storage.js";
export { classifyRbdFailure, type RbdFailure, rbdError, rbdReason } from "./rbd-errors.js";
