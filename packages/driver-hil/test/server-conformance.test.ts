import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type HilServer, startHilServer } from "../src/testing/index.js";
import { ADMIN, ALICE, hilFixture } from "./fixture.js";
import { type RawResponse, raw } from "./http.js";

const BOB = { username: "bob", password: "bob-pw-123" };
const AUTH_FAILED = "Authentication failed. Authentication is required to use this service.";

let server: HilServer;
type Init = Parameters<typeof raw>[3];
const call = (method: string, path: string, init: Init = {}) => raw(server.url, method, path, init);
const admin = (method: string, path: string, body?: object | string) =>
  call(method, path, { auth: ADMIN, ...(body === undefined ? {} : { body }) });
const alice = (method: string, path: string, body?: object | string) =>
  call(method, path, { auth: ALICE, ...(body === undefined ? {} : { body }) });

function expectError(res: RawResponse, status: number, type: string, msg?: string | RegExp): void {
  expect(res.status, res.text).toBe(status);
  expect(res.headers["content-type"]).toBe("text/html; charset=utf-8");
  const body = res.json() as { type: string; msg: string };
  expect(body.type).toBe(type);
  if (typeof msg === "string") expect(body.msg).toBe(msg);
  else if (msg) expect(body.msg).toMatch(msg);
}

