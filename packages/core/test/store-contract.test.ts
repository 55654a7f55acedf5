import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openSqliteStore } from "../src/index.js";
import { testStore } from "../src/testing/contracts/index.js";

const settings = { uid: "1", snapshotName: "bmi_created_snapshot" };

testStore({
  name: "SQLite :memory:",
  create: async () => openSqliteStore({ path: ":memory:", ...settings }),
});

let dir: string | undefined;
testStore({
  name: "SQLite file",
  create: async () => {
    dir = mkdtempSync(join(tmpdir(), "bmi-store-contract-"));
    return openSqliteStore({ path: join(dir, "bmi.db"), create: true, ...settings });
  },
  cleanup: () => {
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  },
});
