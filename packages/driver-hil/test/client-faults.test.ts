import { BmiError, loadConfig } from "@bmi/core";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import {
  backoffDelay,
  createHilClient,
  createHilIsolation,
  errorFromResponse,
  hilOptionsFromConfig,
} from "../src/index.js";
import { type HilServer, startHilServer } from "../src/testing/index.js";
import { ALICE, hilFixture } from "./fixture.js";

let server: HilServer;
beforeEach(async () => {
  server = await startHilServer({ fixture: hilFixture, auth: "basic", actionDelayMs: 5 });
});
afterEach(async () => {
  await server.close();
});

const fast = { retryBaseMs: 1, retryMaxMs: 5, pollMs: 2 };

async function failure(promise: Promise<unknown>): Promise<BmiError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(BmiError);
  const bmi = error as BmiError;
  expect(bmi.subsystem).toBe("isolation");
  // The password must never leak, whatever happened.
  const everything = JSON.stringify({ message: bmi.message, details: bmi.details, json: bmi.toJSON() });
  expect(everything).not.toContain(ALICE.password);
  expect(everything).not.toContain(Buffer.from(`${ALICE.username}:${ALICE.password}`).toString("base64"));
  return bmi;
}

describe("HIL client: injected faults", () => {
  it("retries a 500 and succeeds when the service recovers within the bound", async () => {
    const driver = createHilIsolation({ url: server.url, ...ALICE, retries: 3, ...fast });
    server.faults.status({ match: "GET /v0/node/node1", status: 500, times: 2 });
    expect((await driver.node("node1")).project).toBe("proj1");
    expect(server.faults.requests.get("GET /v0/node/node1")).toBe(3);
  });

  it("gives up after retries+1 attempts with a retryable unavailable error naming the status", async () => {
    const driver = createHilIsolation({ url: server.url, ...ALICE, retries: 2, ...fast });
    server.faults.status({ match: "GET /v0/node/node1", status: 500, times: Infinity });
    const error = await failure(driver.node("node1"));
    expect(error.code).toBe("unavailable");
    expect(error.retryable).toBe(true);
    expect(error.fault).toBe("server");
    expect(error.message).toContain("HTTP 500");
    expect(error.details).toMatchObject({ status: 500, attempts: 3, msg: "injected fault" });
    expect(server.faults.requests.get("GET /v0/node/node1")).toBe(3);
  });

  it("treats a dropped connection as unavailable and retries it", async () => {
    const driver = createHilIsolation({ url: server.url, ...ALICE, retries: 1, ...fast });
    server.faults.drop({ match: "/v0/node/node1", times: 1 });
    expect((await driver.node("node1")).name).toBe("node1");
    server.faults.drop({ match: "/v0/node/node1", times: Infinity });
    const error = await failure(driver.node("node1"));
    expect(error.code).toBe("unavailable");
    expect(error.message).toMatch(/cannot reach the service/);
    expect(error.details.attempts).toBe(2);
  });

  it("times out a slow call per attempt and reports a retryable timeout", async () => {
    const driver = createHilIsolation({ url: server.url, ...ALICE, retries: 1, timeoutMs: 50, ...fast });
    server.faults.delay({ match: "/v0/node/node1", ms: 1_000, times: Infinity });
    const error = await failure(driver.node("node1"));
    expect(error.code).toBe("timeout");
    expect(error.retryable).toBe(true);
    expect(error.details.attempts).toBe(2);
  });

  it("does not retry client errors: 404, 401, 400 are final after one attempt", async () => {
    const driver = createHilIsolation({ url: server.url, ...ALICE, retries: 5, ...fast });
    server.faults.status({
      match: "/v0/node/node1",
      status: 404,
      body: { type: "NotFoundError", msg: "Node node1 does not exist." },
    });
    expect((await failure(driver.node("node1"))).code).toBe("not_found");
    server.faults.status({ match: "/v0/node/node1", status: 400 });
    expect((await failure(driver.node("node1"))).code).toBe("invalid_input");
    expect(server.faults.requests.get("GET /v0/node/node1")).toBe(2);
  });

  it("maps 401 by message: bad credentials → unauthenticated, no access → forbidden; unknown user → unauthenticated", async () => {
    const wrong = createHilIsolation({
      url: server.url,
      username: "alice",
      password: "not-the-Password-77",
      ...fast,
    });
    const bad = await failure(wrong.node("node1"));
    expect(bad.code).toBe("unauthenticated");
    expect(bad.message).not.toContain("not-the-Password-77");
    const ghost = createHilIsolation({
      url: server.url,
      username: "ghost",
      password: "ghost-Password-77",
      ...fast,
    });
    expect((await failure(ghost.node("node1"))).code).toBe("unauthenticated");
    const driver = createHilIsolation({ url: server.url, ...ALICE, ...fast });
    const denied = await failure(driver.node("node3"));
    expect(denied.code).toBe("forbidden");
    expect(denied.details).toMatchObject({ status: 401, type: "AuthorizationError" });
    // SEC-2 also holds when the member cannot even read the foreign node.
    expect((await failure(driver.authorize("proj1", "node3"))).code).toBe("forbidden");
  });

  it("a pending action on the NIC is busy and retried; it succeeds once the action ends", async () => {
    const driver = createHilIsolation({
      url: server.url,
      ...ALICE,
      retries: 20,
      retryBaseMs: 5,
      retryMaxMs: 20,
      pollMs: 2,
    });
    server.faults.nextAction({ outcome: "hold" });
    await driver.client.connectNetwork("node1", "eth0", "pub");
    const attach = driver.attach({ node: "node1", nic: "eth0", network: "prov", channel: "vlan/300" });
    // Let the client hit the 409 at least once, then let the daemon finish the first action.
    while ((server.faults.requests.get("POST /v0/node/node1/nic/eth0/connect_network") ?? 0) < 3) {
      await new Promise((r) => setTimeout(r, 5));
    }
    server.releaseActions();
    await attach;
    expect((await driver.attachments("node1")).map((a) => a.network).sort()).toEqual(["prov", "pub"]);
  });

  it("busy beyond the retry bound ends in a retryable busy error", async () => {
    const driver = createHilIsolation({ url: server.url, ...ALICE, retries: 2, ...fast });
    server.faults.nextAction({ outcome: "hold" });
    await driver.client.connectNetwork("node1", "eth0", "pub");
    const error = await failure(
      driver.attach({ node: "node1", nic: "eth0", network: "prov", channel: "vlan/300" }),
    );
    expect(error.code).toBe("busy");
    expect(error.retryable).toBe(true);
    expect(error.details).toMatchObject({ status: 409, type: "BlockedError", attempts: 3 });
  });

  it("an action that ends in ERROR makes attach fail with unavailable and leaves nothing attached", async () => {
    const driver = createHilIsolation({ url: server.url, ...ALICE, ...fast });
    server.faults.nextAction({ outcome: "error" });
    const error = await failure(driver.attach({ node: "node1", nic: "eth0", network: "prov" }));
    expect(error.code).toBe("unavailable");
    expect(error.message).toMatch(/switch reported an error/);
    expect(await driver.attachments("node1")).toEqual([]);
  });

  it("an action that stays PENDING makes attach time out at its bound", async () => {
    const driver = createHilIsolation({ url: server.url, ...ALICE, ...fast, actionTimeoutMs: 100 });
    server.faults.nextAction({ outcome: "hold" });
    const error = await failure(driver.attach({ node: "node1", nic: "eth0", network: "prov" }));
    expect(error.code).toBe("timeout");
    expect(error.details).toMatchObject({ node: "node1", nic: "eth0", network: "prov" });
  });

  it("aborting while waiting cancels the attach", async () => {
    const driver = createHilIsolation({ url: server.url, ...ALICE, ...fast });
    server.faults.nextAction({ outcome: "hold" });
    const controller = new AbortController();
    const attach = driver.attach(
      { node: "node1", nic: "eth0", network: "prov" },
      { signal: controller.signal },
    );
    while (server.state.actions.size === 0) await new Promise((r) => setTimeout(r, 2));
    controller.abort();
    expect((await failure(attach)).code).toBe("cancelled");
  });

  it("aborting while the connect POST is in flight: outcome unknown, and an undo that finds nothing yet is left for reconcile", async () => {
    const driver = createHilIsolation({ url: server.url, ...ALICE, ...fast });
    const post = "POST /v0/node/node1/nic/eth0/connect_network";
    // HIL has the request but answers late; it applies it after the caller has gone.
    server.faults.delay({ match: post, ms: 300 });
    const controller = new AbortController();
    const attach = driver.attach(
      { node: "node1", nic: "eth0", network: "prov" },
      { signal: controller.signal },
    );
    while (!server.faults.requests.get(post)) await new Promise((r) => setTimeout(r, 2));
    controller.abort();
    const error = await failure(attach);
    expect(error.code).toBe("cancelled");
    expect(error.details.outcome).toBe("unknown");
    const undo = await failure(driver.detach({ node: "node1", nic: "eth0", network: "prov" }));
    expect(undo.details.outcome).toBe("unknown");
    expect(undo.message).toContain("left for reconcile()");
    expect(server.faults.requests.get(post)).toBe(1);
  });

  it("a connect whose response was lost is not repeated: the driver watches show_node and succeeds", async () => {
    let lost = 0;
    const driver = createHilIsolation({
      url: server.url,
      ...ALICE,
      retries: 20,
      retryBaseMs: 2,
      retryMaxMs: 10,
      pollMs: 2,
      // The request reaches HIL and queues the action, but the answer never arrives.
      fetch: async (input, init) => {
        const response = await fetch(input, init);
        if (input.endsWith("/connect_network") && lost++ === 0) throw new TypeError("fetch failed");
        return response;
      },
    });
    await driver.attach({ node: "node1", nic: "eth0", network: "prov" });
    expect(lost).toBe(1);
    expect(server.faults.requests.get("POST /v0/node/node1/nic/eth0/connect_network")).toBe(1);
    expect(await driver.attachments("node1")).toEqual([
      { node: "node1", nic: "eth0", network: "prov", channel: "vlan/native" },
    ]);
  });
});

