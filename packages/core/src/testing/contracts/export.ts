import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { BmiError } from "../../errors/index.js";
import type { ExportAccess, ExportDriver, ExportRequest } from "../../ports/export.js";
import type { Backing } from "../../ports/storage.js";

/** An initiator trying to log in, for ACL and CHAP cases. It connects from 127.0.0.1. */
export interface ExportProbeInitiator {
  name: string;
  chap?: { user: string; secret: string };
}

/** What a driver's test file hands the export contract suite. */
export interface ExportDriverHarness {
  driver: ExportDriver;
  /**
   * A valid backing named after `name` for the driver under test (a fresh file, an RBD clone, a
   * memory image). Called once per target the suite creates.
   */
  backing: (name: string) => Promise<Backing> | Backing;
  /** Logs one initiator in to `target` and holds the session until the returned function runs. */
  openSession?: (target: string) => Promise<() => Promise<void>>;
  /** Whether `initiator`, connecting from 127.0.0.1, can log in to `target` (ACL and CHAP cases). */
  canLogin?: (target: string, initiator: ExportProbeInitiator) => Promise<boolean>;
  /** Makes the target daemon lose every target, as a restart does. */
  restartDaemon?: () => Promise<void>;
  cleanup?: () => Promise<void>;
}

export interface TestExportDriverOptions {
  name: string;
  create: () => Promise<ExportDriverHarness>;
  /** Switch cases off only with a comment that says why. */
  skip?: { sessions?: boolean; restart?: boolean; acl?: boolean; chap?: boolean; concurrency?: boolean };
  /** IQN prefix for generated target names. */
  iqnPrefix?: string;
  additionalTests?: () => void;
}

const ALLOWED_INITIATOR = "iqn.2026-11.org.bmi.test:allowed";
const OTHER_INITIATOR = "iqn.2026-11.org.bmi.test:intruder";

async function expectBmiError(promise: Promise<unknown>, code: BmiError["code"]): Promise<BmiError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, `expected a BmiError ${code}`).toBeInstanceOf(BmiError);
  const bmi = error as BmiError;
  expect(bmi.code).toBe(code);
  expect(bmi.subsystem).toBe("export");
  return bmi;
}

/** What the case groups of one suite share; `harness` and `driver` are set before the first case. */
interface ExportFixture {
  readonly harness: ExportDriverHarness;
  readonly driver: ExportDriver;
  /** IQN prefix of the generated target names. */
  readonly prefix: string;
  /** Random per suite, so suites may share a daemon. */
  readonly run: string;
  readonly skip: NonNullable<TestExportDriverOptions["skip"]>;
  uniqueName(label: string): string;
  /** A fresh IQN under `prefix`, unexported after the case. */
  iqn(label: string): string;
  /** A bare BMI-style name (`1img<n>`), unexported after the case. */
  bareName(): string;
  /** Marks a target name the case made up itself, so it is unexported after the case. */
  track(target: string): void;
  /** A request for `target` with a fresh backing (named after the target unless `backingName`). */
  request(target: string, access?: ExportAccess, backingName?: string): Promise<ExportRequest>;
  /** The names `list()` reports. */
  names(): Promise<string[]>;
}

/**
 * The conformance suite every ExportDriver passes: the in-memory one in unit tests, tgt against a
 * real tgtd in integration tests. Each case creates its own targets and removes them afterwards.
 */
export function testExportDriver(options: TestExportDriverOptions): void {
  describe(`ExportDriver contract: ${options.name}`, () => {
    const s = createFixture(options);
    exportCases(s);
    refusalCases(s);
    concurrencyCases(s);
    unexportCases(s);
    cancelCases(s);
    sessionCases(s);
    restoreCases(s);
    describe("access", () => {
      aclCases(s);
      chapCases(s);
    });
    options.additionalTests?.();
  });
}

