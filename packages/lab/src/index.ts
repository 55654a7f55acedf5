export * from "./bmi-lab.js";
export * from "./boot-image.js";
export * from "./ceph.js";
export * from "./debian-image.js";
export * from "./process.js";
export * from "./qemu.js";
export * from "./qmp-machine.js";
export * from "./tgtd.js";