describe("waitForNetworkingAction", () => {
  it("reports SUCCESS, FAILURE, TIMEOUT and ABORTED", async () => {
    const client = createHilClient({ url: server.url, ...ALICE });
    const poll = { minDelayMs: 2, maxDelayMs: 5 };
    const done = await client.connectNetwork("node1", "eth0", "prov");
    expect(await client.waitForNetworkingAction(done, poll)).toMatchObject({
      state: "SUCCESS",
      action: { status: "DONE" },
    });
    server.faults.nextAction({ outcome: "error" });
    const failed = await client.detachNetwork("node1", "eth0", "prov");
    expect(await client.waitForNetworkingAction(failed, poll)).toMatchObject({
      state: "FAILURE",
      action: { status: "ERROR" },
    });
    server.faults.nextAction({ outcome: "hold" });
    const held = await client.detachNetwork("node1", "eth0", "prov");
    expect(await client.waitForNetworkingAction(held, { ...poll, maxWaitMs: 30 })).toMatchObject({
      state: "TIMEOUT",
      action: { status: "PENDING" },
    });
    const controller = new AbortController();
    const waiting = client.waitForNetworkingAction(held, { ...poll, signal: controller.signal });
    controller.abort();
    expect((await waiting).state).toBe("ABORTED");
  });

  it("on 404 (replaced by a newer action) decides from show_node", async () => {
    const client = createHilClient({ url: server.url, ...ALICE });
    const first = await client.connectNetwork("node1", "eth0", "prov");
    expect((await client.waitForNetworkingAction(first, { minDelayMs: 2 })).state).toBe("SUCCESS");
    const second = await client.connectNetwork("node1", "eth0", "pub", { channel: "vlan/100" });
    expect((await client.waitForNetworkingAction(second, { minDelayMs: 2 })).state).toBe("SUCCESS");
    const expect1 = { node: "node1", nic: "eth0", network: "prov", attached: true };
    expect((await client.waitForNetworkingAction(first, { expect: expect1 })).state).toBe("SUCCESS");
    expect(
      (await client.waitForNetworkingAction(first, { expect: { ...expect1, attached: false } })).state,
    ).toBe("FAILURE");
    expect((await client.waitForNetworkingAction(first)).state).toBe("FAILURE");
  });
});

