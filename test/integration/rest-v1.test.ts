/**
 * The JSON API /v1 of `bmi serve` over real HTTP on the real lab (Ceph, tgtd, the HIL-compatible
 * server): the OpenAPI document validated and every operation in it answered, a provision seen
 * through the event stream, /metrics counting, TLS with a self-signed certificate, the caller's
 * HIL rights, and the original clients' behaviours on the original routes (issue 21.3, 21.4).
 */
import { readFile } from "node:fs/promises";
import { request as httpsRequest } from "node:https";
import { join } from "node:path";
import SwaggerParser from "@apidevtools/swagger-parser";
import { type HealthDrivers, type RestServer, startRestServer } from "@bmi/cli";
import { type BmiLab, startBmiLab } from "@bmi/lab";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";

let lab: BmiLab;
let source: string;
let server: RestServer;

const basic = (user: string, password: string) =>
  `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;
let member: string; // the lab's user, in project demo
const admin = basic("ops", "ops-password");
const eve = basic("eve", "eve-password");

async function v1(
  method: string,
  path: string,
  options: { auth?: string; body?: unknown } = {},
): Promise<{ status: number; json: unknown; headers: Headers }> {
  const headers: Record<string, string> = { authorization: options.auth ?? member };
  if (options.body !== undefined) headers["content-type"] = "application/json";
  const r = await fetch(`${server.url}${path}`, {
    method,
    headers,
    ...(options.body !== undefined ? { body: JSON.stringify(options.body) } : {}),
  });
  const text = await r.text();
  return { status: r.status, json: text ? JSON.parse(text) : null, headers: r.headers };
}
const codeOf = (r: { json: unknown }) => (r.json as { error: { code: string } }).error.code;

async function form(method: string, path: string, fields: Record<string, string>) {
  const r = await fetch(`${server.url}${path}`, {
    method,
    headers: { authorization: member, "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams(fields).toString(),
  });
  return { status: r.status, body: await r.text() };
}

async function metric(name: string, labels: string): Promise<number> {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name}{${labels}}`));
  return line ? Number(line.split(" ").pop()) : 0;
}

beforeAll(async () => {
  lab = await startBmiLab({ ceph: inject("ceph"), nodes: 3, hilActionDelayMs: 5 });
  member = basic(lab.hilUser.name, lab.hilUser.password);
  source = `lab${lab.settings.uid}-v1-src`;
  await lab.drivers.storage.create(source, 8 * 1024 * 1024);
  await lab.bmi.importImage({ project: lab.project, source, name: "golden" });
  const hil = lab.hil.state;
  hil.projects.add("rival");
  hil.projects.add("sweep");
  hil.users.set("eve", {
    name: "eve",
    password: "eve-password",
    isAdmin: false,
    projects: new Set(["rival"]),
  });
  hil.users.set("ops", { name: "ops", password: "ops-password", isAdmin: true, projects: new Set() });
  const n3 = hil.nodes.get("node-03");
  if (n3) n3.project = "rival";
  await lab.bmi.createProject({ name: "rival" });
  await lab.bmi.createProject({ name: "sweep" });
  const { storage, boot } = lab.drivers;
  const isolation = lab.drivers.isolation as { client?: NonNullable<HealthDrivers["isolation"]>["client"] };
  server = await startRestServer({
    bmi: lab.bmi,
    config: lab.config,
    port: 0,
    drivers: {
      storage,
      export: lab.drivers.export,
      boot,
      ...(isolation.client ? { isolation: { client: isolation.client } } : {}),
    },
  });
});

afterAll(async () => {
  await server?.close({ graceMs: 0 });
  if (!lab) return;
  for (const p of await lab.bmi.listProvisionings())
    await lab.bmi.deprovision({ project: p.project, node: p.node }).catch(() => {});
  for (const d of await lab.bmi.listDisks({ project: lab.project })) {
    await lab.bmi.deleteDisk({ project: lab.project, disk: d.name, force: true }).catch(() => {});
  }
  for (const i of (await lab.bmi.listImages({ project: lab.project })).reverse()) {
    await lab.bmi.removeImage({ project: lab.project, image: i.name }).catch(() => {});
  }
  if (await lab.drivers.storage.exists(source).catch(() => false)) await lab.drivers.storage.remove(source);
  await lab.stop();
});