/** The suite's harness (made once), its target names, and the hooks that remove what each case made. */
function createFixture(options: TestExportDriverOptions): ExportFixture {
  const prefix = options.iqnPrefix ?? "iqn.2026-11.org.bmi.test";
  let harness: ExportDriverHarness;
  let driver: ExportDriver;
  const created = new Set<string>();
  const run = Math.random().toString(36).slice(2, 7);
  let counter = 0;

  const uniqueName = (label: string) => `${label}-${run}-${++counter}`;
  const names = async () => (await driver.list()).map((t) => t.target);

  beforeAll(async () => {
    harness = await options.create();
    driver = harness.driver;
  });

  afterEach(async () => {
    const present = new Set(await names());
    for (const target of created) {
      if (present.has(target)) await driver.unexport(target, { force: true });
    }
    created.clear();
  });

  afterAll(async () => {
    await harness?.cleanup?.();
  });

  return {
    get harness() {
      return harness;
    },
    get driver() {
      return driver;
    },
    prefix,
    run,
    skip: options.skip ?? {},
    uniqueName,
    iqn(label) {
      const name = `${prefix}:${uniqueName(label)}`;
      created.add(name);
      return name;
    },
    bareName() {
      const target = `1img${Math.floor(Math.random() * 1e6)}${counter++}`;
      created.add(target);
      return target;
    },
    track(target) {
      created.add(target);
    },
    async request(target, access = { initiators: "ALL" }, backingName) {
      return {
        target,
        backing: await harness.backing(backingName ?? target.split(":").at(-1) ?? target),
        access,
      };
    },
    names,
  };
}

/** What `list()` must show of a request's backing (rbd: the pool and image only). */
const listedBacking = (backing: Backing) =>
  backing.kind === "rbd" ? { kind: "rbd", pool: backing.pool, image: backing.image } : backing;

function exportCases(s: ExportFixture) {
  it("declares what it can serve", () => {
    expect(s.driver.name).toMatch(/\S/);
    expect(s.driver.capabilities.backings.length).toBeGreaterThan(0);
    expect(typeof s.driver.capabilities.acl).toBe("boolean");
    expect(typeof s.driver.capabilities.chap).toBe("boolean");
  });

  it("exports a target as LUN 1 and lists it with its backing and no sessions", async () => {
    const req = await s.request(s.iqn("one"));
    const result = await s.driver.export(req);
    expect(result.target).toBe(req.target);
    expect(result.lun).toBe(1);
    expect(result.portal).toMatch(/\S/);
    expect(result.port).toBeGreaterThan(0);
    expect(result.sessions).toBe(0);
    const listed = (await s.driver.list()).find((t) => t.target === req.target);
    expect(listed).toBeDefined();
    expect(listed?.lun).toBe(1);
    expect(listed?.backing).toMatchObject(listedBacking(req.backing));
    expect(listed?.sessions).toBe(0);
    expect(listed?.portal).toBe(result.portal);
    expect(listed?.port).toBe(result.port);
  });

  it("keeps IQNs with ':' whole (COR-7)", async () => {
    const target = `${s.prefix}:rack-1:${s.uniqueName("colon")}`;
    s.track(target);
    await s.driver.export(await s.request(target));
    expect(await s.names()).toContain(target);
    await s.driver.unexport(target);
    expect(await s.names()).not.toContain(target);
  });

  it("serves a bare BMI name in compatibility mode", async () => {
    const target = s.bareName();
    const result = await s.driver.export(await s.request(target));
    expect(result.target).toBe(target);
    expect(await s.names()).toContain(target);
  });

  it("is idempotent for an identical request", async () => {
    const req = await s.request(s.iqn("idem"));
    const first = await s.driver.export(req);
    const second = await s.driver.export(req);
    expect(second).toEqual(first);
    expect((await s.names()).filter((n) => n === req.target)).toHaveLength(1);
  });

  it("refuses a different request under an existing name, leaving the target as it was", async () => {
    const req = await s.request(s.iqn("clash"));
    await s.driver.export(req);
    const other = { ...req, backing: await s.harness.backing(`${s.uniqueName("other")}`) };
    await expectBmiError(s.driver.export(other), "already_exists");
    const listed = (await s.driver.list()).find((t) => t.target === req.target);
    expect(listed?.backing).toMatchObject(
      req.backing.kind === "rbd" ? { pool: req.backing.pool, image: req.backing.image } : req.backing,
    );
  });
}