/** Waits (bounded) until the server's daemon has applied an action. */
async function settle(id: string): Promise<unknown> {
  for (let i = 0; i < 200; i++) {
    const res = await admin("GET", `/v0/networking_action/${id}`);
    const action = res.json() as { status: string };
    if (action.status !== "PENDING") return action;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(`action ${id} stayed PENDING`);
}

beforeEach(async () => {
  server = await startHilServer({ fixture: hilFixture, auth: "basic", actionDelayMs: 5 });
});
afterEach(async () => {
  await server.close();
});

describe("HIL-compatible server: transport (spec §1, §9.1-2)", () => {
  it("has no unversioned routes: /projects is an HTML 404; a wrong method is an HTML 405", async () => {
    const unversioned = await admin("GET", "/projects");
    expect(unversioned.status).toBe(404);
    expect(unversioned.text).toContain("<title>404 Not Found</title>");
    const wrong = await admin("POST", "/v0/projects");
    expect(wrong.status).toBe(405);
    expect(wrong.text).toContain("Method Not Allowed");
    expect((await admin("GET", "/v0/node/node1/")).status).toBe(404);
  });

  it("labels JSON as text/html and answers action calls with 200 and an empty body", async () => {
    const list = await admin("GET", "/v0/projects");
    expect(list.headers["content-type"]).toBe("text/html; charset=utf-8");
    expect(list.json()).toEqual(["proj1", "proj2"]);
    const created = await admin("PUT", "/v0/project/proj3");
    expect(created.status).toBe(200);
    expect(created.headers["content-length"]).toBe("0");
    expect(created.text).toBe("");
  });

  it("decodes %2F before routing, so an encoded slash in a name is a 404", async () => {
    expect((await admin("GET", "/v0/node/node1%2Feth0")).status).toBe(404);
  });
});

describe("validation before authentication (§1, §9.3-4)", () => {
  it("rejects an extra key with 400 ValidationError even without credentials", async () => {
    expectError(await call("PUT", "/v0/project/x", { body: { extra: 1 } }), 400, "ValidationError");
  });

  it("rejects form bodies, GET bodies, unknown and empty query parameters, bad JSON, path/body duplicates", async () => {
    const form = await call("POST", "/v0/project/proj1/connect_node", {
      auth: ADMIN,
      body: "node=node2",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
    });
    expectError(form, 400, "ValidationError");
    expectError(
      await admin("GET", "/v0/projects", "{}"),
      400,
      "ValidationError",
      "GET request made with a non-empty request body",
    );
    expectError(await admin("GET", "/v0/projects?foo=1"), 400, "ValidationError");
    expectError(
      await admin("GET", "/v0/network/prov/attachments?project="),
      400,
      "ValidationError",
      "Empty parameter specified",
    );
    expectError(
      await admin("GET", "/v0/network/prov/attachments?project=proj1&project=proj1"),
      400,
      "ValidationError",
      "Parameter specified more than once",
    );
    expectError(
      await admin("PUT", "/v0/project/x", "{not json"),
      400,
      "ValidationError",
      "The request body is not valid JSON",
    );
    expectError(
      await admin("POST", "/v0/project/proj1/connect_node", { node: "node2", project: "proj1" }),
      400,
      "ValidationError",
    );
    expectError(await admin("POST", "/v0/project/proj1/connect_node", { node: 7 }), 400, "ValidationError");
    expectError(await admin("POST", "/v0/project/proj1/connect_node", {}), 400, "ValidationError");
  });
});

describe("authentication and authorization (§2, §9.5)", () => {
  it("401 without credentials or with a wrong password, no WWW-Authenticate; unknown user 404", async () => {
    const none = await call("GET", "/v0/nodes/all");
    expectError(none, 401, "AuthorizationError", AUTH_FAILED);
    expect(none.headers["www-authenticate"]).toBeUndefined();
    expectError(
      await call("GET", "/v0/nodes/all", { auth: { username: "alice", password: "wrong" } }),
      401,
      "AuthorizationError",
      AUTH_FAILED,
    );
    expectError(
      await call("GET", "/v0/nodes/all", { auth: { username: "mallory", password: "x" } }),
      404,
      "NotFoundError",
      "User mallory does not exist.",
    );
  });

  it("answers 401 'administrator-only' to a non-admin on an admin call, never 403", async () => {
    expectError(
      await alice("GET", "/v0/projects"),
      401,
      "AuthorizationError",
      "This operation is administrator-only.",
    );
    expectError(
      await alice("PUT", "/v0/project/p9"),
      401,
      "AuthorizationError",
      "This operation is administrator-only.",
    );
    expectError(await alice("GET", "/v0/switches"), 401, "AuthorizationError");
  });

  it("free nodes are readable by anyone; owned nodes need project access; unknown nodes 404 first", async () => {
    expect((await alice("GET", "/v0/node/node2")).status).toBe(200);
    expect((await alice("GET", "/v0/node/node1")).status).toBe(200);
    expectError(
      await alice("GET", "/v0/node/node3"),
      401,
      "AuthorizationError",
      "You do not have access to the required project.",
    );
    expectError(await alice("GET", "/v0/node/nope"), 404, "NotFoundError", "Node nope does not exist.");
  });
});

describe("nodes (§5.2, §9.6, §9.9)", () => {
  it("show_node: sorted keys, double-encoded metadata, port/switch for admins only", async () => {
    const asAdmin = await admin("GET", "/v0/node/node1");
    expect(asAdmin.text.indexOf('"metadata"')).toBeLessThan(asAdmin.text.indexOf('"name"'));
    expect(asAdmin.json()).toEqual({
      metadata: { rack: '"r1"', slot: "5" },
      name: "node1",
      nics: [
        { label: "eth0", macaddr: "52:54:00:AA:BB:01", networks: {}, port: "gi1/0/1", switch: "sw0" },
        { label: "eth1", macaddr: "52:54:00:aa:bb:11", networks: {}, port: null, switch: null },
      ],
      project: "proj1",
    });
    const asMember = (await alice("GET", "/v0/node/node1")).json() as { nics: Record<string, unknown>[] };
    expect(asMember.nics[0]).toEqual({ label: "eth0", macaddr: "52:54:00:AA:BB:01", networks: {} });
  });

  it("lists free nodes for 'free' and every node for any other value, sorted", async () => {
    expect((await alice("GET", "/v0/nodes/free")).json()).toEqual(["node2"]);
    expect((await alice("GET", "/v0/nodes/all")).json()).toEqual(["node1", "node2", "node3"]);
    expect((await alice("GET", "/v0/nodes/xyz")).json()).toEqual(["node1", "node2", "node3"]);
  });

  it("registers nodes and NICs, sets metadata, refuses duplicates", async () => {
    const obmd = { uri: "http://obmd.example/node/n9", admin_token: "t" };
    expect((await admin("PUT", "/v0/node/n9", { obmd })).status).toBe(200);
    expectError(await admin("PUT", "/v0/node/n9", { obmd }), 409, "DuplicateError");
    expectError(
      await admin("PUT", "/v0/node/n8", { obmd: { uri: "ftp://x", admin_token: "t" } }),
      400,
      "BadArgumentError",
    );
    expect((await admin("PUT", "/v0/node/n9/nic/eth0", { macaddr: "whatever" })).status).toBe(200);
    expectError(await admin("PUT", "/v0/node/n9/nic/eth0", { macaddr: "x" }), 409, "DuplicateError");
    expect((await admin("PUT", "/v0/node/n9/metadata/k", { value: { a: [1] } })).status).toBe(200);
    expect(((await admin("GET", "/v0/node/n9")).json() as { metadata: unknown }).metadata).toEqual({
      k: '{"a":[1]}',
    });
    expectError(await admin("DELETE", "/v0/node/n9"), 409, "BlockedError");
    expect((await admin("DELETE", "/v0/node/n9/nic/eth0")).status).toBe(200);
    expect((await admin("DELETE", "/v0/node/n9")).status).toBe(200);
  });
});

describe("projects (§5.1, §9.10)", () => {
  it("connect_node of an owned node is 409 even for its own project; detach_node rules", async () => {
    expectError(
      await alice("POST", "/v0/project/proj1/connect_node", { node: "node1" }),
      409,
      "BlockedError",
      "Node is already owned by a project.",
    );
    expect((await alice("POST", "/v0/project/proj1/connect_node", { node: "node2" })).status).toBe(200);
    expect((await alice("GET", "/v0/project/proj1/nodes")).json()).toEqual(["node1", "node2"]);
    expectError(
      await alice("POST", "/v0/project/proj1/detach_node", { node: "node3" }),
      404,
      "NotFoundError",
      "Node not in project",
    );
    expect((await alice("PUT", "/v0/node/node2/obm", { enabled: true })).status).toBe(200);
    expectError(await alice("POST", "/v0/project/proj1/detach_node", { node: "node2" }), 409, "BlockedError");
    expect((await alice("PUT", "/v0/node/node2/obm", { enabled: false })).status).toBe(200);
    expect((await alice("POST", "/v0/project/proj1/detach_node", { node: "node2" })).status).toBe(200);
    expect((await alice("GET", "/v0/nodes/free")).json()).toEqual(["node2"]);
  });

  it("detach_node is blocked by an attachment and by a pending action", async () => {
    server.faults.nextAction({ outcome: "hold" });
    const queued = await alice("POST", "/v0/node/node1/nic/eth0/connect_network", { network: "prov" });
    expect(queued.status).toBe(202);
    expectError(await alice("POST", "/v0/project/proj1/detach_node", { node: "node1" }), 409, "BlockedError");
    server.releaseActions();
    expectError(await alice("POST", "/v0/project/proj1/detach_node", { node: "node1" }), 409, "BlockedError");
  });

  it("list_project_networks lists networks open to the project, not public ones", async () => {
    expect((await alice("GET", "/v0/project/proj1/networks")).json()).toEqual(["prov"]);
    expectError(await alice("GET", "/v0/project/proj2/networks"), 401, "AuthorizationError");
    expectError(await alice("GET", "/v0/project/nope/networks"), 404, "NotFoundError");
  });
});

describe("asynchronous networking (§5.4, §6, §9.7-8)", () => {
  it("connect → 202 uuid4 → PENDING → DONE; networks shows the attachment only after DONE", async () => {
    server.faults.nextAction({ outcome: "hold" });
    const res = await alice("POST", "/v0/node/node1/nic/eth0/connect_network", { network: "prov" });
    expect(res.status).toBe(202);
    const { status_id } = res.json() as { status_id: string };
    expect(status_id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect((await alice("GET", `/v0/networking_action/${status_id}`)).json()).toEqual({
      channel: "vlan/native",
      new_network: "prov",
      nic: "eth0",
      node: "node1",
      status: "PENDING",
      type: "modify_port",
    });
    const before = (await alice("GET", "/v0/node/node1")).json() as { nics: { networks: object }[] };
    expect(before.nics[0]?.networks).toEqual({});
    expectError(
      await alice("POST", "/v0/node/node1/nic/eth0/connect_network", { network: "pub" }),
      409,
      "BlockedError",
      "A networking operation is already active on the nic.",
    );
    server.releaseActions();
    expect(await settle(status_id)).toMatchObject({ status: "DONE" });
    const after = (await alice("GET", "/v0/node/node1")).json() as { nics: { networks: object }[] };
    expect(after.nics[0]?.networks).toEqual({ "vlan/native": "prov" });
  });

  it("applies channel and access rules in HIL's order", async () => {
    const connect = (body: object, node = "node1", nic = "eth0") =>
      alice("POST", `/v0/node/${node}/nic/${nic}/connect_network`, body);
    expectError(await connect({ network: "prov" }, "node3"), 401, "AuthorizationError");
    // A free node is a ProjectMismatchError (step 2) before any access check (step 3).
    expectError(await connect({ network: "prov" }, "node2"), 409, "ProjectMismatchError");
    expectError(
      await admin("POST", "/v0/node/node2/nic/eth0/connect_network", { network: "prov" }),
      409,
      "ProjectMismatchError",
      "Node not in project",
    );
    expectError(
      await connect({ network: "prov" }, "node1", "eth1"),
      404,
      "NotFoundError",
      "No port is connected to given nic.",
    );
    expectError(await connect({ network: "net2" }), 409, "ProjectMismatchError");
    expectError(await connect({ network: "nope" }), 404, "NotFoundError");
    expectError(
      await connect({ network: "prov", channel: "vlan/999" }),
      400,
      "BadArgumentError",
      "Channel 'vlan/999', is not legal for this network.",
    );
    const id = (await connect({ network: "prov", channel: "vlan/300" })).json() as { status_id: string };
    await settle(id.status_id);
    expectError(
      await connect({ network: "prov" }),
      409,
      "BlockedError",
      "The network is already attached to the nic.",
    );
    expectError(
      await connect({ network: "pub", channel: "vlan/300" }),
      409,
      "BlockedError",
      "The channel is already in use on the nic.",
    );
  });

  it("detach: not attached → 400; the action has new_network null; the previous id then 404s", async () => {
    expectError(
      await alice("POST", "/v0/node/node1/nic/eth0/detach_network", { network: "prov" }),
      400,
      "BadArgumentError",
      "The network is not attached to the nic.",
    );
    const first = (
      await alice("POST", "/v0/node/node1/nic/eth0/connect_network", { network: "prov" })
    ).json() as {
      status_id: string;
    };
    await settle(first.status_id);
    const second = await alice("POST", "/v0/node/node1/nic/eth0/detach_network", { network: "prov" });
    expect(second.status).toBe(202);
    const { status_id } = second.json() as { status_id: string };
    expect(await settle(status_id)).toMatchObject({
      new_network: null,
      status: "DONE",
      channel: "vlan/native",
    });
    expectError(
      await alice("GET", `/v0/networking_action/${first.status_id}`),
      404,
      "NotFoundError",
      "status_id not found",
    );
  });

  it("an injected failure ends the action in ERROR and changes nothing", async () => {
    server.faults.nextAction({ outcome: "error", node: "node1" });
    const { status_id } = (
      await alice("POST", "/v0/node/node1/nic/eth0/connect_network", { network: "prov" })
    ).json() as {
      status_id: string;
    };
    expect(await settle(status_id)).toMatchObject({ status: "ERROR" });
    const node = (await alice("GET", "/v0/node/node1")).json() as { nics: { networks: object }[] };
    expect(node.nics[0]?.networks).toEqual({});
  });

  it("port_revert answers 200 with a revert_port action on channel ''", async () => {
    const first = (
      await alice("POST", "/v0/node/node1/nic/eth0/connect_network", { network: "prov" })
    ).json() as {
      status_id: string;
    };
    await settle(first.status_id);
    const res = await admin("POST", "/v0/switch/sw0/port/gi1/0/1/revert");
    expect(res.status).toBe(200);
    const { status_id } = res.json() as { status_id: string };
    expect(await settle(status_id)).toMatchObject({
      type: "revert_port",
      channel: "",
      new_network: null,
      status: "DONE",
    });
    expect(
      ((await admin("GET", "/v0/switch/sw0/port/gi1/0/1")).json() as { networks: object }).networks,
    ).toEqual({});
  });
});

describe("OBM (§5.5)", () => {
  it("power calls: 409 while disabled, 307 to obmd with a token when enabled, a new token on re-enable", async () => {
    expectError(
      await alice("POST", "/v0/node/node1/power_cycle", { force: true }),
      409,
      "BlockedError",
      "OBM is not enabled",
    );
    await alice("PUT", "/v0/node/node1/obm", { enabled: true });
    const first = await alice("POST", "/v0/node/node1/power_cycle", { force: true });
    expect(first.status).toBe(307);
    const location = String(first.headers.location);
    expect(location).toMatch(/\/node\/node1\/power_cycle\?token=[0-9a-f]{32}$/);
    expect((await alice("GET", "/v0/node/node1/power_status")).headers.location).toMatch(
      /\/power_status\?token=/,
    );
    await alice("PUT", "/v0/node/node1/obm", { enabled: true });
    const second = await alice("POST", "/v0/node/node1/power_cycle", { force: true });
    expect(second.headers.location).not.toBe(location);
  });
});

describe("networks (§4, §5.3)", () => {
  it("lists public networks to users and every network to admins", async () => {
    expect((await alice("GET", "/v0/networks")).json()).toEqual({
      pub: { network_id: "100", projects: null },
    });
    expect(Object.keys((await admin("GET", "/v0/networks")).json() as object)).toEqual([
      "net2",
      "prov",
      "pub",
    ]);
  });

  it("show_network shape and access", async () => {
    expect((await alice("GET", "/v0/network/prov")).json()).toEqual({
      access: ["proj1"],
      channels: ["vlan/native", "vlan/300"],
      "connected-nodes": {},
      name: "prov",
      owner: "admin",
    });
    expectError(
      await alice("GET", "/v0/network/net2"),
      401,
      "AuthorizationError",
      "You do not have access to this network.",
    );
  });

  it("network_create combinations and messages; Duplicate before auth", async () => {
    const create = (who: typeof ALICE, name: string, owner: string, access: string, net_id: string) =>
      call("PUT", `/v0/network/${name}`, { auth: who, body: { owner, access, net_id } });
    expectError(await create(ALICE, "prov", "admin", "", ""), 409, "DuplicateError");
    expectError(
      await create(ALICE, "a1", "proj1", "proj2", ""),
      400,
      "BadArgumentError",
      "Project-owned networks must be accessible by the owner.",
    );
    expectError(
      await create(ALICE, "a2", "proj1", "proj1", "7"),
      400,
      "BadArgumentError",
      "Project-owned networks must use network ID allocation",
    );
    expect((await create(ALICE, "a3", "proj1", "proj1", "")).status).toBe(200);
    expectError(await create(ALICE, "a4", "admin", "", ""), 401, "AuthorizationError");
    expectError(
      await create(ADMIN, "a5", "admin", "", "300"),
      409,
      "BlockedError",
      "Network ID is not available.",
    );
    expectError(await create(ADMIN, "a6", "admin", "", "abc"), 400, "BadArgumentError", "Invalid net_id");
    expectError(await create(ADMIN, "a7", "nope", "nope", ""), 404, "NotFoundError");
  });

  it("attachments listing follows the access rules", async () => {
    const { status_id } = (
      await alice("POST", "/v0/node/node1/nic/eth0/connect_network", { network: "pub" })
    ).json() as {
      status_id: string;
    };
    await settle(status_id);
    expect((await admin("GET", "/v0/network/pub/attachments")).json()).toEqual({
      node1: { channel: "vlan/native", nic: "eth0", project: "proj1" },
    });
    // A non-admin on a public admin-owned network gets 401, even with ?project=<own>.
    expectError(await alice("GET", "/v0/network/pub/attachments?project=proj1"), 401, "AuthorizationError");
    expect((await alice("GET", "/v0/network/prov/attachments?project=proj1")).json()).toEqual({});
    expectError(
      await call("GET", "/v0/network/prov/attachments?project=proj1", { auth: BOB }),
      401,
      "AuthorizationError",
    );
  });
});

describe("users (§5.7)", () => {
  it("user_create rejects 'is-admin'; changing one's own admin flag is 409 IllegalStateError", async () => {
    expectError(
      await admin("PUT", "/v0/auth/basic/user/carol", { password: "x", "is-admin": true }),
      400,
      "ValidationError",
    );
    expect((await admin("PUT", "/v0/auth/basic/user/carol", { password: "x", is_admin: false })).status).toBe(
      200,
    );
    expectError(
      await admin("PATCH", "/v0/auth/basic/user/admin", { is_admin: false }),
      409,
      "IllegalStateError",
      "Cannot set own admin status",
    );
    expect((await admin("POST", "/v0/auth/basic/user/carol/add_project", { project: "proj2" })).status).toBe(
      200,
    );
    expect(((await admin("GET", "/v0/auth/basic/users")).json() as Record<string, unknown>).carol).toEqual({
      is_admin: false,
      projects: ["proj2"],
    });
    expect(
      (await call("GET", "/v0/project/proj2/nodes", { auth: { username: "carol", password: "x" } })).json(),
    ).toEqual(["node3"]);
  });

  it("has no user routes under null auth", async () => {
    const open = await startHilServer({ fixture: hilFixture, auth: "none" });
    try {
      expect((await raw(open.url, "GET", "/v0/auth/basic/users")).status).toBe(404);
      expect((await raw(open.url, "GET", "/v0/projects")).json()).toEqual(["proj1", "proj2"]);
    } finally {
      await open.close();
    }
  });
});

describe("fault knobs", () => {
  it("forces a status for N matching requests, then behaves again", async () => {
    server.faults.status({ match: "GET /v0/node/node1", status: 500, times: 2 });
    expect((await alice("GET", "/v0/node/node1")).status).toBe(500);
    expect((await alice("GET", "/v0/node/node2")).status).toBe(200);
    expect((await alice("GET", "/v0/node/node1")).status).toBe(500);
    expect((await alice("GET", "/v0/node/node1")).status).toBe(200);
    expect(server.faults.requests.get("GET /v0/node/node1")).toBe(3);
  });

  it("drops a connection", async () => {
    server.faults.drop({ match: /connect_network$/ });
    await expect(
      alice("POST", "/v0/node/node1/nic/eth0/connect_network", { network: "prov" }),
    ).rejects.toThrow();
    expect((await alice("POST", "/v0/node/node1/nic/eth0/connect_network", { network: "prov" })).status).toBe(
      202,
    );
  });

  it("rejects a fixture with a dangling reference", async () => {
    await expect(startHilServer({ fixture: { nodes: [{ name: "n", project: "ghost" }] } })).rejects.toThrow(
      /ghost/,
    );
  });
});
