import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { BmiError, type ErrorCode } from "../../errors/bmi-error.js";
import type { IsolationDriver } from "../../ports/isolation.js";

/** What the isolation service was seeded with, so the suite knows what to expect. */
export interface IsolationFixture {
  /** A project that owns `node`. */
  project: string;
  /** A node owned by `project`, with no network attachments. */
  node: string;
  /** A NIC of `node` that can be attached to networks (cabled, in HIL terms). */
  nic: string;
  /** That NIC's MAC address, in any case; the driver must report it lower-case with colons. */
  mac: string;
  /** A node owned by no project. */
  freeNode: string;
  /** A NIC of `freeNode`. */
  freeNic: string;
  /** A node owned by another project. */
  foreignNode: string;
  /** A network `project` may attach to. */
  network: string;
  /** A second network `project` may attach to. */
  otherNetwork: string;
}

export interface IsolationDriverHarness {
  driver: IsolationDriver;
  fixture: IsolationFixture;
  cleanup?: () => Promise<void> | void;
}

export interface IsolationDriverSuiteOptions {
  name: string;
  /** Called before every case: a fresh driver over a fresh service seeded with the fixture. */
  create: () => Promise<IsolationDriverHarness>;
  /** Switch off groups of cases; say why in a comment where you do. */
  skip?: { networks?: boolean };
  additionalTests?: (context: () => IsolationDriverHarness) => void;
}

async function rejection(promise: Promise<unknown>): Promise<BmiError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(BmiError);
    return error as BmiError;
  }
  throw new Error("expected the call to fail, but it succeeded");
}

async function expectCode(promise: Promise<unknown>, code: ErrorCode): Promise<BmiError> {
  const error = await rejection(promise);
  expect(error.code, error.message).toBe(code);
  expect(error.subsystem).toBe("isolation");
  return error;
}

/**
 * The contract every IsolationDriver passes (the unstorage `testDriver` pattern): the in-memory
 * driver in unit tests, the HIL client against the HIL-compatible server.
 */
export function testIsolationDriver(options: IsolationDriverSuiteOptions): void {
  describe(`IsolationDriver contract: ${options.name}`, () => {
    let current: IsolationDriverHarness | undefined;
    const ctx = (): IsolationDriverHarness => {
      if (!current) throw new Error("the harness was not created");
      return current;
    };

    beforeEach(async () => {
      current = await options.create();
    });
    afterEach(async () => {
      const harness = current;
      current = undefined;
      await harness?.cleanup?.();
    });

    nodeInfoCases(ctx);

    authorizeCases(ctx);

    networkCases(ctx, options);

    options.additionalTests?.(ctx);
  });
}

function nodeInfoCases(ctx: () => IsolationDriverHarness) {
  describe("node info", () => {
    it("reports an owned node's project and its NICs with lower-case MACs", async () => {
      const { driver, fixture } = ctx();
      const info = await driver.node(fixture.node);
      expect(info.name).toBe(fixture.node);
      expect(info.project).toBe(fixture.project);
      const nic = info.nics.find((n) => n.label === fixture.nic);
      expect(nic?.mac).toBe(fixture.mac.toLowerCase().replaceAll("-", ":"));
    });

    it("reports a free node with project null", async () => {
      const { driver, fixture } = ctx();
      const info = await driver.node(fixture.freeNode);
      expect(info.project).toBeNull();
      expect(info.nics.map((n) => n.label)).toContain(fixture.freeNic);
    });

    it("fails with not_found for an unknown node", async () => {
      const { driver } = ctx();
      const error = await expectCode(driver.node("no-such-node-4711"), "not_found");
      expect(error.message).toContain("no-such-node-4711");
    });

    it("rejects a malformed node name with invalid_input before calling the service", async () => {
      const { driver } = ctx();
      await expectCode(driver.node("../etc/passwd"), "invalid_input");
      await expectCode(driver.node("a/b"), "invalid_input");
    });

    it("honours an aborted signal", async () => {
      const { driver, fixture } = ctx();
      const controller = new AbortController();
      controller.abort();
      await expectCode(driver.node(fixture.node, { signal: controller.signal }), "cancelled");
    });
  });
}

function authorizeCases(ctx: () => IsolationDriverHarness) {
  describe("authorize (SEC-2)", () => {
    it("returns the node when the project owns it", async () => {
      const { driver, fixture } = ctx();
      const info = await driver.authorize(fixture.project, fixture.node);
      expect(info.name).toBe(fixture.node);
      expect(info.project).toBe(fixture.project);
      expect(info.nics.map((n) => n.label)).toContain(fixture.nic);
    });

    it("refuses a free node with forbidden", async () => {
      const { driver, fixture } = ctx();
      const error = await expectCode(driver.authorize(fixture.project, fixture.freeNode), "forbidden");
      expect(error.retryable).toBe(false);
      expect(error.fault).toBe("client");
    });

    it("refuses another project's node with forbidden", async () => {
      const { driver, fixture } = ctx();
      await expectCode(driver.authorize(fixture.project, fixture.foreignNode), "forbidden");
    });

    it("fails with not_found for an unknown node", async () => {
      const { driver, fixture } = ctx();
      await expectCode(driver.authorize(fixture.project, "no-such-node-4711"), "not_found");
    });

    it("rejects a malformed project name with invalid_input", async () => {
      const { driver, fixture } = ctx();
      await expectCode(driver.authorize("p/../x", fixture.node), "invalid_input");
    });
  });
}

