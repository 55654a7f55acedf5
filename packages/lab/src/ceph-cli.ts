// For humans: `pnpm exec tsx packages/lab/src/ceph-cli.ts start [dir] [--mgr]` starts a Ceph lab
// (printing cluster.env), `... stop <dir>` stops its daemons by PID and wipes the directory.
import { readCephLabInfo, startCephLab, stopCephLab } from "./ceph.js";

const [command, dir, ...flags] = process.argv.slice(2);

if (command === "start") {
  const lab = await startCephLab({ dir, withMgr: flags.includes("--mgr") });
  process.stdout.write(
    `${Object.entries(lab.env)
      .map(([k, v]) => `${k}=${v}`)
      .join(
        "\n",
      )}\n# ${lab.reused ? "reused" : "started"} in ${lab.startMs} ms; stop: tsx packages/lab/src/ceph-cli.ts stop ${lab.dir}\n`,
  );
} else if (command === "stop" && dir) {
  await readCephLabInfo(dir).catch(() => undefined);
  await stopCephLab({ dir });
  process.stdout.write(`stopped and wiped ${dir}\n`);
} else {
  process.stderr.write("usage: ceph-cli.ts start [dir] [--mgr] | stop <dir>\n");
  process.exitCode = 2;
}