function refusalCases(s: ExportFixture) {
  it("refuses an invalid target name before doing anything", async () => {
    const before = await s.names();
    const req = await s.request(`${s.prefix}:ok`);
    const error = await expectBmiError(
      s.driver.export({ ...req, target: "bad name; rm -rf /" }),
      "invalid_input",
    );
    expect(error.fault).toBe("client");
    expect(error.message).toMatch(/target/);
    expect(await s.names()).toEqual(before);
  });

  it("refuses access rules that restrict nothing (ALL must be explicit)", async () => {
    const req = await s.request(s.iqn("noacl"), { initiators: {} });
    await expectBmiError(s.driver.export(req), "invalid_input");
    expect(await s.names()).not.toContain(req.target);
  });
}

function concurrencyCases(s: ExportFixture) {
  it("exports several targets side by side", async () => {
    const reqs = await Promise.all(["a", "b", "c"].map((l) => s.request(s.iqn(l))));
    for (const req of reqs) await s.driver.export(req);
    const listed = await s.names();
    for (const req of reqs) expect(listed).toContain(req.target);
  });

  it.skipIf(s.skip.concurrency)("exports many targets concurrently, each once", async () => {
    const reqs = await Promise.all(Array.from({ length: 8 }, (_, i) => s.request(s.iqn(`par${i}`))));
    const results = await Promise.all(reqs.map((req) => s.driver.export(req)));
    expect(new Set(results.map((r) => r.target)).size).toBe(8);
    const listed = await s.names();
    for (const req of reqs) expect(listed.filter((n) => n === req.target)).toHaveLength(1);
  });

  it.skipIf(s.skip.concurrency)("settles concurrent identical exports on one target", async () => {
    const req = await s.request(s.iqn("race"));
    const results = await Promise.all([s.driver.export(req), s.driver.export(req), s.driver.export(req)]);
    for (const r of results) expect(r.target).toBe(req.target);
    expect((await s.names()).filter((n) => n === req.target)).toHaveLength(1);
  });
}

function unexportCases(s: ExportFixture) {
  it("unexports a target, after which the name can be exported again", async () => {
    const req = await s.request(s.iqn("gone"));
    await s.driver.export(req);
    await s.driver.unexport(req.target);
    expect(await s.names()).not.toContain(req.target);
    await s.driver.export(req);
    expect(await s.names()).toContain(req.target);
  });

  it("unexport of a missing target is not_found", async () => {
    await expectBmiError(s.driver.unexport(`${s.prefix}:${s.uniqueName("missing")}`), "not_found");
  });

  it("unexport leaves the other targets alone", async () => {
    const keep = await s.request(s.iqn("keep"));
    const drop = await s.request(s.iqn("drop"));
    await s.driver.export(keep);
    await s.driver.export(drop);
    await s.driver.unexport(drop.target);
    const listed = await s.names();
    expect(listed).toContain(keep.target);
    expect(listed).not.toContain(drop.target);
  });
}

function cancelCases(s: ExportFixture) {
  it("honours an aborted signal: cancelled, nothing created", async () => {
    const req = await s.request(s.iqn("abort"));
    const controller = new AbortController();
    controller.abort();
    await expectBmiError(s.driver.export(req, { signal: controller.signal }), "cancelled");
    expect(await s.names()).not.toContain(req.target);
  });
}

/** The harness's `openSession`, or a failure saying how to provide it or skip. */
const sessionOpener = (s: ExportFixture) => {
  if (!s.harness.openSession)
    throw new Error("the harness must provide openSession (or skip.sessions with a reason)");
  return s.harness.openSession;
};

