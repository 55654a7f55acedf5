// A cluster that stops answering must give a clear, retryable timeout within the configured bound,
// never a hang. Uses its own throwaway lab (the shared one must stay up for other files).
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { expectBmiError } from "@bmi/core/testing/contracts";
import { createCephStorage, createLibrbdStorage } from "@bmi/driver-ceph";
import { type CephLab, freePort, makeTempDir, startCephLab, stopPid } from "@bmi/lab";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";

const TIMEOUT_MS = 5_000;
// Generous slack over the configured bound for a loaded 2-core machine (process start, kill grace).
const BOUND_MS = TIMEOUT_MS + 6_000;

async function timed<T>(fn: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const started = performance.now();
  const value = await fn();
  return { value, ms: performance.now() - started };
}

describe("ceph storage when the cluster is unreachable", () => {
  const ceph = inject("ceph");
  let dir: { path: string; remove: () => Promise<void> };
  beforeAll(async () => {
    dir = await makeTempDir("ceph-outage");
  });
  afterAll(async () => {
    await dir.remove();
  });

  it("times out (retryable) within the bound when no monitor listens", async () => {
    const conf = join(dir.path, "closed.conf");
    await writeFile(
      conf,
      `[global]\nmon_host = [v2:127.0.0.1:${await freePort()},v1:127.0.0.1:${await freePort()}]\n`,
    );
    const storage = createCephStorage({
      conf,
      keyring: ceph.keyring,
      clientId: ceph.clientId,
      pool: ceph.pool,
      timeoutMs: TIMEOUT_MS,
    });
    const { value: error, ms } = await timed(() => expectBmiError(() => storage.list(), "timeout"));
    expect(error.retryable).toBe(true);
    expect(error.subsystem).toBe("storage");
    expect(ms).toBeLessThan(BOUND_MS);
  });

  it("librbd: times out (retryable) within the bound when no monitor listens", async () => {
    const conf = join(dir.path, "closed-librbd.conf");
    await writeFile(
      conf,
      `[global]\nmon_host = [v2:127.0.0.1:${await freePort()},v1:127.0.0.1:${await freePort()}]\n`,
    );
    await using storage = createLibrbdStorage({
      conf,
      keyring: ceph.keyring,
      clientId: ceph.clientId,
      pool: ceph.pool,
      timeoutMs: TIMEOUT_MS,
    });
    const { value: error, ms } = await timed(() => expectBmiError(() => storage.list(), "timeout"));
    expect(error.retryable).toBe(true);
    expect(error.subsystem).toBe("storage");
    expect(ms).toBeLessThan(BOUND_MS);
  });
});

describe("ceph storage on a cluster that goes down", () => {
  let lab: CephLab;
  const image = "outage-img";
  const storage = () =>
    createCephStorage({
      conf: lab.conf,
      keyring: lab.keyring,
      clientId: lab.clientId,
      pool: lab.pool,
      timeoutMs: TIMEOUT_MS,
    });

  beforeAll(async () => {
    lab = await startCephLab();
    await storage().create(image, 4 * 1024 * 1024);
  });
  afterAll(async () => {
    await lab?.stop();
  });

  it("times out within the bound when the OSD is down (rbd would otherwise hang forever)", async () => {
    await stopPid(lab.pids.osd, { signal: "SIGKILL" });
    const { value: error, ms } = await timed(() => expectBmiError(() => storage().info(image), "timeout"));
    expect(error.retryable).toBe(true);
    expect(error.details).toMatchObject({ exitCode: 110 });
    expect(ms).toBeLessThan(BOUND_MS);
  });

  it("librbd: times out within the bound while the OSD is down (rados_osd_op_timeout set)", async () => {
    await using librbd = createLibrbdStorage({
      conf: lab.conf,
      keyring: lab.keyring,
      clientId: lab.clientId,
      pool: lab.pool,
      timeoutMs: TIMEOUT_MS,
    });
    const { value: error, ms } = await timed(() => expectBmiError(() => librbd.info(image), "timeout"));
    expect(error.retryable).toBe(true);
    expect(ms).toBeLessThan(BOUND_MS);
  });

  it("times out within the bound when the whole cluster is stopped", async () => {
    await lab.stop({ wipe: false });
    const { value: error, ms } = await timed(() => expectBmiError(() => storage().exists(image), "timeout"));
    expect(error.retryable).toBe(true);
    expect(ms).toBeLessThan(BOUND_MS);
  });
});
