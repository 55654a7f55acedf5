import type { Provisioning } from "../../domain/model.js";
import type { BootSpec } from "../../ports/index.js";

/** The boot files a provisioning record stands for (to write them again or undo their removal). */
export const bootSpecOf = (record: Provisioning): BootSpec => ({
  node: record.node,
  macs: [record.mac],
  target: record.target,
  firmware: record.firmware,
  label: record.disk,
});
