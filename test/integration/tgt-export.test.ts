import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { Writable } from "node:stream";
import { BmiError, createExecaRunner, createLogger, type ExportRequest } from "@bmi/core";
import { createRecordingRunner } from "@bmi/core/testing";
import { testExportDriver } from "@bmi/core/testing/contracts";
import { createTgtExport, type TgtExportDriver } from "@bmi/driver-tgt";
import { makeTempDir, startTgtd, type TgtdHandle } from "@bmi/lab";
import { execa } from "execa";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { canLogin, holdSession, iscsiUrl, randomFile } from "./tgt-helpers.js";

const MiB = 1024 * 1024;
const IQN = "iqn.2026-11.org.bmi.test";

let tgtd: TgtdHandle;
let files: { path: string; remove: () => Promise<void> };

beforeAll(async () => {
  files = await makeTempDir("tgt-files");
  tgtd = await startTgtd();
});

afterAll(async () => {
  await tgtd?.stop();
  await files?.remove();
});

const driverFor = (extra: Partial<Parameters<typeof createTgtExport>[0]> = {}): TgtExportDriver =>
  createTgtExport({ portal: tgtd.portal, port: tgtd.port, controlPort: tgtd.controlPort, ...extra });

testExportDriver({
  name: "tgt (real tgtd, file backing)",
  iqnPrefix: IQN,
  create: async () => {
    const driver = driverFor();
    return {
      driver,
      backing: async (name) => ({ kind: "file", path: (await randomFile(files.path, name, 4 * MiB)).path }),
      openSession: (target) => holdSession(tgtd, target, () => driver.list()),
      canLogin: (target, initiator) => canLogin(tgtd, target, initiator),
      restartDaemon: async () => {
        await tgtd.kill();
        await tgtd.restart();
      },
    };
  },
});