function sessionCases(s: ExportFixture) {
  describe("sessions", () => {
    it.skipIf(s.skip.sessions)(
      "counts a logged-in initiator and refuses unexport with busy unless forced",
      async () => {
        const openSession = sessionOpener(s);
        const req = await s.request(s.iqn("busy"));
        await s.driver.export(req);
        const close = await openSession(req.target);
        try {
          const listed = (await s.driver.list()).find((t) => t.target === req.target);
          expect(listed?.sessions).toBeGreaterThanOrEqual(1);
          const error = await expectBmiError(s.driver.unexport(req.target), "busy");
          expect(error.retryable).toBe(true);
          expect(await s.names()).toContain(req.target);
          await s.driver.unexport(req.target, { force: true });
          expect(await s.names()).not.toContain(req.target);
        } finally {
          await close();
        }
      },
    );
  });

  describe("initiator sessions", () => {
    it.skipIf(s.skip.sessions)(
      "lists who is logged in to a target, oldest first (when the driver can)",
      async () => {
        const { driver } = s;
        const { sessions } = driver;
        if (!sessions) return; // optional method: drivers without it are never asked
        const openSession = sessionOpener(s);
        const req = await s.request(s.iqn("who"));
        await driver.export(req);
        expect(await sessions.call(driver, req.target)).toEqual([]);
        const close = await openSession(req.target);
        try {
          const seen = await sessions.call(driver, req.target);
          expect(seen.length).toBeGreaterThanOrEqual(1);
          expect(seen[0]?.initiator).toMatch(/^iqn\./);
          expect(seen.map((x) => x.id)).toEqual([...seen.map((x) => x.id)].sort((a, b) => a - b));
        } finally {
          await close();
        }
        await expectBmiError(sessions.call(driver, s.iqn("absent")), "not_found");
        await driver.unexport(req.target, { force: true });
      },
    );
  });
}

function restoreCases(s: ExportFixture) {
  describe("restore", () => {
    it.skipIf(s.skip.restart)("re-creates every target the daemon lost, and only those", async () => {
      if (!s.harness.restartDaemon)
        throw new Error("the harness must provide restartDaemon (or skip.restart)");
      const reqs = await Promise.all(["r1", "r2", "r3"].map((l) => s.request(s.iqn(l))));
      for (const req of reqs.slice(0, 2)) await s.driver.export(req);
      await s.harness.restartDaemon();
      expect(await s.driver.list()).toEqual([]);
      const restored = await s.driver.restore(reqs);
      expect([...restored].sort()).toEqual(reqs.map((r) => r.target).sort());
      const listed = await s.driver.list();
      for (const req of reqs) {
        const found = listed.find((t) => t.target === req.target);
        expect(found?.lun).toBe(1);
      }
      expect(await s.driver.restore(reqs)).toEqual([]);
    });

    it("leaves existing targets alone and returns only what it created", async () => {
      const present = await s.request(s.iqn("present"));
      const absent = await s.request(s.iqn("absent"));
      const first = await s.driver.export(present);
      const restored = await s.driver.restore([present, absent]);
      expect(restored).toEqual([absent.target]);
      const listed = await s.driver.list();
      expect(listed.find((t) => t.target === present.target)).toEqual(first);
      expect(listed.map((t) => t.target)).toContain(absent.target);
    });
  });
}

/** The harness's login probe, or a failure saying how to provide it or skip. */
const probe = (s: ExportFixture) => {
  if (!s.harness.canLogin) throw new Error("the harness must provide canLogin (or skip.acl / skip.chap)");
  return s.harness.canLogin;
};

