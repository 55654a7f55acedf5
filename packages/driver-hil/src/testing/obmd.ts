import { randomBytes, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { text } from "node:stream/consumers";
import { createFaultEngine, type HilFaults } from "./faults.js";

/** What an obmd-compatible BMC drives: a qemu VM over QMP, or the in-memory machine below. */
export interface ObmdMachine {
  powerOn(): Promise<void>;
  powerOff(): Promise<void>;
  /** Resets a running machine (`force`: hard reset, else a soft ACPI cycle). */
  reset(options: { force: boolean }): Promise<void>;
  state(): Promise<"on" | "off">;
  setBootDevice(device: string): Promise<void>;
}

export interface MemoryMachine extends ObmdMachine {
  readonly power: "on" | "off";
  readonly bootDevice: string | null;
  /** Power-ons and resets so far. */
  readonly boots: number;
}

/** A machine that only remembers: power state, boot device, boot count. Starts off. */
export function createMemoryMachine(): MemoryMachine {
  let power: "on" | "off" = "off";
  let bootDevice: string | null = null;
  let boots = 0;
  return {
    async powerOn() {
      if (power === "off") boots += 1;
      power = "on";
    },
    async powerOff() {
      power = "off";
    },
    async reset() {
      boots += 1;
    },
    async state() {
      return power;
    },
    async setBootDevice(device) {
      bootDevice = device;
    },
    get power() {
      return power;
    },
    get bootDevice() {
      return bootDevice;
    },
    get boots() {
      return boots;
    },
  };
}

export interface ObmdOptions {
  /** obmd's admin token (HIL's `admin_token` for the node); default: 32 random hex digits. */
  adminToken?: string;
  /** The nodes obmd knows, each with its machine. */
  nodes?: Record<string, ObmdMachine>;
}

/** obmd's routes, mountable under any prefix (the HIL-compatible server mounts one at `/obmd`). */
export interface ObmdEndpoint {
  readonly adminToken: string;
  readonly nodes: Map<string, ObmdMachine>;
  /** Fault knobs: `status` (e.g. 500), `delay` (a slow BMC), `drop`; `requests` counts calls by path. */
  readonly faults: HilFaults;
  /** What `POST /node/<n>/token` does: a new token for the node, invalidating the previous one. */
  issueToken(node: string): string;
  /** Handles one request; `path` is below the mount point, e.g. `/node/n1/power_on`. */
  handle(req: IncomingMessage, res: ServerResponse, path: string, body: string): Promise<void>;
}

/** The boot devices of obmd's IPMI driver (anything else is 400). */
const IPMI_DEVICES = new Set(["pxe", "disk", "none"]);
const ROUTE = /^\/node\/([^/]+)(?:\/(token|power_on|power_off|power_cycle|boot_device|power_status))?$/;
const ROUTE_METHODS: Record<string, string[]> = {
  token: ["POST", "DELETE"],
  power_on: ["POST"],
  power_off: ["POST"],
  power_cycle: ["POST"],
  boot_device: ["PUT"],
  power_status: ["GET"],
};

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function same(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

function jsonBody(raw: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(raw);
    return typeof value === "object" && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

/**
 * An obmd-compatible endpoint (CCI-MOC/obmd's API): `POST|DELETE /node/<n>/token` with Basic
 * `admin:<admin token>` (a wrong one does not match: 404, as in obmd), then `power_on`,
 * `power_off`, `power_cycle {"force"}`, `boot_device {"bootdev"}`, `power_status` with
 * `?token=`. 400 bad body or device, 401 bad or stale token, 404 unknown node, 500 a failing machine.
 */
export function createObmdEndpoint(options: ObmdOptions = {}): ObmdEndpoint {
  const adminToken = options.adminToken ?? randomBytes(16).toString("hex");
  const nodes = new Map(Object.entries(options.nodes ?? {}));
  const tokens = new Map<string, string>();
  const faults = createFaultEngine();
  const issueToken = (node: string) => {
    const token = randomBytes(16).toString("hex");
    tokens.set(node, token);
    return token;
  };

  const reply = (res: ServerResponse, status: number, json?: unknown) => {
    const body = json === undefined ? "" : `${JSON.stringify(json)}\n`;
    res.writeHead(status, {
      "Content-Length": String(Buffer.byteLength(body)),
      ...(json === undefined ? {} : { "Content-Type": "application/json" }),
    });
    res.end(body);
  };
  const isAdmin = (req: IncomingMessage) => {
    const match = /^Basic\s+([A-Za-z0-9+/=]+)$/i.exec(req.headers.authorization ?? "");
    const decoded = match?.[1] ? Buffer.from(match[1], "base64").toString("utf8") : "";
    return same(decoded, `admin:${adminToken}`);
  };

  async function act(op: string, machine: ObmdMachine, raw: string): Promise<number | unknown[]> {
    if (op === "power_on") await machine.powerOn();
    else if (op === "power_off") await machine.powerOff();
    else if (op === "power_cycle") {
      const force = jsonBody(raw)?.force;
      if (typeof force !== "boolean") return 400;
      // obmd's IPMI driver: a reset fails on a machine that is off, and then it powers it on.
      if ((await machine.state()) === "off") await machine.powerOn();
      else await machine.reset({ force });
    } else if (op === "boot_device") {
      const device = jsonBody(raw)?.bootdev;
      if (typeof device !== "string" || !IPMI_DEVICES.has(device)) return 400;
      await machine.setBootDevice(device);
    } else return [{ power_status: `Chassis Power is ${await machine.state()}` }];
    return 200;
  }

  async function route(req: IncomingMessage, res: ServerResponse, path: string, raw: string) {
    const url = new URL(path, "http://obmd.invalid");
    const match = ROUTE.exec(url.pathname);
    const method = req.method ?? "GET";
    const node = match ? decodeURIComponent(match[1] ?? "") : "";
    const op = match?.[2];
    if (!match || !op || !ROUTE_METHODS[op]?.includes(method)) return reply(res, 404);
    if (op === "token") {
      if (!isAdmin(req) || !nodes.has(node)) return reply(res, 404);
      if (method === "DELETE") {
        tokens.delete(node);
        return reply(res, 200);
      }
      return reply(res, 200, { token: issueToken(node) });
    }
    const token = url.searchParams.get("token") ?? "";
    if (!/^[0-9a-f]{32}$/.test(token)) return reply(res, 401);
    const machine = nodes.get(node);
    if (!machine) return reply(res, 404);
    const valid = tokens.get(node);
    if (valid === undefined || !same(valid, token)) return reply(res, 401);
    const outcome = await act(op, machine, raw);
    if (Array.isArray(outcome)) return reply(res, 200, outcome[0]);
    reply(res, outcome);
  }

  return {
    adminToken,
    nodes,
    faults,
    issueToken,
    async handle(req, res, path, raw) {
      const method = req.method ?? "GET";
      const pathname = path.split("?")[0] ?? path;
      faults.count(method, pathname);
      const injected = faults.take(method, pathname);
      if (injected.delayMs > 0) await sleep(injected.delayMs);
      if (injected.drop) {
        req.socket.destroy();
        return;
      }
      if (injected.status) return reply(res, injected.status.status);
      try {
        await route(req, res, path, raw);
      } catch {
        if (!res.headersSent) reply(res, 500);
      }
    },
  };
}

export interface ObmdServer extends ObmdEndpoint {
  /** e.g. `http://127.0.0.1:40124`. */
  readonly url: string;
  /** The `obmd.uri` to register a node with in HIL: `<url>/node/<node>`. */
  uriOf(node: string): string;
  /** Stops listening (clients get connection refused: "obmd down"), keeping its state. */
  stop(): Promise<void>;
  /** Listens again on the same port. */
  start(): Promise<void>;
  close(): Promise<void>;
}

/** Serves an obmd-compatible endpoint on its own loopback port. */
export async function startObmdServer(
  options: ObmdOptions & { port?: number; host?: string } = {},
): Promise<ObmdServer> {
  const endpoint = createObmdEndpoint(options);
  const host = options.host ?? "127.0.0.1";
  let server: Server | undefined;
  let port = options.port ?? 0;
  const listen = async () => {
    const created = createServer((req, res) => {
      text(req)
        .then((raw) => endpoint.handle(req, res, req.url ?? "/", raw))
        .catch(() => req.socket.destroy());
    });
    await new Promise<void>((resolve, reject) => {
      created.once("error", reject);
      created.listen(port, host, () => resolve());
    });
    port = (created.address() as AddressInfo).port;
    server = created;
  };
  const stop = async () => {
    const running = server;
    server = undefined;
    if (!running) return;
    running.closeAllConnections();
    await new Promise<void>((resolve) => running.close(() => resolve()));
  };
  await listen();
  const url = `http://${host}:${port}`;
  return Object.assign(endpoint, {
    url,
    uriOf: (node: string) => `${url}/node/${encodeURIComponent(node)}`,
    stop,
    async start() {
      if (!server) await listen();
    },
    close: stop,
  });
}