describe("HIL client: requests and options", () => {
  it("keeps the endpoint's path prefix and encodes path segments", async () => {
    const seen: string[] = [];
    const client = createHilClient({
      url: "http://hil.example:8080/prefix/",
      fetch: async (input) => {
        seen.push(input);
        return new Response(JSON.stringify(["a"]), {
          status: 200,
          headers: { "Content-Type": "text/html; charset=utf-8" },
        });
      },
    });
    expect(await client.listProjectNodes("my project")).toEqual(["a"]);
    expect(seen).toEqual(["http://hil.example:8080/prefix/v0/project/my%20project/nodes"]);
  });

  it("sends JSON with Content-Type application/json and Basic auth", async () => {
    let init: RequestInit | undefined;
    const client = createHilClient({
      url: "http://hil.example",
      ...ALICE,
      fetch: async (_input, i) => {
        init = i;
        return new Response(null, { status: 200 });
      },
    });
    await client.projectConnectNode("proj1", "node2");
    const headers = init?.headers as Record<string, string>;
    expect(headers["Content-Type"]).toBe("application/json");
    expect(headers.Authorization).toBe(`Basic ${Buffer.from("alice:alice-Secret-9f3").toString("base64")}`);
    expect(init?.body).toBe('{"node":"node2"}');
    expect(init?.method).toBe("POST");
  });

  it("rejects names outside HIL's safe set, and a response of the wrong shape", async () => {
    const client = createHilClient({
      url: "http://hil.example",
      fetch: async () => new Response('{"name": 5}', { status: 200 }),
    });
    await expect(client.showNode("a/b")).rejects.toMatchObject({ code: "invalid_input" });
    await expect(client.showNode("a\nb")).rejects.toMatchObject({ code: "invalid_input" });
    await expect(client.showNode("node1")).rejects.toMatchObject({
      code: "internal",
      subsystem: "isolation",
    });
  });

  it("validates options, refusing credentials embedded in the URL without echoing them", () => {
    expect(() => createHilClient({ url: "ftp://x" })).toThrow(/url/);
    let error: unknown;
    try {
      createHilClient({ url: "http://alice:s3cret-Pw@hil" });
    } catch (e) {
      error = e;
    }
    expect(error).toMatchObject({ code: "invalid_input" });
    expect(JSON.stringify((error as BmiError).toJSON())).not.toContain("s3cret-Pw");
    expect(() => createHilIsolation({ url: "http://hil", retries: -1 })).toThrow(/options\.retries/);
  });

  it("maps HIL error bodies: pending BlockedError busy, other 409 conflict (not retryable), HTML 500", () => {
    const r = { method: "POST", path: "/v0/x" };
    const busy = errorFromResponse(
      409,
      '{"type":"BlockedError","msg":"A networking operation is already active on the nic."}',
      r,
    );
    expect([busy.code, busy.retryable]).toEqual(["busy", true]);
    const owned = errorFromResponse(
      409,
      '{"type":"BlockedError","msg":"Node is already owned by a project."}',
      r,
    );
    expect([owned.code, owned.retryable]).toEqual(["conflict", false]);
    const html = errorFromResponse(500, "<title>500</title><p>No more networks</p>", r);
    expect(html.code).toBe("unavailable");
    expect(html.message).toContain("No more networks");
  });

  it("backs off exponentially with jitter, capped", () => {
    expect(backoffDelay(0, 100, 2000, () => 0)).toBe(50);
    expect(backoffDelay(0, 100, 2000, () => 1)).toBe(100);
    expect(backoffDelay(3, 100, 2000, () => 1)).toBe(800);
    expect(backoffDelay(10, 100, 2000, () => 1)).toBe(2000);
    expect(backoffDelay(10, 100, 2000, () => 0)).toBe(1000);
  });

  it("takes url, timeouts, channel and credentials from the config, else HIL_USERNAME/HIL_PASSWORD", () => {
    const { config } = loadConfig({
      text: "[bmi]\nuid = 1\nsnapshot = s\n[db]\npath = /tmp/x.db\n[fs]\nid = a\npool = p\nconf_file = /etc/ceph/ceph.conf\n[haas]\nurl = http://hil:80\ntimeout_ms = 4000\naction_timeout_ms = 90000\n[iscsi]\nip = 127.0.0.1\n[tftp]\nipxe_path = /srv/tftp/\npxelinux_path = /srv/tftp/pxelinux.cfg/\n",
    });
    expect(hilOptionsFromConfig(config, { HIL_USERNAME: "u", HIL_PASSWORD: "p" })).toEqual({
      url: "http://hil:80",
      timeoutMs: 4000,
      actionTimeoutMs: 90_000,
      channel: "vlan/native",
      username: "u",
      password: "p",
    });
    const withCredentials = { net_isolator: { ...config.net_isolator, username: "bmi", password: "secret" } };
    expect(hilOptionsFromConfig(withCredentials, { HIL_USERNAME: "u", HIL_PASSWORD: "p" })).toMatchObject({
      username: "bmi",
      password: "secret",
    });
  });
});