function aclCases(s: ExportFixture) {
  it.skipIf(s.skip.acl)("ALL lets any initiator in", async () => {
    const req = await s.request(s.iqn("all"));
    await s.driver.export(req);
    expect(await probe(s)(req.target, { name: OTHER_INITIATOR })).toBe(true);
  });

  it.skipIf(s.skip.acl)("an initiator-name ACL lets the named initiator in and refuses others", async () => {
    if (!s.driver.capabilities.acl) return;
    const req = await s.request(s.iqn("byname"), { initiators: { names: [ALLOWED_INITIATOR] } });
    await s.driver.export(req);
    expect(await probe(s)(req.target, { name: ALLOWED_INITIATOR })).toBe(true);
    expect(await probe(s)(req.target, { name: OTHER_INITIATOR })).toBe(false);
  });

  it.skipIf(s.skip.acl)("an address ACL refuses initiators from other addresses", async () => {
    if (!s.driver.capabilities.acl) return;
    const allowed = await s.request(s.iqn("addr-ok"), { initiators: { addresses: ["127.0.0.1"] } });
    const refused = await s.request(s.iqn("addr-no"), { initiators: { addresses: ["127.0.0.2"] } });
    await s.driver.export(allowed);
    await s.driver.export(refused);
    expect(await probe(s)(allowed.target, { name: OTHER_INITIATOR })).toBe(true);
    expect(await probe(s)(refused.target, { name: OTHER_INITIATOR })).toBe(false);
  });

  it.skipIf(s.skip.acl)(
    "address and name rules together admit an initiator matching either (as tgt does)",
    async () => {
      if (!s.driver.capabilities.acl) return;
      const byName = await s.request(s.iqn("either-name"), {
        initiators: { addresses: ["127.0.0.2"], names: [ALLOWED_INITIATOR] },
      });
      const byAddress = await s.request(s.iqn("either-addr"), {
        initiators: { addresses: ["127.0.0.1"], names: [ALLOWED_INITIATOR] },
      });
      await s.driver.export(byName);
      await s.driver.export(byAddress);
      expect(await probe(s)(byName.target, { name: ALLOWED_INITIATOR })).toBe(true);
      expect(await probe(s)(byName.target, { name: OTHER_INITIATOR })).toBe(false);
      expect(await probe(s)(byAddress.target, { name: OTHER_INITIATOR })).toBe(true);
    },
  );

  it.skipIf(s.skip.acl)(
    "setInitiators replaces a live target's rules: list() reports them, the next login follows them",
    async () => {
      if (!s.driver.capabilities.acl || !s.driver.setInitiators) return;
      const req = await s.request(s.iqn("reacl"), { initiators: { addresses: ["127.0.0.1"] } });
      await s.driver.export(req);
      expect(await probe(s)(req.target, { name: OTHER_INITIATOR })).toBe(true);
      await s.driver.setInitiators(req.target, { addresses: ["127.0.0.2"] });
      const listed = (await s.driver.list()).find((t) => t.target === req.target);
      if (listed?.initiators !== undefined) expect(listed.initiators).toEqual({ addresses: ["127.0.0.2"] });
      expect(await probe(s)(req.target, { name: OTHER_INITIATOR })).toBe(false);
      await s.driver.setInitiators(req.target, "ALL");
      expect(await probe(s)(req.target, { name: OTHER_INITIATOR })).toBe(true);
      await expectBmiError(
        s.driver.setInitiators(`${s.prefix}:${s.uniqueName("absent")}`, "ALL"),
        "not_found",
      );
    },
  );

  it("a driver without ACL support says unsupported instead of exporting to everyone", async () => {
    if (s.driver.capabilities.acl) return;
    const req = await s.request(s.iqn("noacl2"), { initiators: { names: [ALLOWED_INITIATOR] } });
    await expectBmiError(s.driver.export(req), "unsupported");
    expect(await s.names()).not.toContain(req.target);
  });
}

function chapCases(s: ExportFixture) {
  it.skipIf(s.skip.chap)("CHAP admits the right credentials only and never reveals the secret", async () => {
    const secret = `s3cret-${s.run}-chap-xyz`;
    const chap = { user: `bmi${s.run}`, secret };
    const req = await s.request(s.iqn("chap"), { initiators: "ALL", chap });
    if (!s.driver.capabilities.chap) {
      const error = await expectBmiError(s.driver.export(req), "unsupported");
      expect(JSON.stringify(error.toJSON())).not.toContain(secret);
      return;
    }
    await s.driver.export(req);
    expect(await probe(s)(req.target, { name: ALLOWED_INITIATOR, chap })).toBe(true);
    expect(await probe(s)(req.target, { name: ALLOWED_INITIATOR })).toBe(false);
    expect(
      await probe(s)(req.target, {
        name: ALLOWED_INITIATOR,
        chap: { user: chap.user, secret: `${secret}-wrong` },
      }),
    ).toBe(false);
    // A clashing request fails; its error must not echo the secret.
    const clash = { ...req, backing: await s.harness.backing(s.uniqueName("chap2")) };
    const error = await expectBmiError(s.driver.export(clash), "already_exists");
    expect(`${error.message} ${JSON.stringify(error.details)}`).not.toContain(secret);
    expect(JSON.stringify(await s.driver.list())).not.toContain(secret);
  });
}
