// A lab process for network-cleanup.test.ts: starts a lab network, prints one JSON line, waits
// to be killed. Run with tsx on the workspace's sources (see test/reliability/tsconfig.child.json).
import { startLabNetwork } from "@bmi/lab";

const [dir, labId, tftpRoot] = process.argv.slice(2) as [string, string, string];
const network = await startLabNetwork({
  labId,
  dir,
  tftpRoot,
  provisioningVlan: 100,
  mode: "netns",
  nics: [{ node: "node-01", nic: "eth0", mac: "52:54:00:c1:00:01" }],
});
if (network.kind !== "netns") throw new Error("no real network");
process.stdout.write(`${JSON.stringify({ netns: network.netns, dnsmasqPid: network.dnsmasq.pid })}\n`);
setInterval(() => {}, 60_000);
