export { SCHEMA_VERSION } from "./schema.js";
export { openSqliteStore, type SqliteStore, type SqliteStoreOptions } from "./sqlite-store.js";
export * from "./types.js";