describe("tgt export read by a real initiator", () => {
  let driver: TgtExportDriver;
  const made: string[] = [];

  beforeAll(() => {
    driver = driverFor();
  });

  afterEach(async () => {
    const present = new Set((await driver.list()).map((t) => t.target));
    for (const target of made.splice(0))
      if (present.has(target)) await driver.unexport(target, { force: true });
  });

  const exportFile = async (
    label: string,
    size: number,
    access: ExportRequest["access"] = { initiators: "ALL" },
  ) => {
    const target = `${IQN}:${label}-${Math.random().toString(36).slice(2, 8)}`;
    const file = await randomFile(files.path, label, size);
    made.push(target);
    const request: ExportRequest = { target, backing: { kind: "file", path: file.path }, access };
    return { request, result: await driver.export(request), file };
  };

  it("iscsi-inq sees a disk and iscsi-readcapacity16 the file's size", async () => {
    const { request } = await exportFile("inq", 12 * MiB);
    const inq = await execa("iscsi-inq", [iscsiUrl(tgtd, request.target)]);
    expect(inq.stdout).toMatch(/Peripheral Device Type:DIRECT_ACCESS/);
    expect(inq.stdout).toMatch(/Vendor:IET/);
    const cap = await execa("iscsi-readcapacity16", [iscsiUrl(tgtd, request.target)]);
    expect(cap.stdout).toMatch(/LOGICAL BLOCK LENGTH IN BYTES:512/);
    expect(cap.stdout).toMatch(new RegExp(`Total size:${12 * MiB}\\b`));
  });

  it("a block read over iSCSI is byte for byte the backing file", async () => {
    const { request, file } = await exportFile("read", 6 * MiB);
    const out = join(files.path, "read-copy.raw");
    await execa("qemu-img", ["convert", "-f", "raw", "-O", "raw", iscsiUrl(tgtd, request.target), out]);
    const copy = await readFile(out);
    expect(copy.length).toBe(file.data.length);
    expect(copy.equals(file.data)).toBe(true);
  });

  it("a write over iSCSI lands in the backing file", async () => {
    const { request, file } = await exportFile("write", 2 * MiB);
    await execa("qemu-io", ["-f", "raw", "-c", "write -P 0x5a 4096 4096", iscsiUrl(tgtd, request.target)]);
    const after = await readFile(file.path);
    expect(after.subarray(4096, 8192).every((b) => b === 0x5a)).toBe(true);
    expect(after.subarray(0, 4096).equals(file.data.subarray(0, 4096))).toBe(true);
  });

  it("refuses an initiator the ACL does not name, and serves the one it does", async () => {
    const allowed = `${IQN}:node-07`;
    const { request, file } = await exportFile("acl", 1 * MiB, { initiators: { names: [allowed] } });
    const refused = await execa("iscsi-inq", ["-i", `${IQN}:node-08`, iscsiUrl(tgtd, request.target)], {
      reject: false,
    });
    expect(refused.exitCode).not.toBe(0);
    expect(refused.stderr).toMatch(/Login Failed|Failed to log in/);
    const out = join(files.path, "acl-copy.raw");
    await execa("qemu-img", [
      "convert",
      "-O",
      "raw",
      "--image-opts",
      `driver=raw,file.driver=iscsi,file.transport=tcp,file.portal=${tgtd.portal}:${tgtd.port},file.target=${request.target},file.lun=1,file.initiator-name=${allowed}`,
      out,
    ]);
    expect((await readFile(out)).equals(file.data)).toBe(true);
  });

  it("one CHAP account serves several targets, also from a second driver (another BMI process), and stays until its last target goes", async () => {
    const chap = { user: "shared-node", secret: "shared-secret-123" };
    const initiator = { name: `${IQN}:node-10`, chap };
    const first = await exportFile("chap-a", 1 * MiB, { initiators: "ALL", chap });
    const second = await exportFile("chap-b", 1 * MiB, { initiators: "ALL", chap });
    // A second driver knows nothing of the account's secret (as after a restart of BMI).
    const other = driverFor();
    const target = `${IQN}:chap-c-${Math.random().toString(36).slice(2, 8)}`;
    const file = await randomFile(files.path, "chap-c", 1 * MiB);
    made.push(target);
    await other.export({
      target,
      backing: { kind: "file", path: file.path },
      access: { initiators: "ALL", chap },
    });
    for (const name of [first.request.target, second.request.target, target]) {
      expect(await canLogin(tgtd, name, initiator)).toBe(true);
      expect(await canLogin(tgtd, name, { name: `${IQN}:node-10` })).toBe(false);
    }
    await driver.unexport(first.request.target);
    expect(await canLogin(tgtd, second.request.target, initiator)).toBe(true);
    expect(await canLogin(tgtd, target, initiator)).toBe(true);
    await driver.unexport(second.request.target);
    await other.unexport(target);
    const accounts = await execa("tgtadm", [
      "-C",
      String(tgtd.controlPort),
      "--lld",
      "iscsi",
      "--mode",
      "account",
      "--op",
      "show",
    ]);
    expect(accounts.stdout).not.toContain(chap.user);
  });

  it("tgtd killed and restarted: restore() brings every target back, with its data and access rules", async () => {
    const chap = { user: "node9", secret: "restore-secret-123" };
    const plain = await exportFile("rs-plain", 1 * MiB);
    const acl = await exportFile("rs-acl", 1 * MiB, { initiators: { names: [`${IQN}:node-01`] } });
    const chapped = await exportFile("rs-chap", 1 * MiB, { initiators: "ALL", chap });
    const known = [plain.request, acl.request, chapped.request];
    const pidBefore = tgtd.pid;

    await tgtd.kill();
    await tgtd.restart();
    expect(tgtd.pid).not.toBe(pidBefore);
    expect(await driver.list()).toEqual([]);

    const restored = await driver.restore(known);
    expect([...restored].sort()).toEqual(known.map((r) => r.target).sort());
    const listed = await driver.list();
    expect(listed.map((t) => t.target).sort()).toEqual(known.map((r) => r.target).sort());

    const out = join(files.path, "restored.raw");
    await execa("qemu-img", ["convert", "-f", "raw", "-O", "raw", iscsiUrl(tgtd, plain.request.target), out]);
    expect((await readFile(out)).equals(plain.file.data)).toBe(true);
    expect(await canLogin(tgtd, acl.request.target, { name: `${IQN}:node-01` })).toBe(true);
    expect(await canLogin(tgtd, acl.request.target, { name: `${IQN}:node-02` })).toBe(false);
    expect(await canLogin(tgtd, chapped.request.target, { name: `${IQN}:node-09`, chap })).toBe(true);
    expect(await canLogin(tgtd, chapped.request.target, { name: `${IQN}:node-09` })).toBe(false);
  });
});

