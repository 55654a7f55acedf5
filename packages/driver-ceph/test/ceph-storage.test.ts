import { BmiError, TOKENS } from "@bmi/core";
import { container } from "@bmi/core/di";
import { createRecordingRunner, type ScriptedReply } from "@bmi/core/testing";
import { expectBmiError } from "@bmi/core/testing/contracts";
import { describe, expect, it } from "vitest";
import { classifyRbdFailure, createCephStorage, rbdReason, registerCephStorage } from "../src/index.js";

const GLOBAL = [
  "--conf",
  "/lab/ceph.conf",
  "--id",
  "bmi",
  "--keyring",
  "/lab/keyring.bmi",
  "--client-mount-timeout",
  "8",
  "--rados-mon-op-timeout",
  "8",
  "--rados-osd-op-timeout",
  "8",
];

function setup(
  reply: (args: readonly string[]) => ScriptedReply | undefined = () => ({}),
  cloneFormat?: 1 | 2,
) {
  const runner = createRecordingRunner((_file, args) => reply(args.slice(GLOBAL.length)));
  const storage = createCephStorage({
    pool: "bmi",
    conf: "/lab/ceph.conf",
    clientId: "bmi",
    keyring: "/lab/keyring.bmi",
    timeoutMs: 10_000,
    cloneFormat,
    runner,
  });
  /** The command-specific arguments of each call (after the global ones). */
  const commands = () => runner.calls.map((c) => c.args.slice(GLOBAL.length));
  return { runner, storage, commands };
}

