import {
  type BmiConfig,
  openSqliteStore,
  type SqliteStore,
  settingsFromConfig,
  silentLogger,
} from "@bmi/core";
import type { WiringOptions } from "./drivers.js";

/** The SQLite store at `[db] path`, with the config's image-name prefix and snapshot name. */
export function openStoreFromConfig(config: BmiConfig, options: WiringOptions = {}): SqliteStore {
  const settings = settingsFromConfig(config);
  return openSqliteStore({
    path: config.db.path,
    uid: settings.uid,
    snapshotName: settings.snapshotName,
    logger: options.logger ?? silentLogger,
    create: options.createStore === true,
  });
}
