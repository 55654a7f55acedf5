/**
 * Issue 22.6 on the real lab: another process holds `bmi.db` in `BEGIN EXCLUSIVE` (a backup, a
 * sqlite3 shell left open). `bmi serve` must keep answering while it waits, and the write that
 * waited must then succeed (better-sqlite3's busy wait used to freeze the event loop).
 */
import { createRequire } from "node:module";
import { join } from "node:path";
import { Writable } from "node:stream";
import { run } from "@bmi/cli";
import { type BmiLab, freePort, startBmiLab } from "@bmi/lab";
import { execa, type ResultPromise } from "execa";
import { afterAll, beforeAll, expect, inject, it } from "vitest";

let lab: BmiLab;
let source: string;
let base: string;
const stop = new AbortController();
let served: Promise<number>;
let auth: string;

// better-sqlite3 is the store's dependency, not the tests': resolve it from @bmi/core.
const betterSqlite = createRequire(join(import.meta.dirname, "../../packages/core/package.json")).resolve(
  "better-sqlite3",
);

/** A process holding the database exclusively for `holdMs`, then committing; says when. */
function holdDatabase(path: string, holdMs: number): ResultPromise<{ buffer: false; all: true }> {
  const script = `
    const Database = require(${JSON.stringify(betterSqlite)});
    const db = new Database(${JSON.stringify(path)});
    db.exec("BEGIN EXCLUSIVE");
    console.log("locked");
    setTimeout(() => { db.exec("COMMIT"); console.log("released"); db.close(); }, ${holdMs});
  `;
  return execa(process.execPath, ["-e", script], { buffer: false, all: true });
}

const form = (fields: Record<string, string>) => ({
  method: "PUT",
  headers: { authorization: auth, "content-type": "application/x-www-form-urlencoded" },
  body: new URLSearchParams(fields).toString(),
});

beforeAll(async () => {
  const port = await freePort();
  lab = await startBmiLab({
    ceph: inject("ceph"),
    nodes: 1,
    configOverrides: { rest_api: { ip: "127.0.0.1", port: String(port) } },
  });
  auth = `Basic ${Buffer.from(`${lab.hilUser.name}:${lab.hilUser.password}`).toString("base64")}`;
  source = `lab${lab.settings.uid}-locked-src`;
  await lab.drivers.storage.create(source, 8 * 1024 * 1024);
  await lab.bmi.importImage({ project: lab.project, source, name: "golden" });
  const quiet = new Writable({ write: (_chunk, _encoding, done) => done() });
  base = await new Promise<string>((resolve) => {
    served = run(["--config", lab.configPath, "serve"], {
      stdout: quiet,
      stderr: quiet,
      env: {},
      signal: stop.signal,
      onListening: resolve,
    });
    served.then((code) => resolve(`exited ${code}`));
  });
});

afterAll(async () => {
  stop.abort();
  await served;
  if (!lab) return;
  await lab.bmi.deleteDisk({ project: lab.project, disk: "waited" }).catch(() => {});
  await lab.bmi.removeImage({ project: lab.project, image: "golden" }).catch(() => {});
  if (await lab.drivers.storage.exists(source).catch(() => false)) await lab.drivers.storage.remove(source);
  await lab.stop();
});

it("answers /health while another process holds the database, and the waiting write then succeeds", async () => {
  expect(base).toMatch(/^http:/);
  const holder = holdDatabase(join(lab.dir, "bmi.db"), 2_500);
  const said: string[] = [];
  const locked = new Promise<void>((resolve) =>
    holder.all?.on("data", (chunk: Buffer) => {
      said.push(...String(chunk).trim().split("\n"));
      if (said.includes("locked")) resolve();
    }),
  );
  await locked;
  const write = fetch(
    `${base}/create_disk`,
    form({ project: lab.project, disk_name: "waited", img: "golden" }),
  );
  // The database's check only: the deep checks (rbd, tgtadm, HIL) take their own time on a busy host.
  const health = await fetch(`${base}/health?check=store`);
  // Answered while the other process still held the lock: the loop was not blocked by the wait.
  const releasedBeforeHealth = said.includes("released");
  expect(health.status).toBe(200);
  expect(releasedBeforeHealth).toBe(false);
  const created = await write;
  expect(created.status).toBe(200);
  expect(said).toContain("released");
  expect((await holder).exitCode).toBe(0);
  expect((await lab.bmi.listDisks({ project: lab.project })).map((d) => d.name)).toEqual(["waited"]);
});