function networkCases(ctx: () => IsolationDriverHarness, options: IsolationDriverSuiteOptions) {
  describe.skipIf(options.skip?.networks === true)("networks", () => {
    it("starts with no attachments on the fixture node", async () => {
      const { driver, fixture } = ctx();
      expect(await driver.attachments(fixture.node)).toEqual([]);
    });

    it("attaches a NIC and reports the attachment on vlan/native by default", async (t) => {
      const { driver, fixture } = ctx();
      if (!driver.capabilities.networks) t.skip();
      await driver.attach({ node: fixture.node, nic: fixture.nic, network: fixture.network });
      expect(await driver.attachments(fixture.node)).toEqual([
        { node: fixture.node, nic: fixture.nic, network: fixture.network, channel: "vlan/native" },
      ]);
    });

    it("attach is idempotent", async (t) => {
      const { driver, fixture } = ctx();
      if (!driver.capabilities.networks) t.skip();
      const attachment = { node: fixture.node, nic: fixture.nic, network: fixture.network };
      await driver.attach(attachment);
      await driver.attach(attachment);
      expect(await driver.attachments(fixture.node)).toHaveLength(1);
    });

    it("detaches, and detaching what is not attached is fine", async (t) => {
      const { driver, fixture } = ctx();
      if (!driver.capabilities.networks) t.skip();
      const attachment = { node: fixture.node, nic: fixture.nic, network: fixture.network };
      await driver.attach(attachment);
      await driver.detach(attachment);
      expect(await driver.attachments(fixture.node)).toEqual([]);
      await driver.detach(attachment);
      expect(await driver.attachments(fixture.node)).toEqual([]);
    });

    it("lists the nodes on a network (networkAttachments), per project where the account must", async (t) => {
      const { driver, fixture } = ctx();
      if (!driver.capabilities.networks || !driver.networkAttachments) t.skip();
      // A project member may not list an admin-owned network whole; it passes its projects.
      const projects = [fixture.project];
      const list = (network: string) =>
        driver.networkAttachments?.(network, { projects }) ?? Promise.resolve([]);
      expect(await list(fixture.network)).toEqual([]);
      await driver.attach({ node: fixture.node, nic: fixture.nic, network: fixture.network });
      expect(await list(fixture.network)).toEqual([
        { node: fixture.node, nic: fixture.nic, network: fixture.network, channel: "vlan/native" },
      ]);
      await expectCode(list("net-none-9"), "not_found");
    });

    attachRefusalCases(ctx);
  });
}

/** Attaches HIL refuses (a busy channel, unknown parts, a free node) and malformed ones. */
function attachRefusalCases(ctx: () => IsolationDriverHarness) {
  it("refuses a second network on a channel already in use with conflict", async (t) => {
    const { driver, fixture } = ctx();
    if (!driver.capabilities.networks) t.skip();
    await driver.attach({ node: fixture.node, nic: fixture.nic, network: fixture.network });
    await expectCode(
      driver.attach({ node: fixture.node, nic: fixture.nic, network: fixture.otherNetwork }),
      "conflict",
    );
    expect((await driver.attachments(fixture.node)).map((a) => a.network)).toEqual([fixture.network]);
  });

  it("fails with not_found for an unknown NIC, network or node", async (t) => {
    const { driver, fixture } = ctx();
    if (!driver.capabilities.networks) t.skip();
    await expectCode(
      driver.attach({ node: fixture.node, nic: "eth-none-9", network: fixture.network }),
      "not_found",
    );
    await expectCode(
      driver.attach({ node: fixture.node, nic: fixture.nic, network: "no-such-net-4711" }),
      "not_found",
    );
    await expectCode(
      driver.attach({ node: "no-such-node-4711", nic: fixture.nic, network: fixture.network }),
      "not_found",
    );
    await expectCode(driver.attachments("no-such-node-4711"), "not_found");
    expect(await driver.attachments(fixture.node)).toEqual([]);
  });

  it("refuses to attach a free node (HIL: node not in a project) with conflict", async (t) => {
    const { driver, fixture } = ctx();
    if (!driver.capabilities.networks) t.skip();
    await expectCode(
      driver.attach({ node: fixture.freeNode, nic: fixture.freeNic, network: fixture.network }),
      "conflict",
    );
    expect(await driver.attachments(fixture.freeNode)).toEqual([]);
  });

  it("rejects a malformed attachment with invalid_input", async () => {
    const { driver, fixture } = ctx();
    await expectCode(
      driver.attach({ node: fixture.node, nic: "eth0/../x", network: fixture.network }),
      "invalid_input",
    );
    await expectCode(driver.detach({ node: fixture.node, nic: fixture.nic, network: "" }), "invalid_input");
  });
}
