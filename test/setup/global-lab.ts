/**
 * vitest globalSetup of the integration project: starts ONE throwaway Ceph cluster for the whole
 * run (packages/lab/src/ceph.ts: mon + memstore OSD on 127.0.0.1 free ports, cephx, no mgr) and
 * stops it by PID and wipes it at the end, also when tests fail or the run is interrupted.
 *
 * In a test file:
 *
 *   import { inject } from "vitest";
 *   const ceph = inject("ceph");
 *   // { dir, conf, keyring, clientId, pool, adminKeyring, monHost, env }
 *   // e.g. createCephStorage({ conf: ceph.conf, keyring: ceph.keyring, clientId: ceph.clientId, pool: ceph.pool })
 *   // tgt's rbd backing store: --bsopts "conf=${ceph.conf};id=${ceph.clientId}"
 *
 * The pool is shared by every file: give your images a per-file random prefix, remove what you
 * create, and never stop or reconfigure the cluster (start your own `startCephLab()` for that).
 * `BMI_CEPH_LAB_DIR=<dir>` reuses (or starts and keeps) a lab in that directory, for quick reruns.
 */
import { readFileSync, rmSync } from "node:fs";
import { type CephLab, type CephLabInfo, startCephLab } from "@bmi/lab";
import type {} from "vitest";
import type { TestProject } from "vitest/node";

declare module "vitest" {
  export interface ProvidedContext {
    ceph: CephLabInfo;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const keepDir = process.env.BMI_CEPH_LAB_DIR;
  const lab: CephLab = await startCephLab({ dir: keepDir || undefined });
  const { dir, conf, keyring, clientId, pool, adminKeyring, monHost, env } = lab;
  project.provide("ceph", { dir, conf, keyring, clientId, pool, adminKeyring, monHost, env });
  process.stderr.write(`Ceph lab ${lab.reused ? "reused" : "started"} in ${lab.startMs} ms (${monHost})\n`);

  // If vitest dies without running the teardown, do not leave daemons behind.
  const emergencyStop = () => {
    if (keepDir) return;
    for (const pid of [lab.pids.osd, lab.pids.mgr, lab.pids.mon]) {
      if (pid === undefined) continue;
      try {
        // Only a process still started with our ceph.conf (the PID may have been reused).
        if (readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(conf)) process.kill(pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
    rmSync(dir, { recursive: true, force: true });
  };
  process.once("exit", emergencyStop);

  return async () => {
    process.off("exit", emergencyStop);
    if (keepDir) return;
    await lab.stop();
  };
}
