// A lab process for lab-network.test.ts: starts a whole lab on its own network, prints one JSON
// line (what it made), waits to be killed. Run with tsx on the workspace's sources (see
// test/reliability/tsconfig.child.json). argv: the run's Ceph (CephLabInfo as JSON).
import { type CephLabInfo, startBmiLab } from "@bmi/lab";

const ceph = JSON.parse(process.argv[2] as string) as CephLabInfo;
const lab = await startBmiLab({ ceph, nodes: 1, project: "killed", network: "netns" });
const network = lab.labNetwork;
if (network === null) throw new Error("no lab network");
process.stdout.write(
  `${JSON.stringify({ dir: lab.dir, netns: network.netns, pids: [network.dnsmasq.pid, lab.tgtd.pid] })}\n`,
);
setInterval(() => {}, 60_000);
