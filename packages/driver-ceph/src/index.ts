export { type CephStorageOptions, createCephStorage, registerCephStorage } from "./ceph-storage.js";
export * from "./from-config.js";
export { classifyRbdFailure, type RbdFailure, rbdError, rbdReason } from "./rbd-errors.js";
