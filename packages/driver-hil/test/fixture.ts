import type { IsolationFixture } from "@bmi/core/testing/contracts";
import type { HilFixture } from "../src/testing/index.js";

export const ADMIN = { username: "admin", password: "admin-secret-pw" };
export const ALICE = { username: "alice", password: "alice-Secret-9f3" };

/** A small HIL world: proj1 owns node1, node2 is free, proj2 owns node3. */
export const hilFixture: HilFixture = {
  projects: ["proj1", "proj2"],
  users: [
    { name: ADMIN.username, password: ADMIN.password, isAdmin: true },
    { name: ALICE.username, password: ALICE.password, projects: ["proj1"] },
    { name: "bob", password: "bob-pw-123", projects: ["proj2"] },
  ],
  nodes: [
    {
      name: "node1",
      project: "proj1",
      metadata: { rack: "r1", slot: 5 },
      nics: [
        { label: "eth0", macaddr: "52:54:00:AA:BB:01" },
        { label: "eth1", macaddr: "52:54:00:aa:bb:11", cable: false },
      ],
    },
    { name: "node2", nics: [{ label: "eth0", macaddr: "52:54:00:aa:bb:02" }] },
    { name: "node3", project: "proj2", nics: [{ label: "eth0", macaddr: "52:54:00:aa:bb:03" }] },
  ],
  networks: [
    { name: "prov", owner: "admin", access: ["proj1"], netId: "300" },
    { name: "pub", owner: "admin" },
    { name: "net2", owner: "proj2", access: ["proj2"] },
  ],
};

export const isolationFixture: IsolationFixture = {
  project: "proj1",
  node: "node1",
  nic: "eth0",
  mac: "52:54:00:AA:BB:01",
  freeNode: "node2",
  freeNic: "eth0",
  foreignNode: "node3",
  network: "prov",
  otherNetwork: "pub",
};
