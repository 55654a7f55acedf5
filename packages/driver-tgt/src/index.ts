export * from "./from-config.js";
export {
  isInitiatorName,
  parseTargets,
  type TgtLun,
  type TgtSession,
  type TgtTarget,
} from "./show-parser.js";
export {
  createTgtExport,
  registerTgtExport,
  type TgtExportDriver,
  type TgtExportOptions,
} from "./tgt-export.js";