describe("ceph storage: command lines", () => {
  it("passes conf, id, keyring and rbd's own timeouts before every command, as an argument array", async () => {
    const { runner, storage } = setup(() => ({ stdout: "[]" }));
    await storage.list();
    expect(runner.calls).toHaveLength(1);
    expect(runner.calls[0]?.file).toBe("rbd");
    expect(runner.calls[0]?.args).toEqual([...GLOBAL, "ls", "--format", "json", "bmi"]);
    expect(runner.calls[0]?.options.timeoutMs).toBe(10_000);
  });

  it("omits --conf, --id and --keyring when not configured", async () => {
    const runner = createRecordingRunner(() => ({ stdout: "[]" }));
    await createCephStorage({ pool: "bmi", runner }).list();
    expect(runner.calls[0]?.args).toEqual([
      "--client-mount-timeout",
      "24",
      "--rados-mon-op-timeout",
      "24",
      "--rados-osd-op-timeout",
      "24",
      "ls",
      "--format",
      "json",
      "bmi",
    ]);
  });

  it("builds each operation's rbd command", async () => {
    const { storage, commands } = setup((args) =>
      args[0] === "info" ? { stdout: '{"name":"x","size":1}' } : { stdout: "[]" },
    );
    const ref = { image: "1img1", snapshot: "bmi_created_snapshot" };
    await storage.create("1img1", 4194304);
    await storage.createSnapshot(ref);
    await storage.protectSnapshot(ref);
    await storage.clone(ref, "1img2");
    await storage.children(ref);
    await storage.flatten("1img2");
    await storage.copy(ref, "1img3");
    await storage.copy("1img3", "1img4");
    await storage.listSnapshots("1img1");
    await storage.unprotectSnapshot(ref);
    await storage.removeSnapshot(ref);
    await storage.remove("1img2");
    await storage.exists("1img2");
    await storage.info("1img2");
    await storage.importFile?.("/data/golden.raw", "golden");
    await storage.exportFile?.("golden", "/data/out.raw");
    expect(commands()).toEqual([
      ["create", "--size", "4194304B", "bmi/1img1"],
      ["snap", "create", "--no-progress", "bmi/1img1@bmi_created_snapshot"],
      ["snap", "protect", "bmi/1img1@bmi_created_snapshot"],
      ["clone", "--rbd-default-clone-format", "1", "bmi/1img1@bmi_created_snapshot", "bmi/1img2"],
      ["children", "--format", "json", "bmi/1img1@bmi_created_snapshot"],
      ["flatten", "--no-progress", "bmi/1img2"],
      ["cp", "--no-progress", "bmi/1img1@bmi_created_snapshot", "bmi/1img3"],
      ["cp", "--no-progress", "bmi/1img3", "bmi/1img4"],
      ["snap", "ls", "--format", "json", "bmi/1img1"],
      ["snap", "unprotect", "bmi/1img1@bmi_created_snapshot"],
      ["snap", "rm", "--no-progress", "bmi/1img1@bmi_created_snapshot"],
      ["rm", "--no-progress", "bmi/1img2"],
      ["info", "--format", "json", "bmi/1img2"],
      ["info", "--format", "json", "bmi/1img2"],
      ["import", "--no-progress", "/data/golden.raw", "bmi/golden"],
      ["export", "--no-progress", "bmi/golden", "/data/out.raw"],
    ]);
  });

  it("gives data-moving commands the long timeout", async () => {
    const runner = createRecordingRunner(() => ({}));
    const storage = createCephStorage({ pool: "bmi", timeoutMs: 10_000, dataTimeoutMs: 900_000, runner });
    await storage.flatten("a");
    await storage.create("b", 1);
    expect(runner.calls.map((c) => c.options.timeoutMs)).toEqual([900_000, 10_000]);
  });

  it("makes clone v2 clones when configured, and says so in its capabilities", async () => {
    const { storage, commands } = setup(() => ({}), 2);
    expect(storage.capabilities).toEqual({ cowClone: true, liveSnapshot: true, cloneUnprotected: true });
    await storage.clone({ image: "g", snapshot: "s" }, "c");
    expect(commands()[0]).toEqual(["clone", "--rbd-default-clone-format", "2", "bmi/g@s", "bmi/c"]);
    expect(setup().storage.capabilities.cloneUnprotected).toBe(false);
  });

  it("passes the call's abort signal to the runner, and runs nothing when it is already aborted", async () => {
    const { runner, storage } = setup(() => ({ stdout: "[]" }));
    const controller = new AbortController();
    await storage.list({ signal: controller.signal });
    expect(runner.calls[0]?.options.signal).toBe(controller.signal);
    controller.abort();
    await expectBmiError(() => storage.list({ signal: controller.signal }), "cancelled");
    expect(runner.calls).toHaveLength(1);
  });

  it.each(["../x", "-rf", "a b", "x@y", "p/q", ""])(
    "rejects the hostile image name %j without running rbd",
    async (bad) => {
      const { runner, storage } = setup();
      const error = await expectBmiError(() => storage.remove(bad), "invalid_input");
      expect(error.subsystem).toBe("storage");
      expect(error.details.field).toBe("image");
      await expectBmiError(() => storage.clone({ image: "g", snapshot: bad }, "c"), "invalid_input");
      expect(runner.calls).toHaveLength(0);
    },
  );

  it("describes the rbd backing store for tgt", () => {
    expect(setup().storage.backingFor("1img7")).toEqual({
      kind: "rbd",
      pool: "bmi",
      image: "1img7",
      conf: "/lab/ceph.conf",
      clientId: "bmi",
    });
  });
});

