import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openSqliteStore } from "@bmi/core";
import { textSink } from "@bmi/core/testing";
import { type HilServer, startHilServer } from "@bmi/driver-hil/testing";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runDoctor } from "../src/doctor.js";
import { EXIT, run } from "../src/index.js";

// Issue 19 point 5: doctor checks the provisioning network in HIL (exists, has the channel) and
// accepts a freshly installed TFTP root (pxelinux.cfg/ comes with the first provision).

let server: HilServer;
const dir = mkdtempSync(join(tmpdir(), "bmi-doctor-test-"));
const root = join(dir, "tftp");
beforeAll(async () => {
  server = await startHilServer({
    auth: "basic",
    fixture: {
      projects: ["proj1"],
      users: [{ name: "bmi", password: "bmi-pw-12345", projects: ["proj1"] }],
      networks: [{ name: "prov", owner: "admin", access: ["proj1"], netId: "300" }],
    },
  });
  mkdirSync(root, { recursive: true });
  for (const loader of ["pxelinux.0", "ldlinux.c32", "menu.c32", "libutil.c32", "ipxe.lkrn"]) {
    writeFileSync(join(root, loader), "");
  }
});
afterAll(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

function configFile(net: { network: string; channel: string }, db = join(dir, "bmi.db")): string {
  const path = join(dir, `bmi-${net.network}-${net.channel.replace("/", "-")}.cfg`);
  writeFileSync(
    path,
    [
      "[bmi]",
      "uid = 1",
      "[db]",
      `path = ${db}`,
      "[fs]",
      "id = admin",
      "pool = rbd",
      `conf_file = ${join(dir, "no-ceph.conf")}`,
      "timeout_ms = 2000",
      "[iscsi]",
      "ip = 127.0.0.1",
      "initiators = ALL",
      "tgt_control_port = 1",
      "timeout_ms = 2000",
      "[net_isolator]",
      `url = ${server.url}`,
      "username = bmi",
      "password = bmi-pw-12345",
      `provisioning_network = ${net.network}`,
      `channel = ${net.channel}`,
      "[tftp]",
      `ipxe_path = ${root}/`,
      `pxelinux_path = ${root}/pxelinux.cfg/`,
    ].join("\n"),
  );
  return path;
}

const checkOf = async (path: string, name: string) =>
  (await runDoctor({ path, env: {} })).find((c) => c.name === name);

describe("bmi doctor: HIL's provisioning network and a fresh TFTP root", () => {
  it("accepts a fresh TFTP root without pxelinux.cfg/, and a provisioning network with its channel", async () => {
    const path = configFile({ network: "prov", channel: "vlan/native" });
    const checks = await runDoctor({ path, env: {} });
    const tftp = checks.find((c) => c.name === "tftp");
    expect(tftp?.ok, tftp?.detail).toBe(true);
    expect(tftp?.detail).toMatch(/pxelinux\.cfg\/ will be created by the first provision/);
    const hil = checks.find((c) => c.name === "hil");
    expect(hil?.ok, hil?.detail).toBe(true);
    expect(hil?.detail).toMatch(/provisioning network prov exists with channel vlan\/native/);
    expect(JSON.stringify(checks)).not.toContain("bmi-pw-12345");
  });

  it("fails HIL when the provisioning network does not exist, or lacks the configured channel", async () => {
    const missing = await checkOf(configFile({ network: "nope", channel: "vlan/native" }), "hil");
    expect(missing?.ok).toBe(false);
    expect(missing?.detail).toMatch(/the provisioning network nope does not exist in HIL/);
    expect(missing?.fix).toMatch(/provisioning_network exists in HIL/);
    const channel = await checkOf(configFile({ network: "prov", channel: "vlan/999" }), "hil");
    expect(channel?.ok).toBe(false);
    expect(channel?.detail).toMatch(
      /has channels vlan\/native, vlan\/300, not \[net_isolator\] channel vlan\/999/,
    );
  });
});

describe("bmi doctor changes nothing (issue 21.1)", () => {
  const listing = (path: string) =>
    readdirSync(path).map(
      (name) => `${name}:${statSync(join(path, name)).mtimeMs}:${statSync(join(path, name)).size}`,
    );
  const prov = { network: "prov", channel: "vlan/native" };

  it("does not create a missing database (nor any file), and says to run db init", async () => {
    const dbDir = mkdtempSync(join(dir, "db-missing-"));
    const before = listing(dbDir);
    const db = (await runDoctor({ path: configFile(prov, join(dbDir, "bmi.db")), env: {} })).find(
      (c) => c.name === "database",
    );
    expect(db).toMatchObject({ ok: false, detail: `the database ${join(dbDir, "bmi.db")} does not exist` });
    expect(db?.fix).toMatch(/bmi db init/);
    expect(listing(dbDir)).toEqual(before);
  });

  it("reads a closed WAL database without leaving -wal/-shm or touching it", async () => {
    const dbDir = mkdtempSync(join(dir, "db-wal-"));
    const path = join(dbDir, "bmi.db");
    const store = openSqliteStore({ path, uid: "1", snapshotName: "snapshot", create: true });
    await store.projects.create("bmi_infra");
    await store.projects.create("tenant");
    store.close();
    const before = listing(dbDir);
    const bytes = readFileSync(path);
    const db = (await runDoctor({ path: configFile(prov, path), env: {} })).find(
      (c) => c.name === "database",
    );
    expect(db).toMatchObject({ ok: true, detail: `${path}: 2 project(s), 0 image(s)` });
    expect(listing(dbDir)).toEqual(before);
    expect(readFileSync(path).equals(bytes)).toBe(true);
  });

  it("leaves an original BMI database at schema 0 (the first real command migrates it)", async () => {
    const dbDir = mkdtempSync(join(dir, "db-original-"));
    const path = join(dbDir, "bmi.db");
    const original = new Database(path);
    // The original's two tables (as SQLAlchemy made them, trimmed), no user_version.
    original.exec(`CREATE TABLE project (id INTEGER NOT NULL, name VARCHAR NOT NULL, PRIMARY KEY (id), UNIQUE (name));
      CREATE TABLE image (id INTEGER NOT NULL, name VARCHAR NOT NULL, is_public BOOLEAN NOT NULL,
        is_snapshot BOOLEAN NOT NULL, project_id INTEGER NOT NULL, parent_id INTEGER, PRIMARY KEY (id));
      INSERT INTO project (id, name) VALUES (1, 'bmi_infra');`);
    original.close();
    const before = listing(dbDir);
    const db = (await runDoctor({ path: configFile(prov, path), env: {} })).find(
      (c) => c.name === "database",
    );
    expect(db?.ok, db?.detail).toBe(true);
    expect(db?.detail).toMatch(/1 project\(s\), 0 image\(s\) \(schema 0: the first command that opens it/);
    expect(listing(dbDir)).toEqual(before);
    const reopened = new Database(path, { readonly: true });
    expect(reopened.pragma("user_version", { simple: true })).toBe(0);
    reopened.close();
  });

  it("names a missing admin project", async () => {
    const dbDir = mkdtempSync(join(dir, "db-noadmin-"));
    const path = join(dbDir, "bmi.db");
    openSqliteStore({ path, uid: "1", snapshotName: "snapshot", create: true }).close();
    const db = (await runDoctor({ path: configFile(prov, path), env: {} })).find(
      (c) => c.name === "database",
    );
    expect(db).toMatchObject({ ok: false, detail: "the admin project bmi_infra does not exist" });
  });
});

describe("bmi doctor's progress", () => {
  it("shows each check as it runs on a terminal (stderr), and the results on stdout", async () => {
    const out = textSink();
    const err = textSink({ tty: true });
    const path = configFile({ network: "prov", channel: "vlan/native" });
    const code = await run(["--config", path, "doctor"], { stdout: out.stream, stderr: err.stream, env: {} });
    expect(code).toBe(EXIT.serverFault); // no Ceph, no tgtd here
    for (const name of ["config", "database", "ceph", "tgtd", "tftp", "hil"]) {
      expect(err.text()).toMatch(new RegExp(`${name}: `));
      expect(out.text()).toMatch(new RegExp(`^(OK  |FAIL) ${name}`, "m"));
    }
    expect(err.text()).toMatch(/hil: HIL at .* answers/);
    expect(err.text() + out.text()).not.toContain("bmi-pw-12345");
  });
});
