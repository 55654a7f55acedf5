/**
 * Issue 22: data safety under operator mistakes, contention and shutdown, on the in-memory BMI
 * (the defects that need real daemons are tested in test/integration and test/reliability).
 * Each test reproduces a defect found on the real lab and fails without its fix.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it, vi } from "vitest";
import {
  BmiError,
  type BmiEvent,
  createBmi,
  type NewJournalEntry,
  openSqliteStore,
  type SqliteStore,
} from "../src/index.js";
import { createMemoryBmi } from "../src/testing/index.js";
import { type Env, setup, thrown } from "./ops-helpers.js";

const PROVISION = { project: "p1", node: "n1", disk: "d1", image: "golden" } as const;

/** A second BMI on the same drivers with a store of its own: a typo in `[db] path`, a restored backup. */
function secondBmi(env: Env, store: SqliteStore) {
  return createBmi({
    storage: env.storage,
    export: env.exporter,
    boot: env.boot,
    isolation: env.isolation,
    store,
    settings: env.settings,
  });
}

describe("22.1 repair destroys only what this database proves it made", () => {
  it("an empty database on the same drivers refuses repair, twice, and removes nothing", async () => {
    const env = await setup();
    await env.bmi.provision(PROVISION);
    const before = await env.state();
    const empty = openSqliteStore({
      path: ":memory:",
      uid: env.settings.uid,
      snapshotName: env.settings.snapshotName,
    });
    const other = secondBmi(env, empty);
    for (let run = 0; run < 2; run++) {
      const refused = await thrown(() => other.reconcile({ repair: true }));
      expect(refused.code).toBe("conflict");
      expect(refused.message).toMatch(/no admin project.*bmi db init/s);
    }
    await other.createProject({ name: "bmi_infra" });
    const restored = await thrown(() => other.reconcile({ repair: true }));
    expect(restored.message).toMatch(/never allocated an id above/);
    // Reported, never removed: the clone, the target and the boot files are someone's live disk.
    const report = await other.reconcile();
    expect(new Set(report.drift.map((d) => d.kind))).toEqual(new Set(["unknown"]));
    expect(await env.state()).toEqual(before);
  });

  it("a missing database file is never created by opening it, and the error names the path", () => {
    const dir = mkdtempSync(join(tmpdir(), "bmi-store-"));
    try {
      const path = join(dir, "bmi.db");
      const error = (() => {
        try {
          openSqliteStore({ path, uid: "1", snapshotName: "s" });
        } catch (e) {
          return e as BmiError;
        }
        throw new Error("expected openSqliteStore to throw");
      })();
      expect(error.code).toBe("not_found");
      expect(error.message).toContain(path);
      expect(() =>
        openSqliteStore({ path, uid: "1", snapshotName: "s", create: true }).close(),
      ).not.toThrow();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a path that is not an SQLite database says so, and names the path", () => {
    const dir = mkdtempSync(join(tmpdir(), "bmi-store-"));
    try {
      const path = join(dir, "bmi.db");
      writeFileSync(path, "[db]\npath = /var/lib/bmi/bmi.db\n".repeat(200)); // a config where the DB should be
      let error: BmiError | undefined;
      try {
        openSqliteStore({ path, uid: "1", snapshotName: "s" }).close();
      } catch (e) {
        error = e as BmiError;
      }
      expect(error?.message).toMatch(/not an SQLite database/);
      expect(error?.message).toContain(path);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("even what the journal proves is ours stays while a target has sessions or its node is on", async () => {
    const env = await setup();
    await env.bmi.createProject({ name: "bmi_infra" });
    // A provision whose undo cannot remove the target nor the boot files: they are proven ours.
    env.setHook(({ step }) => {
      if (step === "record provisioning") throw new BmiError("internal", "injected");
    });
    env.exporter.failNext("unexport", new BmiError("unavailable", "tgtd is down"));
    env.boot.failNext("remove", new BmiError("unavailable", "TFTP root unmounted"));
    await thrown(() => env.bmi.provision(PROVISION));
    env.setHook(undefined);
    const [target] = await env.exporter.list();
    expect(target).toBeDefined();
    env.exporter.setSessions(target?.target ?? "", 1);
    env.power.setPower("n1", "on");

    const held = await env.bmi.reconcile({ repair: true });
    // The failed provision's undo stays open (incomplete_undo) while its leftovers cannot go.
    expect(held.failed.map((f) => f.drift.kind).sort()).toEqual([
      "incomplete_undo",
      "orphan_boot_files",
      "orphan_target",
    ]);
    expect(await env.exporter.list()).toHaveLength(1);
    expect(await env.boot.read("n1")).not.toBeNull();

    // A BMC that does not answer keeps them too; HIL saying the node's OBM is off (no power
    // management at all) leaves the journal's proof to decide.
    env.exporter.setSessions(target?.target ?? "", 0);
    env.power.failNext("powerState", new BmiError("unavailable", "obmd is down", { subsystem: "power" }));
    expect((await env.bmi.reconcile({ repair: true })).failed.map((f) => f.drift.kind)).toContain(
      "orphan_boot_files",
    );
    expect(await env.boot.read("n1")).not.toBeNull();
    env.power.failNext("powerState", new BmiError("conflict", "OBM is not enabled", { subsystem: "power" }));
    const repaired = await env.bmi.reconcile({ repair: true });
    expect(repaired.failed).toEqual([]);
    expect((await env.bmi.reconcile()).drift).toEqual([]);
    expect(await env.exporter.list()).toEqual([]);
    expect(await env.boot.read("n1")).toBeNull();
  });
});

describe("22.3 a node HIL gave to another project", () => {
  async function moved(): Promise<Env> {
    const env = await setup();
    await env.bmi.createProject({ name: "bmi_infra" });
    await env.bmi.provision(PROVISION);
    env.isolation.setOwner("n1", "p2");
    return env;
  }

  it("is reported as ownership_changed and repaired by deprovisioning it, never by re-attaching", async () => {
    const env = await moved();
    expect((await thrown(() => env.bmi.deprovision({ project: "p1", node: "n1" }))).code).toBe("forbidden");
    const report = await env.bmi.reconcile();
    expect(report.drift.map((d) => [d.kind, d.subject])).toEqual([["ownership_changed", "n1"]]);
    const repaired = await env.bmi.reconcile({ repair: true });
    expect(repaired.repaired.map((d) => d.kind)).toEqual(["ownership_changed"]);
    expect(await env.boot.read("n1")).toBeNull();
    expect(await env.isolation.attachments("n1")).toEqual([]);
    expect(await env.bmi.listProvisionings()).toEqual([]);
    // The disk stays in its own project, still exported, for the old tenant to keep or delete.
    expect((await env.bmi.listDisks({ project: "p1" })).map((d) => d.name)).toEqual(["d1"]);
    expect((await env.bmi.reconcile()).drift).toEqual([]);
  });

  it("can be released by an administrator with force", async () => {
    const env = await moved();
    await env.bmi.deprovision({ project: "p1", node: "n1", force: true });
    expect(await env.boot.read("n1")).toBeNull();
    expect(await env.isolation.attachments("n1")).toEqual([]);
    expect((await env.bmi.reconcile()).drift).toEqual([]);
  });
});

describe("22.4 lock leases", () => {
  it("are renewed while an operation outlives its lease, so a second provision of the node is refused", async () => {
    let release: () => void = () => {};
    const lease = 500;
    const env = await setup({ settings: { lockLeaseMs: lease } });
    let held = false;
    env.setHook(async ({ operation, step }) => {
      if (operation !== "provision" || step !== "write boot files" || held) return;
      held = true; // only the first provision waits here; a second one that got through fails the test
      await new Promise<void>((resolve) => {
        release = resolve;
      });
    });
    // The clock and the renewal timer are simulated: five leases pass in order, each renewal run
    // before the clock moves on. With real time, a loaded machine that starved the renewal timer
    // for a third of a lease made this test fail without any defect.
    vi.useFakeTimers({ toFake: ["Date", "setInterval", "clearInterval"], now: Date.now() });
    const first = env.bmi.provision(PROVISION);
    try {
      while (!held) await sleep(5);
      await vi.advanceTimersByTimeAsync(5 * lease);
      const second = await thrown(() => env.bmi.provision({ ...PROVISION, disk: "d2" }));
      expect(second.code).toBe("conflict");
      expect(second.message).toMatch(/node n1 is being changed by another operation/);
    } finally {
      release();
      vi.useRealTimers();
    }
    expect((await first).disk).toBe("d1");
    expect((await env.bmi.listProvisionings()).map((p) => p.disk)).toEqual(["d1"]);
  });

  it("fence a holder whose lock was taken over: its writes are refused and it is undone", async () => {
    const env = await setup();
    const intruder = { id: "intruder", pid: process.pid, host: "elsewhere" };
    env.setHook(async ({ operation, step }) => {
      if (operation !== "provision" || step !== "record provisioning") return;
      // As if this process had paused past its lease and another one took the node over.
      const mine = (await env.store.locks.list()).find((l) => l.key === "node:n1");
      await env.store.locks.break("node:n1", mine?.owner.id ?? "");
      expect(await env.store.locks.tryLock("node:n1", intruder, 60_000)).toBe(true);
    });
    const lost = await thrown(() => env.bmi.provision(PROVISION));
    expect(lost.code).toBe("conflict");
    expect(lost.message).toMatch(/lock node:n1 was lost/);
    expect(await env.bmi.listProvisionings()).toEqual([]);
    expect(await env.boot.read("n1")).toBeNull();
    await env.store.locks.unlock("node:n1", intruder);
  });

  it("a reconcile already running elsewhere is named plainly", async () => {
    const env = await setup();
    await env.store.locks.tryLock("reconcile", { id: "other", pid: process.pid, host: "elsewhere" }, 60_000);
    const busy = await thrown(() => env.bmi.reconcile());
    expect(busy.message).toBe("reconcile is already running in another operation; try again later");
  });
});

describe("22.5 a journal that cannot be written", () => {
  it("never skips nor repeats an undo, and the failure says which journal rows were lost", async () => {
    const real = openSqliteStore({ path: ":memory:", uid: "1", snapshotName: "s" });
    let journalFails = false;
    const store = Object.assign(Object.create(real) as SqliteStore, {
      journal: {
        ...real.journal,
        append: async (entry: NewJournalEntry) => {
          if (journalFails) throw new BmiError("internal", "SQLITE_FULL: database or disk is full");
          return await real.journal.append(entry);
        },
      },
    });
    const env = await setup({ store });
    const before = await env.state();
    const undone: string[] = [];
    env.bmi.on((event: BmiEvent) => {
      if (event.type === "step:undone") undone.push(event.step);
    });
    env.setHook(({ step }) => {
      if (step === "write boot files") journalFails = true;
      if (step === "attach provisioning network") throw new BmiError("unavailable", "HIL is down");
    });
    const failed = await thrown(() => env.bmi.provision(PROVISION));
    journalFails = false;
    expect(failed.code).toBe("unavailable");
    expect(failed.details.journalWritesLost).toEqual(
      expect.arrayContaining(["write boot files: undone", "operation: failed"]),
    );
    expect(undone).toEqual([...new Set(undone)]); // each once
    expect(undone).toEqual(
      expect.arrayContaining(["write boot files", "record export", "export target", "clone"]),
    );
    expect(await env.state()).toEqual(before);
  });
});

describe("22.6 a database another process holds locked", () => {
  let dir: string | undefined;
  afterEach(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });

  it("is waited for without blocking the event loop, and the operation then succeeds", async () => {
    dir = mkdtempSync(join(tmpdir(), "bmi-locked-"));
    const path = join(dir, "bmi.db");
    const store = openSqliteStore({ path, uid: "1", snapshotName: "s", create: true });
    const { bmi } = createMemoryBmi({ isolation: { nodes: [] }, store });
    const other = new Database(path);
    try {
      other.exec("BEGIN EXCLUSIVE");
      let settled = false;
      const created = bmi.createProject({ name: "p3" });
      const markSettled = () => {
        settled = true;
      };
      created.then(markSettled, markSettled);
      await sleep(300);
      // Still waiting, and this thread got to run the COMMIT that ends the wait: a busy wait inside
      // SQLite would hold this same thread until its timeout and then fail with SQLITE_BUSY.
      expect(settled).toBe(false);
      other.exec("COMMIT");
      expect((await created).name).toBe("p3");
      expect((await bmi.listProjects()).map((p) => p.name)).toEqual(["p3"]);
    } finally {
      other.close();
      store.close();
    }
  });
});