describe("ceph storage: options", () => {
  it.each([
    [{ pool: "bad pool" }, "pool"],
    [{ pool: "bmi", timeoutMs: 5 }, "timeoutMs"],
    [{ pool: "bmi", clientId: "client bmi" }, "clientId"],
    [{ pool: "bmi", cloneFormat: 3 }, "cloneFormat"],
    [{ pool: "bmi", runner: "rbd" }, "runner"],
  ])("rejects bad options %j naming the option", (options, field) => {
    let error: unknown;
    try {
      createCephStorage(options as never);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(BmiError);
    expect((error as BmiError).code).toBe("invalid_input");
    expect((error as BmiError).message).toContain(field);
  });

  it("registers itself in a container under TOKENS.storage", () => {
    const child = container.createChildContainer();
    const driver = registerCephStorage(child, { pool: "bmi", runner: createRecordingRunner() });
    expect(child.resolve(TOKENS.storage)).toBe(driver);
  });
});

// Real stderr texts from Ceph 16.2.15 (spec/ceph-tgt-lab.md §9 and the lab).
const LOG =
  "2026-11-26T06:26:11.696+0000 7f3a8449b380 -1 librbd::api::Image: remove: image has snapshots - not removing";
const CASES: Array<[string, number, string, string, string]> = [
  [
    "missing image",
    2,
    "rbd: error opening image nope: (2) No such file or directory",
    "not_found",
    "missing",
  ],
  ["missing pool", 2, "rbd: error opening pool 'x': (2) No such file or directory", "not_found", "pool"],
  [
    "missing keyring",
    2,
    "auth: unable to find a keyring on /x: (2) No such file or directory\nrbd: couldn't connect to the cluster!",
    "permission_denied",
    "keyring",
  ],
  [
    "exists",
    17,
    "librbd: rbd image h already exists\nrbd: create error: (17) File exists",
    "already_exists",
    "exists",
  ],
  [
    "watchers",
    16,
    "librbd::image::PreRemoveRequest: image has watchers - not removing\nrbd: error: image still has watchers\nThis means the image is still open",
    "busy",
    "watchers",
  ],
  [
    "snapshots",
    39,
    `${LOG}\n\nrbd: image has snapshots - these must be deleted with 'rbd snap purge' before the image can be removed.`,
    "busy",
    "snapshots",
  ],
  [
    "children",
    16,
    "librbd: cannot unprotect: at least 1 child(ren) [1234] in pool 'bmi'\nrbd: unprotecting snap failed: (16) Device or resource busy",
    "busy",
    "children",
  ],
  ["protected", 16, "rbd: snapshot 's' is protected from removal.", "busy", "protected"],
  [
    "unprotected clone",
    22,
    "librbd::image::CloneRequest: validate_parent: parent snapshot must be protected\n\nrbd: clone error: (22) Invalid argument",
    "conflict",
    "unprotected",
  ],
  [
    "wrong key",
    13,
    "monclient(hunting): handle_auth_bad_method server allowed_methods [2] but i only support [2]\nrbd: couldn't connect to the cluster!\nrbd: listing images failed: (13) Permission denied",
    "permission_denied",
    "auth",
  ],
  ["caps", 1, "rbd: create error: (1) Operation not permitted", "permission_denied", "caps"],
  [
    "mon timeout",
    110,
    "monclient(hunting): authenticate timed out after 5\nrbd: couldn't connect to the cluster!\nrbd: listing images failed: (110) Connection timed out",
    "timeout",
    "connect_timeout",
  ],
  [
    "osd timeout",
    110,
    "librbd::image::OpenRequest: failed to stat v2 image header: (110) Connection timed out\nrbd: error opening image x: (110) Connection timed out",
    "timeout",
    "op_timeout",
  ],
  [
    // Inputs are validated before rbd runs: EINVAL is the cluster changing under us (issue 22.11).
    "EINVAL from a race",
    22,
    "rbd: delete error: (22) Invalid argument",
    "conflict",
    "invalid",
  ],
  ["something new", 95, "rbd: frobnicate failed: (95) Operation not supported", "internal", "unknown"],
];

describe("ceph storage: exit codes and stderr become typed errors", () => {
  it.each(CASES)("%s (exit %i) → %s", async (_label, exitCode, stderr, code, reason) => {
    expect(classifyRbdFailure(exitCode, stderr)).toMatchObject({ code, reason });
    const { storage } = setup(() => ({ exitCode, stderr }));
    const error = await expectBmiError(() => storage.remove("1img9"), code as BmiError["code"]);
    expect(error.subsystem).toBe("storage");
    expect(error.details).toMatchObject({ reason, exitCode, image: "1img9" });
    expect(error.message).toMatch(/^rbd rm bmi\/1img9: /);
    expect(error.message).not.toBe(stderr);
    expect((error.cause as Error).message).toBe(stderr.trim());
  });

  it("keeps timeouts, unreachable clusters and busy images retryable, and client mistakes not", async () => {
    const retryable = (exitCode: number, stderr: string) => {
      const { storage } = setup(() => ({ exitCode, stderr }));
      return storage.remove("x").catch((e: BmiError) => e.retryable);
    };
    expect(await retryable(110, "rbd: (110) Connection timed out")).toBe(true);
    expect(await retryable(16, "rbd: error: image still has watchers")).toBe(true);
    expect(await retryable(22, "parent snapshot must be protected")).toBe(false);
    expect(await retryable(13, "rbd: couldn't connect to the cluster!\n(13) Permission denied")).toBe(false);
  });

  it("takes rbd's own line as the reason, skipping librbd log lines around it", () => {
    expect(rbdReason(`rbd: copy failed: (17) File exists\n${LOG}\n`)).toBe("copy failed: (17) File exists");
    expect(
      rbdReason(
        "rbd: flatten error: 2026-11-26T06:26:12.008+0000 7fd8feeb8380 -1 librbd::Operations: image has no parent\n(22) Invalid argument",
      ),
    ).toBe("flatten error: image has no parent");
  });

  it("turns a runner timeout into a retryable storage timeout", async () => {
    const runner = createRecordingRunner(
      () => new BmiError("timeout", "timed out after 10 ms: rbd ls", { subsystem: "core" }),
    );
    const error = await expectBmiError(() => createCephStorage({ pool: "bmi", runner }).list(), "timeout");
    expect(error.subsystem).toBe("storage");
    expect(error.retryable).toBe(true);
  });

  it("treats the idempotent cases as success: protect twice, unprotect twice, flatten a flat image", async () => {
    const { storage } = setup((args) => {
      if (args[1] === "protect")
        return {
          exitCode: 16,
          stderr: "rbd: protecting snap failed: (16) Device or resource busy\nsnap is already protected",
        };
      if (args[1] === "unprotect") return { exitCode: 22, stderr: "rbd: snap is already unprotected" };
      if (args[0] === "flatten")
        return {
          exitCode: 22,
          stderr: "librbd::Operations: image has no parent\nrbd: flatten error: (22) Invalid argument",
        };
      return {};
    });
    await storage.protectSnapshot({ image: "g", snapshot: "s" });
    await storage.unprotectSnapshot({ image: "g", snapshot: "s" });
    await storage.flatten("g");
  });

  it("answers exists() false only for a missing image, and throws for a missing keyring", async () => {
    expect(
      await setup(() => ({
        exitCode: 2,
        stderr: "rbd: error opening image x: (2) No such file or directory",
      })).storage.exists("x"),
    ).toBe(false);
    await expectBmiError(
      () =>
        setup(() => ({
          exitCode: 2,
          stderr: "auth: unable to find a keyring on /k: (2) No such file or directory",
        })).storage.exists("x"),
      "permission_denied",
    );
    await expectBmiError(
      () =>
        setup(() => ({
          exitCode: 2,
          stderr: "rbd: error opening pool 'bmi': (2) No such file or directory",
        })).storage.exists("x"),
      "not_found",
    );
  });
});

describe("ceph storage: --format json quirks", () => {
  it('reads snapshot protection printed as the strings "true"/"false" and hides clone-v2 trash', async () => {
    const { storage } = setup(() => ({
      stdout: JSON.stringify([
        { id: 4, name: "s1", size: 1, protected: "true", timestamp: "Tue Nov 24 02:46:32 2026" },
        { id: 5, name: "s2", size: 1, protected: "false", timestamp: "Tue Nov 24 02:46:33 2026" },
        {
          id: 6,
          name: "5c8d6099-efee-4436-b226-e82a9704cb1f",
          size: 1,
          protected: "false",
          namespace: { type: "trash", original_name: "old" },
        },
      ]),
    }));
    expect(await storage.listSnapshots("g")).toEqual([
      { name: "s1", protected: true },
      { name: "s2", protected: false },
    ]);
  });

  it("reads an image with and without a parent (which disappears after flatten)", async () => {
    const info = {
      name: "c0",
      id: "1027",
      size: 1073741824,
      objects: 256,
      order: 22,
      features: ["layering"],
      create_timestamp: "Tue Nov 24 02:46:32 2026",
    };
    const withParent = {
      ...info,
      parent: {
        pool: "bmi",
        pool_namespace: "",
        image: "golden",
        id: "10",
        snapshot: "s1",
        trash: false,
        overlap: 1,
      },
    };
    expect(await setup(() => ({ stdout: JSON.stringify(withParent) })).storage.info("c0")).toEqual({
      name: "c0",
      sizeBytes: 1073741824,
      parent: { image: "golden", snapshot: "s1" },
    });
    expect(await setup(() => ({ stdout: JSON.stringify(info) })).storage.info("c0")).toEqual({
      name: "c0",
      sizeBytes: 1073741824,
      parent: null,
    });
    const otherPool = { ...info, parent: { ...withParent.parent, pool: "golden-pool" } };
    expect((await setup(() => ({ stdout: JSON.stringify(otherPool) })).storage.info("c0")).parent).toEqual({
      image: "golden-pool/golden",
      snapshot: "s1",
    });
    // The same rule as librbd's and `rbd children`: another namespace of our pool is not ours.
    const otherNamespace = { ...info, parent: { ...withParent.parent, pool_namespace: "tenant" } };
    expect(
      (await setup(() => ({ stdout: JSON.stringify(otherNamespace) })).storage.info("c0")).parent,
    ).toEqual({ image: "bmi/golden", snapshot: "s1" });
  });

  it("names a trashed clone-v2 parent snapshot by its original name (Pacific prints trash: false)", async () => {
    const uuid = "81488e54-40cd-4376-971a-351e462b0e68";
    const { storage, commands } = setup((args) =>
      args[0] === "info"
        ? {
            stdout: JSON.stringify({
              name: "c",
              size: 4,
              parent: { pool: "bmi", image: "g", snapshot: uuid, trash: false },
            }),
          }
        : {
            stdout: JSON.stringify([
              { id: 65, name: uuid, protected: "false", namespace: { type: "trash", original_name: "s" } },
            ]),
          },
    );
    expect((await storage.info("c")).parent).toEqual({ image: "g", snapshot: "s" });
    expect(commands()[1]).toEqual(["snap", "ls", "--all", "--format", "json", "bmi/g"]);
  });

  it("reads children as objects (Ceph ≥ 13) and as pool/image strings (older)", async () => {
    const objects = [
      { pool: "bmi", pool_namespace: "", image: "c1" },
      { pool: "other", pool_namespace: "", image: "c0" },
      { pool: "bmi", pool_namespace: "tenant", image: "c3" },
    ];
    expect(
      await setup(() => ({ stdout: JSON.stringify(objects) })).storage.children({
        image: "g",
        snapshot: "s",
      }),
    ).toEqual(["bmi/c3", "c1", "other/c0"]);
    expect(
      await setup(() => ({ stdout: '["bmi/c2"]' })).storage.children({ image: "g", snapshot: "s" }),
    ).toEqual(["c2"]);
  });

  it("reads an empty pool printed as nothing or as [] and sorts names", async () => {
    expect(await setup(() => ({ stdout: "" })).storage.list()).toEqual([]);
    expect(await setup(() => ({ stdout: '["golden","base","c0"]\n' })).storage.list()).toEqual([
      "base",
      "c0",
      "golden",
    ]);
  });

  it("fails with internal, not a crash, on output that is not JSON or has another shape", async () => {
    const garbled = await expectBmiError(
      () => setup(() => ({ stdout: "warning: x\n[" })).storage.list(),
      "internal",
    );
    expect(garbled.message).toMatch(/not JSON/);
    const shape = await expectBmiError(
      () => setup(() => ({ stdout: '{"name":1}' })).storage.info("x"),
      "internal",
    );
    expect(shape.message).toMatch(/unexpected shape/);
  });
});