describe("tgt driver behaviour against a real tgtd", () => {
  it("two drivers sharing one tgtd (two BMI processes) allocate distinct tids under concurrency", async () => {
    const a = driverFor();
    const b = driverFor();
    const requests = await Promise.all(
      Array.from({ length: 12 }, async (_, i) => ({
        target: `${IQN}:shared-${i}-${Math.random().toString(36).slice(2, 6)}`,
        backing: {
          kind: "file" as const,
          path: (await randomFile(files.path, `shared-${i}`, 64 * 1024)).path,
        },
        access: { initiators: "ALL" as const },
      })),
    );
    try {
      await Promise.all(requests.map((r, i) => (i % 2 === 0 ? a : b).export(r)));
      const listed = await a.list();
      for (const r of requests) {
        const found = listed.filter((t) => t.target === r.target);
        expect(found).toHaveLength(1);
        expect(found[0]?.backing).toEqual(r.backing);
      }
    } finally {
      for (const r of requests) await a.unexport(r.target, { force: true }).catch(() => undefined);
    }
  });

  it("a missing backing file is not_found and leaves no half-made target", async () => {
    const driver = driverFor();
    const target = `${IQN}:nofile`;
    const error = await driver
      .export({
        target,
        backing: { kind: "file", path: join(files.path, "absent.img") },
        access: { initiators: "ALL" },
      })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BmiError);
    expect((error as BmiError).code).toBe("not_found");
    expect((error as BmiError).message).toMatch(/backing store/);
    expect((await driver.list()).map((t) => t.target)).not.toContain(target);
    const raw = await tgtd.tgtadm(["--lld", "iscsi", "--mode", "target", "--op", "show"]);
    expect(raw.stdout).not.toContain(target);
  });

  it("a tgtd that is not running is unavailable (retryable), not an internal error", async () => {
    const other = await startTgtd();
    const { port, controlPort } = other;
    await other.stop();
    const driver = createTgtExport({ portal: "127.0.0.1", port, controlPort });
    const error = await driver.list().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BmiError);
    expect((error as BmiError).code).toBe("unavailable");
    expect((error as BmiError).retryable).toBe(true);
    expect((error as BmiError).subsystem).toBe("export");
  });

  it("calls tgtadm only (never tgt-admin) and keeps the CHAP secret out of commands and logs", async () => {
    const secret = "never-log-this-secret-42";
    const lines: string[] = [];
    const logger = createLogger(
      { level: "debug" },
      new Writable({
        write(chunk, _encoding, done) {
          lines.push(String(chunk));
          done();
        },
      }),
    );
    const real = createExecaRunner({ subsystem: "export", timeoutMs: 10_000 });
    const runner = createRecordingRunner(() => undefined, real);
    const driver = driverFor({ runner, logger });
    const target = `${IQN}:secret-check`;
    const file = await randomFile(files.path, "secret-check", 64 * 1024);
    const request: ExportRequest = {
      target,
      backing: { kind: "file", path: file.path },
      access: { initiators: { addresses: ["127.0.0.1"] }, chap: { user: "sc", secret } },
    };
    await driver.export(request);
    const clash = await driver
      .export({ ...request, backing: { kind: "file", path: "/nonexistent" } })
      .catch((e) => e);
    expect((clash as BmiError).code).toBe("already_exists");
    await driver.unexport(target, { force: true });

    expect(runner.calls.every((c) => c.file === "tgtadm")).toBe(true);
    const withSecret = runner.calls.filter((c) => c.args.includes(secret));
    expect(withSecret).toHaveLength(1);
    // tgtadm has no other way to take a password; the runner is told to redact it everywhere.
    expect(withSecret[0]?.options.secrets).toContain(secret);
    expect(lines.join("")).not.toContain(secret);
    expect(lines.join("")).toContain("target created");
    expect(JSON.stringify((clash as BmiError).toJSON())).not.toContain(secret);
    const accounts = await tgtd.tgtadm(["--lld", "iscsi", "--mode", "account", "--op", "show"]);
    expect(accounts.stdout).not.toMatch(/\bsc\b/);
  });
});
