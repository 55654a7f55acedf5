import { BmiError } from "@bmi/core";
import { afterEach, describe, expect, it } from "vitest";
import { createHilClient, createHilIsolation } from "../src/index.js";
import { type HilServer, startHilServer } from "../src/testing/index.js";
import { ADMIN, ALICE, hilFixture } from "./fixture.js";

// Issue 19 points 1, 2 and 7: the HIL-compatible server's realism knobs (no per-NIC lock, the
// auth cost, a networking daemon that can stop) and a client that never repeats a POST whose
// outcome is unknown.

const CONNECT = "POST /v0/node/node1/nic/eth0/connect_network";
const DETACH = "POST /v0/node/node1/nic/eth0/detach_network";
const fast = { retryBaseMs: 1, retryMaxMs: 5, pollMs: 2 };
const prov = { node: "node1", nic: "eth0", network: "prov" };

const servers: HilServer[] = [];
async function start(options: Parameters<typeof startHilServer>[0] = {}): Promise<HilServer> {
  const server = await startHilServer({ fixture: hilFixture, auth: "basic", actionDelayMs: 5, ...options });
  servers.push(server);
  return server;
}
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

const basic = `Basic ${Buffer.from(`${ALICE.username}:${ALICE.password}`).toString("base64")}`;
const rawConnect = (server: HilServer) =>
  fetch(`${server.url}/v0/node/node1/nic/eth0/connect_network`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: basic },
    body: JSON.stringify({ network: "prov" }),
  }).then(async (r) => ({ status: r.status, text: await r.text() }));

async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((r) => setTimeout(r, 5));
}

async function failure(promise: Promise<unknown>): Promise<BmiError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(BmiError);
  return error as BmiError;
}

describe("HIL-compatible server: what real HIL does", () => {
  it("with its NIC lock (default), concurrent POSTs stalled together give one 202 and 409s", async () => {
    const server = await start();
    server.faults.delay({ match: CONNECT, ms: 100, times: Infinity });
    const answers = await Promise.all([rawConnect(server), rawConnect(server), rawConnect(server)]);
    expect(answers.map((a) => a.status).sort()).toEqual([202, 409, 409]);
  });

  it("nicLock: false lets stalled POSTs all pass: duplicate rows, then every detach is HTML 500", async () => {
    const server = await start({ knobs: { nicLock: false } });
    server.faults.delay({ match: CONNECT, ms: 100, times: Infinity });
    const answers = await Promise.all([rawConnect(server), rawConnect(server), rawConnect(server)]);
    expect(answers.map((a) => a.status)).toEqual([202, 202, 202]);
    await until(() => [...server.state.actions.values()].every((a) => a.status === "DONE"));
    expect(server.state.nodes.get("node1")?.nics.get("eth0")?.duplicates).toHaveLength(2);

    const driver = createHilIsolation({ url: server.url, ...ALICE, retries: 1, ...fast });
    const error = await failure(driver.detach(prov));
    expect(error.code).toBe("unavailable");
    expect(error.details).toMatchObject({ status: 500 });
    expect(error.message).toMatch(/internal error/);
    // And the node can never be given back: HIL says it is still attached.
    expect(await driver.attachments("node1")).toEqual([{ ...prov, channel: "vlan/native" }]);
  });

  it("authCostMs widens the race: two concurrent POSTs both pass the unlocked check", async () => {
    const server = await start({ knobs: { nicLock: false, authCostMs: 100 } });
    const answers = await Promise.all([rawConnect(server), rawConnect(server)]);
    expect(answers.map((a) => a.status)).toEqual([202, 202]);
    server.knobs.nicLock = true;
    await until(() => [...server.state.actions.values()].every((a) => a.status === "DONE"));
    expect((await rawConnect(server)).status).toBe(409);
  });

  it("a paused networking daemon leaves actions PENDING until it resumes", async () => {
    const server = await start();
    const client = createHilClient({ url: server.url, ...ALICE, ...fast });
    server.pauseDaemon();
    const id = await client.connectNetwork("node1", "eth0", "prov");
    const waited = await client.waitForNetworkingAction(id, { maxWaitMs: 60, minDelayMs: 5 });
    expect(waited.state).toBe("TIMEOUT");
    expect((await client.showNetworkingAction(id)).status).toBe("PENDING");
    server.resumeDaemon();
    expect((await client.showNetworkingAction(id)).status).toBe("DONE");
  });
});

describe("HIL-compatible server: a serial networking daemon", () => {
  it("applies queued actions one at a time, in queue order, each taking actionMs", async () => {
    const server = await start({ knobs: { serialDaemon: true, actionMs: 300 } });
    const admin = createHilClient({ url: server.url, ...ADMIN, ...fast });
    const nodes = ["node1", "node3"]; // the cabled NICs of allocated nodes
    const ids = [];
    for (const node of nodes) ids.push(await admin.connectNetwork(node, "eth0", "pub"));
    const doneOrder: string[] = [];
    const seenTogether: number[] = [];
    while (doneOrder.length < ids.length) {
      const done = ids.filter((id) => server.state.actions.get(id)?.status === "DONE");
      seenTogether.push(done.length - doneOrder.length);
      for (const id of done) if (!doneOrder.includes(id)) doneOrder.push(id);
      await new Promise((r) => setTimeout(r, 5));
    }
    // One action per 300 ms, polled every 5 ms: never two finished between two looks (the margin
    // is wide because this machine's event loop can stall for tens of ms under load).
    expect(doneOrder).toEqual(ids);
    expect(Math.max(...seenTogether)).toBe(1);
  });
});

