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

/**
 * The conformance suite every ExportDriver passes: the in-memory one in unit tests, tgt against a
 * real tgtd in integration tests. Each case creates its own targets and removes them afterwards.
 */
export function testExportDriver(options: TestExportDriverOptions): void {
  const prefix = options.iqnPrefix ?? "iqn.2026-11.org.bmi.test";
  const skip = options.skip ?? {};

  describe(`ExportDriver contract: ${options.name}`, () => {
    let harness: ExportDriverHarness;
    let driver: ExportDriver;
    const created = new Set<string>();
    const run = Math.random().toString(36).slice(2, 7);
    let counter = 0;

    const uniqueName = (label: string) => `${label}-${run}-${++counter}`;
    const iqn = (label: string) => {
      const name = `${prefix}:${uniqueName(label)}`;
      created.add(name);
      return name;
    };
    const request = async (
      target: string,
      access: ExportAccess = { initiators: "ALL" },
      backingName?: string,
    ): Promise<ExportRequest> => ({
      target,
      backing: await harness.backing(backingName ?? target.split(":").at(-1) ?? target),
      access,
    });
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

    it("declares what it can serve", () => {
      expect(driver.name).toMatch(/\S/);
      expect(driver.capabilities.backings.length).toBeGreaterThan(0);
      expect(typeof driver.capabilities.acl).toBe("boolean");
      expect(typeof driver.capabilities.chap).toBe("boolean");
    });

    it("exports a target as LUN 1 and lists it with its backing and no sessions", async () => {
      const req = await request(iqn("one"));
      const result = await driver.export(req);
      expect(result.target).toBe(req.target);
      expect(result.lun).toBe(1);
      expect(result.portal).toMatch(/\S/);
      expect(result.port).toBeGreaterThan(0);
      expect(result.sessions).toBe(0);
      const listed = (await driver.list()).find((t) => t.target === req.target);
      expect(listed).toBeDefined();
      expect(listed?.lun).toBe(1);
      expect(listed?.backing).toMatchObject(
        req.backing.kind === "rbd"
          ? { kind: "rbd", pool: req.backing.pool, image: req.backing.image }
          : req.backing,
      );
      expect(listed?.sessions).toBe(0);
      expect(listed?.portal).toBe(result.portal);
      expect(listed?.port).toBe(result.port);
    });

    it("keeps IQNs with ':' whole (COR-7)", async () => {
      const target = `${prefix}:rack-1:${uniqueName("colon")}`;
      created.add(target);
      await driver.export(await request(target));
      expect(await names()).toContain(target);
      await driver.unexport(target);
      expect(await names()).not.toContain(target);
    });

    it("serves a bare BMI name in compatibility mode", async () => {
      const target = `1img${Math.floor(Math.random() * 1e6)}${counter++}`;
      created.add(target);
      const result = await driver.export(await request(target));
      expect(result.target).toBe(target);
      expect(await names()).toContain(target);
    });

    it("is idempotent for an identical request", async () => {
      const req = await request(iqn("idem"));
      const first = await driver.export(req);
      const second = await driver.export(req);
      expect(second).toEqual(first);
      expect((await names()).filter((n) => n === req.target)).toHaveLength(1);
    });

    it("refuses a different request under an existing name, leaving the target as it was", async () => {
      const req = await request(iqn("clash"));
      await driver.export(req);
      const other = { ...req, backing: await harness.backing(`${uniqueName("other")}`) };
      await expectBmiError(driver.export(other), "already_exists");
      const listed = (await driver.list()).find((t) => t.target === req.target);
      expect(listed?.backing).toMatchObject(
        req.backing.kind === "rbd" ? { pool: req.backing.pool, image: req.backing.image } : req.backing,
      );
    });

    it("refuses an invalid target name before doing anything", async () => {
      const before = await names();
      const req = await request(`${prefix}:ok`);
      const error = await expectBmiError(
        driver.export({ ...req, target: "bad name; rm -rf /" }),
        "invalid_input",
      );
      expect(error.fault).toBe("client");
      expect(error.message).toMatch(/target/);
      expect(await names()).toEqual(before);
    });

    it("refuses access rules that restrict nothing (ALL must be explicit)", async () => {
      const req = await request(iqn("noacl"), { initiators: {} });
      await expectBmiError(driver.export(req), "invalid_input");
      expect(await names()).not.toContain(req.target);
    });

    it("exports several targets side by side", async () => {
      const reqs = await Promise.all(["a", "b", "c"].map((l) => request(iqn(l))));
      for (const req of reqs) await driver.export(req);
      const listed = await names();
      for (const req of reqs) expect(listed).toContain(req.target);
    });

    it.skipIf(skip.concurrency)("exports many targets concurrently, each once", async () => {
      const reqs = await Promise.all(Array.from({ length: 8 }, (_, i) => request(iqn(`par${i}`))));
      const results = await Promise.all(reqs.map((req) => driver.export(req)));
      expect(new Set(results.map((r) => r.target)).size).toBe(8);
      const listed = await names();
      for (const req of reqs) expect(listed.filter((n) => n === req.target)).toHaveLength(1);
    });

    it.skipIf(skip.concurrency)("settles concurrent identical exports on one target", async () => {
      const req = await request(iqn("race"));
      const results = await Promise.all([driver.export(req), driver.export(req), driver.export(req)]);
      for (const r of results) expect(r.target).toBe(req.target);
      expect((await names()).filter((n) => n === req.target)).toHaveLength(1);
    });

    it("unexports a target, after which the name can be exported again", async () => {
      const req = await request(iqn("gone"));
      await driver.export(req);
      await driver.unexport(req.target);
      expect(await names()).not.toContain(req.target);
      await driver.export(req);
      expect(await names()).toContain(req.target);
    });

    it("unexport of a missing target is not_found", async () => {
      await expectBmiError(driver.unexport(`${prefix}:${uniqueName("missing")}`), "not_found");
    });

    it("unexport leaves the other targets alone", async () => {
      const keep = await request(iqn("keep"));
      const drop = await request(iqn("drop"));
      await driver.export(keep);
      await driver.export(drop);
      await driver.unexport(drop.target);
      const listed = await names();
      expect(listed).toContain(keep.target);
      expect(listed).not.toContain(drop.target);
    });

    it("honours an aborted signal: cancelled, nothing created", async () => {
      const req = await request(iqn("abort"));
      const controller = new AbortController();
      controller.abort();
      await expectBmiError(driver.export(req, { signal: controller.signal }), "cancelled");
      expect(await names()).not.toContain(req.target);
    });

    describe("sessions", () => {
      it.skipIf(skip.sessions)(
        "counts a logged-in initiator and refuses unexport with busy unless forced",
        async () => {
          if (!harness.openSession)
            throw new Error("the harness must provide openSession (or skip.sessions with a reason)");
          const req = await request(iqn("busy"));
          await driver.export(req);
          const close = await harness.openSession(req.target);
          try {
            const listed = (await driver.list()).find((t) => t.target === req.target);
            expect(listed?.sessions).toBeGreaterThanOrEqual(1);
            const error = await expectBmiError(driver.unexport(req.target), "busy");
            expect(error.retryable).toBe(true);
            expect(await names()).toContain(req.target);
            await driver.unexport(req.target, { force: true });
            expect(await names()).not.toContain(req.target);
          } finally {
            await close();
          }
        },
      );
    });

    describe("initiator sessions", () => {
      it.skipIf(skip.sessions)(
        "lists who is logged in to a target, oldest first (when the driver can)",
        async () => {
          const { sessions } = driver;
          if (!sessions) return; // optional method: drivers without it are never asked
          if (!harness.openSession)
            throw new Error("the harness must provide openSession (or skip.sessions with a reason)");
          const req = await request(iqn("who"));
          await driver.export(req);
          expect(await sessions.call(driver, req.target)).toEqual([]);
          const close = await harness.openSession(req.target);
          try {
            const seen = await sessions.call(driver, req.target);
            expect(seen.length).toBeGreaterThanOrEqual(1);
            expect(seen[0]?.initiator).toMatch(/^iqn\./);
            expect(seen.map((s) => s.id)).toEqual([...seen.map((s) => s.id)].sort((a, b) => a - b));
          } finally {
            await close();
          }
          await expectBmiError(sessions.call(driver, iqn("absent")), "not_found");
          await driver.unexport(req.target, { force: true });
        },
      );
    });

    describe("restore", () => {
      it.skipIf(skip.restart)("re-creates every target the daemon lost, and only those", async () => {
        if (!harness.restartDaemon)
          throw new Error("the harness must provide restartDaemon (or skip.restart)");
        const reqs = await Promise.all(["r1", "r2", "r3"].map((l) => request(iqn(l))));
        for (const req of reqs.slice(0, 2)) await driver.export(req);
        await harness.restartDaemon();
        expect(await driver.list()).toEqual([]);
        const restored = await driver.restore(reqs);
        expect([...restored].sort()).toEqual(reqs.map((r) => r.target).sort());
        const listed = await driver.list();
        for (const req of reqs) {
          const found = listed.find((t) => t.target === req.target);
          expect(found?.lun).toBe(1);
        }
        expect(await driver.restore(reqs)).toEqual([]);
      });

      it("leaves existing targets alone and returns only what it created", async () => {
        const present = await request(iqn("present"));
        const absent = await request(iqn("absent"));
        const first = await driver.export(present);
        const restored = await driver.restore([present, absent]);
        expect(restored).toEqual([absent.target]);
        const listed = await driver.list();
        expect(listed.find((t) => t.target === present.target)).toEqual(first);
        expect(listed.map((t) => t.target)).toContain(absent.target);
      });
    });

    describe("access", () => {
      const probe = () => {
        if (!harness.canLogin) throw new Error("the harness must provide canLogin (or skip.acl / skip.chap)");
        return harness.canLogin;
      };

      it.skipIf(skip.acl)("ALL lets any initiator in", async () => {
        const req = await request(iqn("all"));
        await driver.export(req);
        expect(await probe()(req.target, { name: OTHER_INITIATOR })).toBe(true);
      });

      it.skipIf(skip.acl)(
        "an initiator-name ACL lets the named initiator in and refuses others",
        async () => {
          if (!driver.capabilities.acl) return;
          const req = await request(iqn("byname"), { initiators: { names: [ALLOWED_INITIATOR] } });
          await driver.export(req);
          expect(await probe()(req.target, { name: ALLOWED_INITIATOR })).toBe(true);
          expect(await probe()(req.target, { name: OTHER_INITIATOR })).toBe(false);
        },
      );

      it.skipIf(skip.acl)("an address ACL refuses initiators from other addresses", async () => {
        if (!driver.capabilities.acl) return;
        const allowed = await request(iqn("addr-ok"), { initiators: { addresses: ["127.0.0.1"] } });
        const refused = await request(iqn("addr-no"), { initiators: { addresses: ["127.0.0.2"] } });
        await driver.export(allowed);
        await driver.export(refused);
        expect(await probe()(allowed.target, { name: OTHER_INITIATOR })).toBe(true);
        expect(await probe()(refused.target, { name: OTHER_INITIATOR })).toBe(false);
      });

      it.skipIf(skip.acl)(
        "address and name rules together admit an initiator matching either (as tgt does)",
        async () => {
          if (!driver.capabilities.acl) return;
          const byName = await request(iqn("either-name"), {
            initiators: { addresses: ["127.0.0.2"], names: [ALLOWED_INITIATOR] },
          });
          const byAddress = await request(iqn("either-addr"), {
            initiators: { addresses: ["127.0.0.1"], names: [ALLOWED_INITIATOR] },
          });
          await driver.export(byName);
          await driver.export(byAddress);
          expect(await probe()(byName.target, { name: ALLOWED_INITIATOR })).toBe(true);
          expect(await probe()(byName.target, { name: OTHER_INITIATOR })).toBe(false);
          expect(await probe()(byAddress.target, { name: OTHER_INITIATOR })).toBe(true);
        },
      );

      it("a driver without ACL support says unsupported instead of exporting to everyone", async () => {
        if (driver.capabilities.acl) return;
        const req = await request(iqn("noacl2"), { initiators: { names: [ALLOWED_INITIATOR] } });
        await expectBmiError(driver.export(req), "unsupported");
        expect(await names()).not.toContain(req.target);
      });

      it.skipIf(skip.chap)(
        "CHAP admits the right credentials only and never reveals the secret",
        async () => {
          const secret = `s3cret-${run}-chap-xyz`;
          const chap = { user: `bmi${run}`, secret };
          const req = await request(iqn("chap"), { initiators: "ALL", chap });
          if (!driver.capabilities.chap) {
            const error = await expectBmiError(driver.export(req), "unsupported");
            expect(JSON.stringify(error.toJSON())).not.toContain(secret);
            return;
          }
          await driver.export(req);
          expect(await probe()(req.target, { name: ALLOWED_INITIATOR, chap })).toBe(true);
          expect(await probe()(req.target, { name: ALLOWED_INITIATOR })).toBe(false);
          expect(
            await probe()(req.target, {
              name: ALLOWED_INITIATOR,
              chap: { user: chap.user, secret: `${secret}-wrong` },
            }),
          ).toBe(false);
          // A clashing request fails; its error must not echo the secret.
          const clash = { ...req, backing: await harness.backing(uniqueName("chap2")) };
          const error = await expectBmiError(driver.export(clash), "already_exists");
          expect(`${error.message} ${JSON.stringify(error.details)}`).not.toContain(secret);
          expect(JSON.stringify(await driver.list())).not.toContain(secret);
        },
      );
    });

    options.additionalTests?.();
  });
}
