export * from "./files.js";
export * from "./from-config.js";
export * from "./pxe-boot.js";
export * from "./tftp-root.js";
