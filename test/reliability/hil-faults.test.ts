/**
 * Issue 10 §4: the HIL-compatible server misbehaves (409 busy NIC, 500, slow answers, dropped
 * connections, a networking action that ends in ERROR). Provision retries a bounded number of
 * times, then fails with a clear typed error, and everything it did is undone.
 */
import { BmiError } from "@bmi/core";
import { type BmiLab, startBmiLab } from "@bmi/lab";
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import { labState } from "./helpers.js";
import { resetLab } from "./scenarios.js";

const ceph = inject("ceph");
let lab: BmiLab;
let source: string;
const HIL_TIMEOUT_MS = 1_000;
/** 1 try + the client's default 3 retries. */
const ATTEMPTS = 4;

beforeAll(async () => {
  lab = await startBmiLab({
    ceph,
    nodes: 1,
    hilActionDelayMs: 5,
    configOverrides: { net_isolator: { timeout_ms: String(HIL_TIMEOUT_MS) } },
  });
  source = `lab${lab.settings.uid}-golden-src`;
  await lab.drivers.storage.create(source, 4 * 1024 * 1024);
  await lab.bmi.importImage({ project: lab.project, source, name: "golden" });
});

afterEach(async () => {
  lab?.hil.faults.clear();
  if (lab) await resetLab(lab);
});

afterAll(async () => {
  if (!lab) return;
  try {
    await resetLab(lab, []);
    if (await lab.drivers.storage.exists(source)) await lab.drivers.storage.remove(source);
    expect(await lab.leftovers()).toEqual({ images: [], targets: [], bootFiles: [] });
  } finally {
    await lab.stop();
  }
});

const node = () => lab.nodes[0]?.name as string;
const connectRoute = () => `POST /v0/node/${node()}/nic/${lab.nodes[0]?.nic}/connect_network`;
const showRoute = () => `GET /v0/node/${node()}`;
const provision = () =>
  lab.bmi.provision({ project: lab.project, node: node(), disk: "d1", image: "golden" });

/**
 * With the faults `arm` sets, provision must fail with `code` from the isolation subsystem and
 * leave the lab as it was (compared once the server behaves again).
 */
async function failsCleanly(
  arm: () => void,
  code: BmiError["code"],
): Promise<BmiError & { requestsTo(route: string): number }> {
  const before = await labState(lab);
  const counted = new Map(lab.hil.faults.requests);
  arm();
  const error = await provision().then(
    () => null,
    (e: unknown) => e,
  );
  const sent = new Map(lab.hil.faults.requests);
  lab.hil.faults.clear();
  expect(error).toBeInstanceOf(BmiError);
  const bmi = error as BmiError;
  expect(bmi.code).toBe(code);
  expect(bmi.subsystem).toBe("isolation");
  // A clear message: says it was HIL, names no stack and no raw body only.
  expect(bmi.message).toMatch(/HIL|network|node/i);
  expect(bmi.message).not.toMatch(/\n\s+at /);
  expect(await labState(lab)).toEqual(before);
  return Object.assign(bmi, {
    requestsTo: (route: string) => (sent.get(route) ?? 0) - (counted.get(route) ?? 0),
  });
}

describe("provision against a misbehaving HIL", () => {
  it("409 busy NIC on every connect: retried a bounded number of times, then busy, all undone", async () => {
    const error = await failsCleanly(
      () =>
        lab.hil.faults.status({
          match: connectRoute(),
          times: Number.POSITIVE_INFINITY,
          status: 409,
          body: { type: "BlockedError", msg: "nic is busy with a pending networking action" },
        }),
      "busy",
    );
    expect(error.retryable).toBe(true);
    expect(error.requestsTo(connectRoute())).toBe(ATTEMPTS);
    expect(error.details.attempts).toBe(ATTEMPTS);
  });

  it("500 on every connect: bounded retries, then unavailable, all undone", async () => {
    const error = await failsCleanly(
      () => lab.hil.faults.status({ match: connectRoute(), times: Number.POSITIVE_INFINITY, status: 500 }),
      "unavailable",
    );
    expect(error.requestsTo(connectRoute())).toBe(ATTEMPTS);
  });

  it("dropped connections on every node lookup: bounded retries, then unavailable, nothing made", async () => {
    const error = await failsCleanly(() => {
      lab.hil.faults.drop({ match: showRoute(), times: Number.POSITIVE_INFINITY });
    }, "unavailable");
    expect(error.requestsTo(showRoute())).toBe(ATTEMPTS);
  });

  it("answers slower than the timeout on every node lookup: bounded retries, then timeout", async () => {
    const error = await failsCleanly(() => {
      lab.hil.faults.delay({ match: showRoute(), times: Number.POSITIVE_INFINITY, ms: HIL_TIMEOUT_MS * 3 });
    }, "timeout");
    expect(error.requestsTo(showRoute())).toBe(ATTEMPTS);
  });

  it("the networking action ends in ERROR: a typed error, the disk, target and boot files undone", async () => {
    const error = await failsCleanly(
      () => lab.hil.faults.nextAction({ outcome: "error", node: node(), times: 1 }),
      "unavailable",
    );
    expect(error.message).toMatch(/could not attach node-01\/eth0 to/);
    expect(error.fault).toBe("server");
  });

  it("transient faults (one 409, one 500, one drop, slow answers) are ridden out by the retries", async () => {
    const busy = { type: "BlockedError", msg: "nic is busy with a pending networking action" };
    lab.hil.faults.status({ match: connectRoute(), status: 409, body: busy });
    lab.hil.faults.status({ match: connectRoute(), status: 500 });
    lab.hil.faults.drop({ match: showRoute() });
    lab.hil.faults.delay({ match: /^GET /, times: Number.POSITIVE_INFINITY, ms: HIL_TIMEOUT_MS / 4 });
    const record = await provision();
    expect(record.network).toBe(lab.settings.provisioningNetwork);
    expect(await lab.drivers.isolation.attachments(node())).toEqual([
      expect.objectContaining({ node: node(), network: lab.settings.provisioningNetwork }),
    ]);
  });
});
