import { testIsolationDriver } from "@bmi/core/testing/contracts";
import { expect, it } from "vitest";
import { createHilIsolation } from "../src/index.js";
import { startHilServer } from "../src/testing/index.js";
import { ADMIN, ALICE, hilFixture, isolationFixture } from "./fixture.js";

for (const [label, credentials] of [
  ["a project member (database auth)", ALICE],
  ["an administrator (database auth)", ADMIN],
] as const) {
  testIsolationDriver({
    name: `hil client against the HIL-compatible server, as ${label}`,
    create: async () => {
      const server = await startHilServer({ fixture: hilFixture, auth: "basic", actionDelayMs: 5 });
      const driver = createHilIsolation({ url: server.url, ...credentials, pollMs: 5, retryBaseMs: 5 });
      return { driver, fixture: isolationFixture, cleanup: () => server.close() };
    },
    additionalTests: (ctx) => {
      it("leaves out nothing HIL reports: an uncabled NIC is still listed", async () => {
        const info = await ctx().driver.node("node1");
        expect(info.nics).toEqual([
          { label: "eth0", mac: "52:54:00:aa:bb:01" },
          { label: "eth1", mac: "52:54:00:aa:bb:11" },
        ]);
      });
    },
  });
}

testIsolationDriver({
  name: "hil client against the HIL-compatible server, null auth",
  create: async () => {
    const server = await startHilServer({ fixture: hilFixture, auth: "none", actionDelayMs: 0 });
    const driver = createHilIsolation({ url: server.url, pollMs: 5 });
    return { driver, fixture: isolationFixture, cleanup: () => server.close() };
  },
});