describe("REST v1", () => {
  it("a disk and a node through /v1, the provision seen on the event stream, /metrics counting", async () => {
    const before = await metric("bmi_operations_total", 'operation="provision",result="ok"');
    const events: { type: string; operation?: string; step?: string }[] = [];
    const stream = new AbortController();
    const sse = await fetch(`${server.url}/v1/projects/demo/events`, {
      headers: { authorization: member },
      signal: stream.signal,
    });
    expect(sse.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const reading = (async () => {
      const decoder = new TextDecoder();
      let buffer = "";
      try {
        for await (const chunk of sse.body as AsyncIterable<Uint8Array>) {
          buffer += decoder.decode(chunk);
          for (const block of buffer.split("\n\n").slice(0, -1)) {
            const data = block.split("\n").find((l) => l.startsWith("data: "));
            if (data) events.push(JSON.parse(data.slice(6)));
          }
          buffer = buffer.split("\n\n").pop() ?? "";
          if (events.some((e) => e.type === "operation:finished" && e.operation === "provision")) break;
        }
      } catch {
        // aborted at the end
      }
    })();

    const disk = await v1("POST", "/v1/projects/demo/disks", { body: { image: "golden", disk: "v1-d1" } });
    expect(disk.status).toBe(201);
    expect((disk.json as { target: { name: string } }).target.name).toMatch(/^iqn\./);
    const node = await v1("PUT", "/v1/projects/demo/nodes/node-01", { body: { disk: "v1-d1", nic: "eth0" } });
    expect(node.status).toBe(200);
    expect(node.json).toMatchObject({ node: "node-01", disk: "v1-d1", nic: "eth0" });
    await reading;
    stream.abort();
    const provision = events.filter((e) => e.operation === "provision");
    expect(provision[0]?.type).toBe("operation:started");
    expect(provision.some((e) => e.type === "step:finished" && e.step === "write boot files")).toBe(true);
    expect(provision.at(-1)?.type).toBe("operation:finished");
    expect(await metric("bmi_operations_total", 'operation="provision",result="ok"')).toBe(before + 1);
    expect(
      await metric(
        "bmi_step_duration_seconds_count",
        'operation="provision",step="write boot files",result="ok"',
      ),
    ).toBeGreaterThan(0);

    const listed = await v1("GET", "/v1/projects/demo/nodes");
    expect((listed.json as { node: string }[]).map((p) => p.node)).toEqual(["node-01"]);
  });

  it("the safer defaults, with an explicit option for each of the original's behaviours", async () => {
    await v1("POST", "/v1/projects/demo/disks", { body: { image: "golden", disk: "v1-d2" } });
    const other = await v1("PUT", "/v1/projects/demo/nodes/node-01", { body: { disk: "v1-d2" } });
    expect([other.status, codeOf(other)]).toEqual([409, "conflict"]);
    const switched = await v1("PUT", "/v1/projects/demo/nodes/node-01", {
      body: { disk: "v1-d2", switchDisk: true },
    });
    expect(switched.status).toBe(200);
    const d2 = (await lab.bmi.listDisks({ project: "demo" })).find((d) => d.name === "v1-d2");
    expect((await lab.drivers.boot.read("node-01"))?.target?.name).toBe(d2?.target?.name);

    const busy = await v1("DELETE", "/v1/projects/demo/disks/v1-d2");
    expect([busy.status, codeOf(busy)]).toEqual([409, "busy"]);
    expect((await v1("DELETE", "/v1/projects/demo/disks/v1-d2?deprovision=true")).status).toBe(204);
    expect(await lab.drivers.boot.read("node-01")).toBeNull();
    expect(await lab.bmi.listProvisionings({ project: "demo" })).toEqual([]);

    const missing = await v1("DELETE", "/v1/projects/demo/nodes/node-01");
    expect([missing.status, codeOf(missing)]).toEqual([404, "not_found"]);
    expect((await v1("DELETE", "/v1/projects/demo/nodes/node-01?missingOk=true")).status).toBe(204);
  });

  it("images, snapshots, mounts and admin routes answer with their resources", async () => {
    const snap = await v1("POST", "/v1/projects/demo/snapshots", {
      body: { disk: "v1-d1", snapshot: "v1-s1" },
    });
    expect(snap.status).toBe(201);
    const snaps = await v1("GET", "/v1/projects/demo/snapshots");
    expect(
      (snaps.json as { image: { name: string }; parent: string }[]).map((s) => [s.image.name, s.parent]),
    ).toEqual([["v1-s1", "golden"]]);
    const copy = await v1("POST", "/v1/projects/demo/images/golden/copy", {
      body: { destProject: "demo", destName: "golden2" },
    });
    expect(copy.status).toBe(201);
    const images = await v1("GET", "/v1/projects/demo/images");
    expect((images.json as { name: string }[]).map((i) => i.name).sort()).toEqual(["golden", "golden2"]);
    const mount = await v1("PUT", "/v1/projects/demo/mounts/golden2");
    expect((mount.json as { name: string }).name).toMatch(/^iqn\./);
    const mounted = async () =>
      ((await v1("GET", "/v1/projects/demo/mounts")).json as { image: string }[]).map((m) => m.image);
    expect(await mounted()).toContain("golden2");
    expect((await v1("DELETE", "/v1/projects/demo/mounts/golden2")).status).toBe(204);
    expect(await mounted()).not.toContain("golden2");
    expect((await v1("DELETE", "/v1/projects/demo/images/golden2")).status).toBe(204);
    expect((await v1("DELETE", "/v1/projects/demo/images/v1-s1")).status).toBe(204);

    const report = await v1("POST", "/v1/reconcile", { auth: admin, body: {} });
    expect(report.status).toBe(200);
    expect((report.json as { drift: unknown[] }).drift).toEqual([]);
    const projects = await v1("GET", "/v1/projects", { auth: admin });
    expect((projects.json as { name: string }[]).map((p) => p.name)).toContain("demo");
    // The lab's nodes have a BMC (HIL -> obmd -> QMP -> qemu): power goes through it.
    const power = await v1("POST", "/v1/projects/demo/nodes/node-02/power", { body: { action: "on" } });
    expect([power.status, power.json]).toEqual([200, { node: "node-02", state: "on" }]);
    const status = await v1("GET", "/v1/projects/demo/nodes/node-02/power");
    expect(status.json).toEqual({ node: "node-02", state: "on" });
    const off = await v1("POST", "/v1/projects/demo/nodes/node-02/power", { body: { action: "off" } });
    expect([off.status, off.json]).toEqual([200, { node: "node-02", state: "off" }]);
    const health = await v1("GET", "/health", { auth: "" });
    expect(health.json).toMatchObject({
      status: "ok",
      checks: { store: { ok: true }, storage: { ok: true }, export: { ok: true }, boot: { ok: true } },
    });
  });

  it("auth: a wrong password 401, another project's node or images 403, admin routes 403 for tenants", async () => {
    const wrong = await v1("GET", "/v1/projects/demo/images", { auth: basic(lab.hilUser.name, "wrong") });
    expect([wrong.status, codeOf(wrong)]).toEqual([401, "unauthenticated"]);
    expect(wrong.headers.get("www-authenticate")).toMatch(/^Basic /);
    const foreignImages = await v1("GET", "/v1/projects/demo/images", { auth: eve });
    expect([foreignImages.status, codeOf(foreignImages)]).toEqual([403, "forbidden"]);
    const foreignNode = await v1("PUT", "/v1/projects/demo/nodes/node-03", { body: { disk: "v1-d1" } });
    expect([foreignNode.status, codeOf(foreignNode)]).toEqual([403, "forbidden"]);
    const tenantAdmin = await v1("GET", "/v1/projects");
    expect([tenantAdmin.status, codeOf(tenantAdmin)]).toEqual([403, "forbidden"]);
    const bad = await v1("POST", "/v1/projects/demo/disks", { body: { image: "golden", disk: "no spaces" } });
    expect([bad.status, codeOf(bad)]).toEqual([400, "invalid_input"]);
    expect((bad.json as { error: { message: string } }).error.message).toMatch(/disk/);
  });

  it("the OpenAPI document is valid OpenAPI 3 and every operation in it answers as documented", async () => {
    const doc = (await v1("GET", "/v1/openapi.json", { auth: "" })).json as {
      paths: Record<string, Record<string, { responses: Record<string, unknown> }>>;
    };
    await SwaggerParser.validate(structuredClone(doc) as never);
    const values: Record<string, string> = { project: "sweep", node: "node-02", image: "nope", disk: "nope" };
    const answered: string[] = [];
    for (const [path, operations] of Object.entries(doc.paths)) {
      for (const [method, operation] of Object.entries(operations)) {
        if (method === "head") continue;
        const url = path.replace(/\{(\w+)\}/g, (_, p: string) => values[p] ?? p);
        const controller = new AbortController();
        const r = await fetch(`${server.url}${url}`, {
          method: method.toUpperCase(),
          headers: {
            authorization: admin,
            ...(method === "get" || method === "delete" ? {} : { "content-type": "application/json" }),
          },
          ...(method === "get" || method === "delete" ? {} : { body: "{}" }),
          signal: controller.signal,
        });
        expect(Object.keys(operation.responses), `${method} ${path} answered ${r.status}`).toContain(
          String(r.status),
        );
        if (r.headers.get("content-type")?.startsWith("text/event-stream")) controller.abort();
        else if (r.status !== 204 && !path.startsWith("/health")) JSON.parse(await r.text());
        answered.push(`${method} ${path}`);
      }
    }
    expect(answered.length).toBeGreaterThanOrEqual(30);
    const docs = await fetch(`${server.url}/v1/docs/`);
    expect([docs.status, await docs.text()]).toEqual([200, expect.stringContaining("swagger")]);
  });
});

describe("the original routes behave as the original clients expect (21.4)", () => {
  it("re-provisioning onto another disk switches the boot files; a bad NIC is refused even with the same disk", async () => {
    expect(
      (await form("PUT", "/create_disk", { project: "demo", disk_name: "o-d1", img: "golden" })).status,
    ).toBe(200);
    expect(
      (await form("PUT", "/create_disk", { project: "demo", disk_name: "o-d2", img: "golden" })).status,
    ).toBe(200);
    const first = await form("PUT", "/provision/", {
      project: "demo",
      node: "node-02",
      disk_name: "o-d1",
      nic: "eth0",
    });
    expect([first.status, first.body]).toEqual([200, "Success"]);
    const badNic = await form("PUT", "/provision/", {
      project: "demo",
      node: "node-02",
      disk_name: "o-d1",
      nic: "eth9",
    });
    expect(badNic.status).toBe(404);
    const switched = await form("PUT", "/provision/", {
      project: "demo",
      node: "node-02",
      disk_name: "o-d2",
      nic: "eth0",
    });
    expect([switched.status, switched.body]).toEqual([200, "Success"]);
    const d2 = (await lab.bmi.listDisks({ project: "demo" })).find((d) => d.name === "o-d2");
    expect((await lab.drivers.boot.read("node-02"))?.target?.name).toBe(d2?.target?.name);
    expect((await lab.bmi.listProvisionings({ project: "demo" })).map((p) => [p.node, p.disk])).toEqual([
      ["node-02", "o-d2"],
    ]);
  });

  it("deleting a disk that boots a node deprovisions the node, then deletes the disk", async () => {
    const r = await form("DELETE", "/delete_disk", { project: "demo", disk_name: "o-d2" });
    expect([r.status, r.body]).toEqual([200, "Success"]);
    expect(await lab.drivers.boot.read("node-02")).toBeNull();
    expect(await lab.bmi.listProvisionings({ project: "demo" })).toEqual([]);
    expect((await lab.bmi.listDisks({ project: "demo" })).map((d) => d.name)).not.toContain("o-d2");
    const again = await form("DELETE", "/deprovision/", { project: "demo", node: "node-02", nic: "eth0" });
    expect([again.status, again.body]).toEqual([200, "Success"]);
  });
});

describe("TLS from [rest_api] tls_cert / tls_key", () => {
  it("serves HTTPS with a self-signed certificate", async () => {
    const cert = join(lab.dir, "rest-cert.pem");
    const key = join(lab.dir, "rest-key.pem");
    await execa("openssl", [
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      key,
      "-out",
      cert,
      "-days",
      "1",
      "-subj",
      "/CN=127.0.0.1",
      "-addext",
      "subjectAltName=IP:127.0.0.1",
    ]);
    const rest_api = { ip: "127.0.0.1", port: 0, tls_cert: cert, tls_key: key };
    const tls = await startRestServer({ bmi: lab.bmi, config: { ...lab.config, rest_api }, port: 0 });
    try {
      expect(tls.url).toMatch(/^https:\/\//);
      const ca = await readFile(cert);
      const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = httpsRequest(
          `${tls.url}/v1/projects/demo/images`,
          { ca, headers: { authorization: member } },
          (res) => {
            let body = "";
            res.on("data", (c) => {
              body += String(c);
            });
            res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
          },
        );
        req.on("error", reject);
        req.end();
      });
      expect(answer.status).toBe(200);
      expect((JSON.parse(answer.body) as { name: string }[]).map((i) => i.name)).toContain("golden");
      // Plain HTTP to the TLS port gets no answer it could read as one.
      const plain = await fetch(`${tls.url.replace("https:", "http:")}/health`).then(
        (r) => r.status,
        () => 0,
      );
      expect(plain).not.toBe(200);
    } finally {
      await tls.close({ graceMs: 0 });
    }
  });
});