describe("HIL client: a POST whose outcome is unknown is never repeated", () => {
  it("the issue's reproduction: a stalled connect_network and a short timeout give exactly one POST", async () => {
    const server = await start({ knobs: { nicLock: false } });
    server.faults.delay({ match: CONNECT, ms: 2500, times: Infinity });
    const driver = createHilIsolation({ url: server.url, ...ALICE, timeoutMs: 600, retries: 3, ...fast });
    await driver.attach(prov);
    expect(server.faults.requests.get(CONNECT)).toBe(1);
    expect(server.state.nodes.get("node1")?.nics.get("eth0")?.duplicates).toEqual([]);
    // So the node can still be released.
    await driver.detach(prov);
    expect(await driver.attachments("node1")).toEqual([]);
  });

  it("a POST that timed out is reported with outcome unknown, not retryable, after one attempt", async () => {
    const server = await start();
    server.faults.delay({ match: CONNECT, ms: 300 });
    const client = createHilClient({ url: server.url, ...ALICE, timeoutMs: 50, retries: 3, ...fast });
    const error = await failure(client.connectNetwork("node1", "eth0", "prov"));
    expect(error.code).toBe("timeout");
    expect(error.retryable).toBe(false);
    expect(error.details).toMatchObject({ outcome: "unknown", attempts: 1 });
    expect(error.message).toMatch(/not repeated/);
    expect(server.faults.requests.get(CONNECT)).toBe(1);
  });

  it("a reset after sending and a 504 are not repeated; a 500 or 503 (rolled back) is", async () => {
    const server = await start();
    const client = createHilClient({ url: server.url, ...ALICE, retries: 3, ...fast });
    server.faults.drop({ match: CONNECT });
    expect((await failure(client.connectNetwork("node1", "eth0", "prov"))).details.outcome).toBe("unknown");
    server.faults.status({ match: CONNECT, status: 504 });
    expect((await failure(client.connectNetwork("node1", "eth0", "prov"))).details.outcome).toBe("unknown");
    expect(server.faults.requests.get(CONNECT)).toBe(2);
    server.faults.status({ match: CONNECT, status: 500 });
    server.faults.status({ match: CONNECT, status: 503 });
    expect(await client.connectNetwork("node1", "eth0", "prov")).toMatch(/^[0-9a-f-]{36}$/);
    expect(server.faults.requests.get(CONNECT)).toBe(5);
  });

  it("connection refused (nothing sent) is retried for a POST too", async () => {
    const server = await start();
    const url = server.url;
    await server.close();
    servers.splice(servers.indexOf(server), 1);
    const client = createHilClient({ url, ...ALICE, retries: 2, ...fast });
    const error = await failure(client.connectNetwork("node1", "eth0", "prov"));
    expect(error.code).toBe("unavailable");
    expect(error.retryable).toBe(true);
    expect(error.details.attempts).toBe(3);
    expect(error.details.outcome).toBeUndefined();
  });

  it("GETs are still retried after a timeout (they change nothing)", async () => {
    const server = await start();
    server.faults.delay({ match: "GET /v0/node/node1", ms: 3000 });
    const client = createHilClient({ url: server.url, ...ALICE, timeoutMs: 600, retries: 2, ...fast });
    expect((await client.showNode("node1")).name).toBe("node1");
    expect(server.faults.requests.get("GET /v0/node/node1")).toBe(2);
  });
});

describe("HIL driver: actions on one NIC are serialized, and queued ones followed to their end", () => {
  it("an attach and a detach issued together never collide in HIL (no 409, no retry needed)", async () => {
    const server = await start({ actionDelayMs: 20 });
    const driver = createHilIsolation({ url: server.url, ...ALICE, retries: 0, ...fast });
    await Promise.all([driver.attach(prov), driver.detach(prov), driver.attach(prov)]);
    expect(server.faults.requests.get(CONNECT)).toBe(2);
    expect(server.faults.requests.get(DETACH)).toBe(1);
    expect(await driver.attachments("node1")).toEqual([{ ...prov, channel: "vlan/native" }]);
  });

  it("a detach after an attach that timed out waits for the queued attach by its status id, then detaches", async () => {
    const server = await start();
    const driver = createHilIsolation({ url: server.url, ...ALICE, ...fast, actionTimeoutMs: 80 });
    server.pauseDaemon();
    const timedOut = await failure(driver.attach(prov));
    expect(timedOut.code).toBe("timeout");
    expect(timedOut.details).toMatchObject({ outcome: "unknown" });

    // The daemon is still down: the detach does not POST into HIL's 409, it says what it waits for.
    const stuck = await failure(driver.detach(prov));
    expect(stuck.message).toMatch(/still PENDING in HIL/);
    expect(server.faults.requests.get(DETACH)).toBeUndefined();

    const detach = driver.detach(prov);
    server.resumeDaemon();
    await detach;
    expect(server.faults.requests.get(DETACH)).toBe(1);
    expect(await driver.attachments("node1")).toEqual([]);
  });

  it("a detach after an attach whose answer was lost does not call 'not attached' clean", async () => {
    const server = await start();
    const driver = createHilIsolation({
      url: server.url,
      ...ALICE,
      timeoutMs: 400,
      actionTimeoutMs: 800,
      ...fast,
    });
    // The connect stalls in HIL much longer than the driver waits for it to show up (wide margins:
    // every other request must still answer within timeoutMs on a loaded machine).
    server.faults.delay({ match: CONNECT, ms: 5000 });
    const lost = await failure(driver.attach(prov));
    expect(lost.details.outcome).toBe("unknown");
    const undo = await failure(driver.detach(prov));
    expect(undo.message).toMatch(/outcome is unknown may still be applied/);
    await until(() => server.state.nodes.get("node1")?.nics.get("eth0")?.networks.size === 1);
    await driver.detach(prov);
    expect(await driver.attachments("node1")).toEqual([]);
  });
});
