import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { BmiError } from "@bmi/core";
import { testExportDriver } from "@bmi/core/testing/contracts";
import { createTgtExport, type TgtExportDriver } from "@bmi/driver-tgt";
import { makeTempDir, startTgtd, type TgtdHandle } from "@bmi/lab";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { cephAdmin, filePrefix, rbdAsClient } from "./ceph-helpers.js";
import { canLogin, holdSession, iscsiUrl, randomFile } from "./tgt-helpers.js";

const MiB = 1024 * 1024;
const IQN = "iqn.2026-11.org.bmi.test";
const ceph = inject("ceph");
const prefix = filePrefix("tgt");

let tgtd: TgtdHandle;
let scratch: { path: string; remove: () => Promise<void> };
/** Images this file made, removed at the end (children before parents). */
const images: string[] = [];

async function rbd(args: readonly string[]): Promise<string> {
  const result = await rbdAsClient(ceph, args);
  if (result.exitCode !== 0)
    throw new Error(`rbd ${args.join(" ")}: exit ${result.exitCode}: ${result.stderr}`);
  return String(result.stdout);
}

async function newImage(name: string, size = 4 * MiB): Promise<string> {
  const image = `${prefix}-${name}`;
  await rbd(["create", "--size", `${size / MiB}M`, `${ceph.pool}/${image}`]);
  images.push(image);
  return image;
}

beforeAll(async () => {
  scratch = await makeTempDir("tgt-rbd");
  tgtd = await startTgtd();
});

afterAll(async () => {
  await tgtd?.stop();
  // A tgtd killed by the restart case leaves watchers Ceph would expire only after ~30 s; every
  // tgtd of ours is gone now, so any watcher left on our images is stale: blocklist it.
  for (const image of images) {
    const status = await rbdAsClient(ceph, ["status", "--format", "json", `${ceph.pool}/${image}`]);
    const watchers = (JSON.parse(String(status.stdout) || "{}") as { watchers?: { address: string }[] })
      .watchers;
    for (const watcher of watchers ?? []) {
      await cephAdmin(ceph, ["osd", "blocklist", "add", watcher.address, "60"]).catch(() => undefined);
    }
  }
  for (const image of images.reverse()) {
    for (let attempt = 0; ; attempt++) {
      await rbdAsClient(ceph, ["snap", "unprotect", `${ceph.pool}/${image}@golden`]);
      await rbdAsClient(ceph, ["snap", "purge", `${ceph.pool}/${image}`]);
      const removed = await rbdAsClient(ceph, ["rm", "--no-progress", `${ceph.pool}/${image}`]);
      if (removed.exitCode === 0 || removed.exitCode === 2 || attempt >= 90) break;
      await sleep(1000);
    }
  }
  await scratch?.remove();
}, 180_000);

const driverFor = (): TgtExportDriver =>
  createTgtExport({
    portal: tgtd.portal,
    port: tgtd.port,
    controlPort: tgtd.controlPort,
    rbd: { conf: ceph.conf, clientId: ceph.clientId },
  });

testExportDriver({
  name: "tgt (real tgtd, rbd backing on the lab's Ceph)",
  iqnPrefix: IQN,
  create: async () => {
    const driver = driverFor();
    return {
      driver,
      backing: async (name) => ({ kind: "rbd", pool: ceph.pool, image: await newImage(name) }),
      openSession: (target) => holdSession(tgtd, target, () => driver.list()),
      canLogin: (target, initiator) => canLogin(tgtd, target, initiator),
      restartDaemon: async () => {
        await tgtd.kill();
        await tgtd.restart();
      },
    };
  },
});

describe("tgt serving an RBD clone", () => {
  it("a read over iSCSI of a CoW clone is byte for byte the golden image's data", async () => {
    const driver = driverFor();
    const source = await randomFile(scratch.path, "golden-src", 8 * MiB);
    const golden = `${prefix}-golden`;
    await rbd(["import", "--no-progress", source.path, `${ceph.pool}/${golden}`]);
    images.push(golden);
    await rbd(["snap", "create", `${ceph.pool}/${golden}@golden`]);
    await rbd(["snap", "protect", `${ceph.pool}/${golden}@golden`]);
    const clone = `${prefix}-clone`;
    await rbd(["clone", `${ceph.pool}/${golden}@golden`, `${ceph.pool}/${clone}`]);
    images.push(clone);

    const target = `${IQN}:${clone}`;
    const exported = await driver.export({
      target,
      backing: { kind: "rbd", pool: ceph.pool, image: clone },
      access: { initiators: "ALL" },
    });
    try {
      expect(exported.backing).toEqual({ kind: "rbd", pool: ceph.pool, image: clone });
      const cap = await execa("iscsi-readcapacity16", [iscsiUrl(tgtd, target)]);
      expect(cap.stdout).toMatch(new RegExp(`Total size:${8 * MiB}\\b`));
      const out = join(scratch.path, "clone-copy.raw");
      await execa("qemu-img", ["convert", "-f", "raw", "-O", "raw", iscsiUrl(tgtd, target), out]);
      expect((await readFile(out)).equals(source.data)).toBe(true);

      // While exported, tgtd holds a watcher: the storage side sees the disk as in use.
      const status = JSON.parse(await rbd(["status", "--format", "json", `${ceph.pool}/${clone}`])) as {
        watchers: unknown[];
      };
      expect(status.watchers.length).toBeGreaterThan(0);
    } finally {
      await driver.unexport(target, { force: true });
    }
  });

  it("a missing RBD image is not_found and leaves no target behind", async () => {
    const driver = driverFor();
    const target = `${IQN}:${prefix}-nothere`;
    const error = await driver
      .export({
        target,
        backing: { kind: "rbd", pool: ceph.pool, image: `${prefix}-nothere` },
        access: { initiators: "ALL" },
      })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BmiError);
    expect((error as BmiError).code).toBe("not_found");
    expect((await driver.list()).map((t) => t.target)).not.toContain(target);
  });
});
