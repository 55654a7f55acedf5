export { openSqliteStore, type SqliteStore, type SqliteStoreOptions } from "./sqlite/index.js";
export { SCHEMA_VERSION } from "./sqlite/schema.js";
export * from "./types.js";
