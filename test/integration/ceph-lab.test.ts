// The lab itself: what startCephLab promises (spec/ceph-tgt-lab.md) on its own throwaway clusters.
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { type CephLab, isAlive, makeTempDir, readCephLabInfo, startCephLab } from "@bmi/lab";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

describe("startCephLab in a given directory", () => {
  let dir: { path: string; remove: () => Promise<void> };
  let lab: CephLab;
  beforeAll(async () => {
    dir = await makeTempDir("ceph-lab-test");
    lab = await startCephLab({ dir: dir.path, pool: "labpool", clientId: "tester" });
  });
  afterAll(async () => {
    await lab?.stop();
    await dir.remove();
  });

  it("reaches HEALTH_OK with one mon and one memstore OSD on loopback, without a mgr", async () => {
    expect(await lab.ceph(["health"])).toMatch(/^HEALTH_OK/);
    expect(lab.monHost).toMatch(/^\[v2:127\.0\.0\.1:\d+,v1:127\.0\.0\.1:\d+\]$/);
    const osd = JSON.parse(await lab.ceph(["osd", "metadata", "0", "--format", "json"])) as {
      osd_objectstore: string;
    };
    expect(osd.osd_objectstore).toBe("memstore");
    expect(lab.pids.mgr).toBeUndefined();
  });

  it("gives the client rbd rights on its pool only, and keeps keyrings private", async () => {
    const caps = JSON.parse(await lab.ceph(["auth", "get", "client.tester", "--format", "json"])) as Array<{
      caps: Record<string, string>;
    }>;
    expect(caps[0]?.caps).toMatchObject({ mon: "profile rbd", osd: "profile rbd pool=labpool" });
    for (const file of [lab.keyring, lab.adminKeyring]) expect((await stat(file)).mode & 0o777).toBe(0o600);
    const ls = await execa("rbd", ["--conf", lab.conf, "--id", "tester", "ls", "labpool"], { reject: false });
    expect(ls.exitCode).toBe(0);
  });

  it("publishes cluster.env with what clients need", async () => {
    const env = await readFile(join(dir.path, "cluster.env"), "utf8");
    expect(env).toContain(`CEPH_CONF=${lab.conf}\n`);
    expect(env).toContain("CEPH_CLIENT_ID=tester\n");
    expect(env).toContain("CEPH_POOL=labpool\n");
    expect(await readCephLabInfo(dir.path)).toMatchObject({
      conf: lab.conf,
      keyring: lab.keyring,
      monHost: lab.monHost,
    });
  });

  it("reuses a running lab in the same directory instead of building a second one", async () => {
    const again = await startCephLab({ dir: dir.path, pool: "labpool", clientId: "tester" });
    expect(again.reused).toBe(true);
    expect(again.pids).toEqual(lab.pids);
    expect(again.monHost).toBe(lab.monHost);
  });
});

describe("stopping a lab", () => {
  it("stops its daemons by PID and wipes its temp directory", async () => {
    const lab = await startCephLab();
    const pids = [lab.pids.mon, lab.pids.osd];
    for (const pid of pids) expect(await isAlive(pid)).toBe(true);
    await lab.stop();
    for (const pid of pids) expect(await isAlive(pid)).toBe(false);
    await expect(stat(lab.dir)).rejects.toThrow(/ENOENT/);
  });

  it("starts an active mgr when asked", async () => {
    const lab = await startCephLab({ withMgr: true });
    try {
      expect(lab.pids.mgr).toBeGreaterThan(1);
      const mgr = JSON.parse(await lab.ceph(["mgr", "stat", "--format", "json"])) as { available: boolean };
      expect(mgr.available).toBe(true);
    } finally {
      await lab.stop();
    }
  });
});
