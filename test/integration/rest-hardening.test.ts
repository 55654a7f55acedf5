/**
 * Issue 22 points 8, 9 and 11 (server side) on the real lab: `bmi serve` checks the caller's
 * credentials with HIL before it reads a body, bounds slow and idle clients and the number of
 * connections, never reflects HTML, and tells tenants what failed without BMI's command lines
 * (those stay in the server log), nor logs a caller who hung up as a server fault.
 */
import { connect, type Socket } from "node:net";
import { type RestServer, startRestServer } from "@bmi/cli";
import { createLogger } from "@bmi/core";
import { type BmiLab, startBmiLab } from "@bmi/lab";
import { afterAll, beforeAll, describe, expect, inject, it, vi } from "vitest";
import { rbdAsClient } from "./ceph-helpers.js";

let lab: BmiLab;
let source: string;
let server: RestServer;
const serverLog: string[] = [];
const opened: RestServer[] = [];
const sockets: Socket[] = [];

const basic = (user: string, password: string) =>
  `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;
let auth: string;

/** A raw HTTP/1.1 exchange: what the server sent until it closed the connection. */
function rawExchange(port: number, head: string, body = ""): { socket: Socket; answer: Promise<string> } {
  const socket = connect(port, "127.0.0.1");
  sockets.push(socket);
  let received = "";
  socket.on("data", (chunk) => {
    received += String(chunk);
  });
  const answer = new Promise<string>((resolve) => {
    socket.on("close", () => resolve(received));
    socket.on("error", () => {});
  });
  socket.write(head + body);
  return { socket, answer };
}

const requestHead = (method: string, path: string, headers: Record<string, string>) =>
  `${method} ${path} HTTP/1.1\r\nHost: bmi\r\n${Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join("")}\r\n`;

async function serve(limits: Parameters<typeof startRestServer>[0]["limits"] = {}): Promise<RestServer> {
  const started = await startRestServer({
    bmi: lab.bmi,
    config: lab.config,
    port: 0,
    limits,
    logger: createLogger({ level: "info" }, { write: (line: string) => serverLog.push(line) }),
  });
  opened.push(started);
  return started;
}

beforeAll(async () => {
  // The rbd CLI back end: its command lines (conf, keyring, id) are what must not reach a tenant.
  lab = await startBmiLab({
    ceph: inject("ceph"),
    nodes: 2,
    hilActionDelayMs: 5,
    configOverrides: { fs: { client: "cli" } },
  });
  auth = basic(lab.hilUser.name, lab.hilUser.password);
  source = `lab${lab.settings.uid}-hard-src`;
  await lab.drivers.storage.create(source, 8 * 1024 * 1024);
  await lab.bmi.importImage({ project: lab.project, source, name: "golden" });
  server = await serve({ headersTimeoutMs: 1_000, requestTimeoutMs: 2_000 });
});

afterAll(async () => {
  for (const socket of sockets) socket.destroy();
  for (const s of opened) await s.close({ graceMs: 0 });
  if (!lab) return;
  for (const image of ["golden", "fragile"]) {
    await lab.bmi.removeImage({ project: lab.project, image }).catch(() => {});
  }
  if (await lab.drivers.storage.exists(source).catch(() => false)) await lab.drivers.storage.remove(source);
  await lab.stop();
});

describe("bmi serve under slow, hostile or vanishing callers", () => {
  it("refuses bogus credentials before reading the body, and closes the connection (22.8)", async () => {
    // A body of 100 kB announced, 10 bytes sent: the answer must not wait for the rest.
    const head = requestHead("PUT", "/provision/", {
      Authorization: basic(lab.hilUser.name, "wrong"),
      "Content-Type": "application/x-www-form-urlencoded",
      "Content-Length": "100000",
    });
    const { answer } = rawExchange(server.port, head, "project=de");
    const text = await answer;
    expect(text).toMatch(/^HTTP\/1\.1 401 /);
    expect(text).toMatch(/connection: close/i);
    expect(text).toContain("Authentication Failed");
    // An unknown user (HIL's 404) is a failed login too.
    const stranger = rawExchange(
      server.port,
      requestHead("PUT", "/provision/", { Authorization: basic("mallory", "x"), "Content-Length": "100000" }),
      "x",
    );
    expect(await stranger.answer).toMatch(/^HTTP\/1\.1 401 /);
  });

  it("a caller whose headers or body never end is cut off by the header and request timeouts (22.8)", async () => {
    const noHeaders = rawExchange(server.port, "PUT /provision/ HTTP/1.1\r\nHost: bmi\r\n");
    expect(await noHeaders.answer).toMatch(/^(HTTP\/1\.1 408 |$)/);
    // Accepted credentials, then a body that never ends.
    const slowBody = rawExchange(
      server.port,
      requestHead("POST", "/list_images/", {
        Authorization: auth,
        "Content-Type": "application/x-www-form-urlencoded",
        "Content-Length": "1000",
      }),
      "project=",
    );
    expect(await slowBody.answer).toMatch(/^(HTTP\/1\.1 408 |$)/);
  }, 20_000);

  it("no more connections than the limit are accepted; a freed slot is usable again (22.8)", async () => {
    const small = await serve({ maxConnections: 2, headersTimeoutMs: 30_000, requestTimeoutMs: 60_000 });
    const held = [rawExchange(small.port, ""), rawExchange(small.port, "")];
    await Promise.all(held.map((h) => new Promise((resolve) => h.socket.once("connect", resolve))));
    const third = rawExchange(small.port, "GET /health HTTP/1.1\r\nHost: bmi\r\n\r\n");
    expect(await third.answer).toBe(""); // dropped at accept, never answered
    held[0]?.socket.destroy();
    await vi.waitFor(
      async () => {
        // Each attempt bounded, so one that raced the slot being freed is simply tried again.
        const health = await fetch(`${small.url}/health`, {
          headers: { connection: "close" },
          signal: AbortSignal.timeout(2_000),
        });
        expect(health.status).toBe(200);
      },
      { timeout: 10_000, interval: 100 },
    );
  });

  it("never reflects HTML: a field named <script> and a NIC with markup come back as plain text (22.9)", async () => {
    const script = "<script>alert(1)</script>";
    const twice = await fetch(`${server.url}/list_images/`, {
      method: "POST",
      headers: { authorization: auth, "content-type": "application/x-www-form-urlencoded" },
      body: `project=demo&${encodeURIComponent(script)}=a&${encodeURIComponent(script)}=b`,
    });
    expect(twice.status).toBe(400);
    expect(twice.headers.get("content-type")).toMatch(/^text\/plain/);
    expect(twice.headers.get("x-content-type-options")).toBe("nosniff");
    expect(await twice.text()).toContain(script); // quoted, but as text a browser does not run

    const nic = '<img src=x onerror="alert(1)">';
    const provision = await fetch(`${server.url}/provision/`, {
      method: "PUT",
      headers: { authorization: auth, "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ project: "demo", node: "node-01", disk_name: "nope", nic }).toString(),
    });
    expect(provision.status).toBeGreaterThanOrEqual(400);
    expect(provision.headers.get("content-type")).toMatch(/^text\/plain/);
    expect(provision.headers.get("x-content-type-options")).toBe("nosniff");
  });

  it("a failing rbd command reaches the tenant without its command line; the server log keeps it (22.11)", async () => {
    const fragile = await lab.bmi.importImage({ project: lab.project, source, name: "fragile" });
    // The golden image's base snapshot disappears behind BMI's back: the clone fails inside rbd.
    const snap = `${lab.ceph.pool}/${fragile.cephName}@${lab.settings.snapshotName}`;
    await rbdAsClient(lab.ceph, ["snap", "unprotect", snap]);
    expect((await rbdAsClient(lab.ceph, ["snap", "rm", snap])).exitCode).toBe(0);
    serverLog.length = 0;
    const r = await fetch(`${server.url}/create_disk`, {
      method: "PUT",
      headers: {
        authorization: auth,
        accept: "application/json",
        "content-type": "application/x-www-form-urlencoded",
      },
      body: new URLSearchParams({ project: "demo", disk_name: "broken", img: "fragile" }).toString(),
    });
    const body = await r.text();
    expect(r.status).toBeGreaterThanOrEqual(400);
    const error = (JSON.parse(body) as { error: { code: string; details: Record<string, unknown> } }).error;
    expect(error.code).not.toBe("internal");
    expect(error.details.command).toBeUndefined();
    // The operation may be named (rbd clone pool/image@snap child), never its argv or identity.
    for (const internal of [lab.ceph.conf, lab.ceph.keyring, "--id", "--conf", "--keyring"]) {
      expect(body).not.toContain(internal);
    }
    // The operator's log has what the tenant was not shown.
    const log = serverLog.join("");
    expect(log).toContain(lab.ceph.conf);
    expect((await lab.bmi.listDisks({ project: lab.project })).map((d) => d.name)).not.toContain("broken");
  });

  it("a caller who hangs up mid-body is logged as gone, not as a server fault (22.11)", async () => {
    // A caller the server has not admitted yet, so its credential check shows in HIL's counts.
    lab.hil.state.users.set("hangup", {
      name: "hangup",
      password: "hangup-password",
      isAdmin: false,
      projects: new Set([lab.project]),
    });
    const checks = () => lab.hil.faults.requests.get("GET /v0/nodes/free") ?? 0;
    const before = checks();
    serverLog.length = 0;
    const { socket, answer } = rawExchange(
      server.port,
      requestHead("POST", "/list_images/", {
        Authorization: basic("hangup", "hangup-password"),
        "Content-Type": "application/x-www-form-urlencoded",
        "Content-Length": "1000",
      }),
      "project=",
    );
    // Once the credentials were admitted (HIL asked), the server waits for the body: hang up then.
    await vi.waitFor(() => expect(checks()).toBeGreaterThan(before), { timeout: 10_000 });
    socket.destroy();
    await answer;
    await vi.waitFor(() => expect(serverLog.join("")).toMatch(/"path":"\/list_images\/"/), {
      timeout: 10_000,
    });
    const log = serverLog.join("");
    expect(log).toContain("client closed the connection");
    expect(log).not.toContain("request failed");
  });
});
