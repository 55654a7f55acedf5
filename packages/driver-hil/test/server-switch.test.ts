import { afterEach, expect, it } from "vitest";
import { createHilIsolation } from "../src/index.js";
import { type HilServer, type SwitchBackend, startHilServer } from "../src/testing/index.js";

// The HIL-compatible server's switch back end: what its networking daemon asks of the switch, and
// what a switch that refuses does to the action. A recording switch here; the lab's bridge-backed
// one runs in test/e2e/network-isolation.test.ts.

let server: HilServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

function recordingSwitch(refuse = false) {
  const calls: string[] = [];
  const backend: SwitchBackend = {
    async attach(nic, vlan) {
      calls.push(
        `attach ${nic.switch}/${nic.port} ${nic.node}/${nic.nic} vlan ${vlan.id}${vlan.tagged ? " tagged" : ""}`,
      );
      if (refuse) throw new Error("the switch says no");
    },
    async detach(nic, vlan) {
      calls.push(`detach ${nic.switch}/${nic.port} vlan ${vlan.id}${vlan.tagged ? " tagged" : ""}`);
    },
  };
  return { calls, backend };
}

const fixture = {
  projects: ["p"],
  switches: [{ name: "sw", ports: ["tap0"] }],
  networks: [{ name: "prov", netId: "100" }],
  nodes: [
    {
      name: "n1",
      project: "p",
      nics: [{ label: "eth0", macaddr: "52:54:00:00:00:01", cable: { switch: "sw", port: "tap0" } }],
    },
  ],
};

it("programs the switch on connect and detach (native = untagged, vlan/<id> = tagged) before the action is DONE", async () => {
  const sw = recordingSwitch();
  server = await startHilServer({ fixture, auth: "none", actionDelayMs: 1, switch: sw.backend });
  const isolation = createHilIsolation({ url: server.url });
  await isolation.attach({ node: "n1", nic: "eth0", network: "prov" });
  expect(await isolation.attachments("n1")).toEqual([
    { node: "n1", nic: "eth0", network: "prov", channel: "vlan/native" },
  ]);
  await isolation.detach({ node: "n1", nic: "eth0", network: "prov" });
  await isolation.attach({ node: "n1", nic: "eth0", network: "prov", channel: "vlan/100" });
  expect(sw.calls).toEqual([
    "attach sw/tap0 n1/eth0 vlan 100",
    "detach sw/tap0 vlan 100",
    "attach sw/tap0 n1/eth0 vlan 100 tagged",
  ]);
});

it("a switch that refuses ends the action in ERROR and attaches nothing", async () => {
  const sw = recordingSwitch(true);
  server = await startHilServer({ fixture, auth: "none", actionDelayMs: 1, switch: sw.backend });
  const isolation = createHilIsolation({ url: server.url, actionTimeoutMs: 5_000 });
  await expect(isolation.attach({ node: "n1", nic: "eth0", network: "prov" })).rejects.toThrow();
  expect(sw.calls).toEqual(["attach sw/tap0 n1/eth0 vlan 100"]);
  expect(await isolation.attachments("n1")).toEqual([]);
});
