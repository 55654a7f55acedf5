export { SCHEMA_VERSION } from "./sqlite/schema.js";
export { openSqliteStore, type SqliteStore, type SqliteStoreOptions } from "./sqlite/index.js";
export * from "./types.js";