describe("HIL driver: requests per attach and detach", () => {
  const attachment = { node: "node1", nic: "eth0", network: "prov" };
  const count = (key: string) => server.faults.requests.get(key) ?? 0;

  it("a fresh attach or detach is one POST plus polls, no show_node; repeats are answered by HIL's own 409/400", async () => {
    const driver = createHilIsolation({ url: server.url, ...ALICE, ...fast });
    await driver.attach(attachment);
    expect(count("POST /v0/node/node1/nic/eth0/connect_network")).toBe(1);
    expect(count("GET /v0/node/node1")).toBe(0);
    // Attached already: HIL says 409 "already attached", one show_node confirms it, no error.
    await driver.attach(attachment);
    expect(count("GET /v0/node/node1")).toBe(1);
    expect(await driver.attachments("node1")).toEqual([{ ...attachment, channel: "vlan/native" }]);
    const conflict = await failure(driver.attach({ ...attachment, channel: "vlan/300" }));
    expect(conflict.code).toBe("conflict");
    expect(conflict.message).toContain("already attached to eth0 on vlan/native");
    const shows = count("GET /v0/node/node1");
    await driver.detach(attachment);
    expect(count("POST /v0/node/node1/nic/eth0/detach_network")).toBe(1);
    expect(count("GET /v0/node/node1")).toBe(shows);
    // Not attached any more: HIL's 400 "not attached" is success; an unknown network still 404s.
    await driver.detach(attachment);
    expect(await driver.attachments("node1")).toEqual([]);
    expect((await failure(driver.detach({ ...attachment, network: "nowhere" }))).code).toBe("not_found");
    expect((await failure(driver.attach({ ...attachment, nic: "eth9" }))).code).toBe("not_found");
  });
});

describe("HIL client: networking-action waiter", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("polls again within 25 ms by default, then backs off", async () => {
    vi.useFakeTimers();
    const polls: number[] = [];
    const answers = ["PENDING", "PENDING", "PENDING", "DONE"];
    const client = createHilClient({
      url: "http://hil.invalid",
      fetch: async () => {
        polls.push(Date.now());
        const status = answers[polls.length - 1] ?? "DONE";
        return new Response(
          JSON.stringify({
            status,
            node: "node1",
            nic: "eth0",
            type: "modify_port",
            channel: "vlan/native",
            new_network: "prov",
          }),
        );
      },
    });
    const started = Date.now();
    const waiting = client.waitForNetworkingAction("00000000-0000-4000-8000-000000000000");
    await vi.advanceTimersByTimeAsync(25);
    expect(polls.length).toBe(2);
    await vi.advanceTimersByTimeAsync(1_000);
    expect((await waiting).state).toBe("SUCCESS");
    const gaps = polls.slice(1).map((t, i) => t - (polls[i] ?? started));
    expect(gaps[0]).toBeLessThanOrEqual(25);
    expect(gaps[2]).toBeGreaterThan(gaps[0] ?? 0);
  });
});
