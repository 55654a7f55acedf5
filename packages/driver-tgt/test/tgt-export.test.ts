import { readFileSync } from "node:fs";
import { BmiError, type ExportRequest, TOKENS } from "@bmi/core";
import { container } from "@bmi/core/di";
import { createRecordingRunner, type ScriptedReply } from "@bmi/core/testing";
import { describe, expect, it } from "vitest";
import { createTgtExport, parseTargets, registerTgtExport } from "../src/index.js";

/** Real `tgtadm --op show` output: an rbd target with ACL and CHAP, and a file target with a session. */
const SHOW = readFileSync(new URL("./fixtures/show.txt", import.meta.url), "utf8");

/** Options of every driver under test; each spread gets its own tid counter (3, 4, ...), so tids are predictable. */
const base = {
  portal: "192.0.2.10",
  port: 3261,
  controlPort: 7,
  get tids() {
    let next = 3;
    return () => next++;
  },
} as const;
const PREFIX = ["-C", "7", "--lld", "iscsi"];

/** The part of a tgtadm call after `-C 7 --lld iscsi`. */
const rest = (args: readonly string[]) => args.slice(PREFIX.length);
const isShow = (args: readonly string[]) => args.includes("show");

function scripted(reply: (args: readonly string[]) => ScriptedReply | undefined) {
  return createRecordingRunner((_file, args) => reply(args) ?? {});
}

const fileRequest = (target = "iqn.2026-11.org.bmi:1img9"): ExportRequest => ({
  target,
  backing: { kind: "file", path: "/srv/bmi/1img9.img" },
  access: { initiators: "ALL" },
});

async function failureOf(promise: Promise<unknown>): Promise<BmiError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(BmiError);
  expect((error as BmiError).subsystem).toBe("export");
  return error as BmiError;
}

describe("parseTargets (captured tgtadm --op show)", () => {
  const targets = parseTargets(SHOW);

  it("finds each target with its whole name, IQN colons included (COR-7)", () => {
    expect(targets.map((t) => [t.tid, t.name])).toEqual([
      [1, "iqn.2026-11.org.bmi:rack:1img7"],
      [2, "1img8"],
    ]);
  });

  it("reads LUN 1's backing store (rbd pool/image and a file path) and its size", () => {
    const [rbd, file] = targets;
    expect(rbd?.luns.find((l) => l.lun === 1)).toMatchObject({
      type: "disk",
      backingType: "rbd",
      backingPath: "bmi/1img7",
      sizeBytes: 17e6,
    });
    expect(file?.luns.find((l) => l.lun === 1)).toMatchObject({
      backingType: "rdwr",
      backingPath: "/srv/bmi/disk.img",
    });
    expect(file?.luns.find((l) => l.lun === 0)).toMatchObject({ type: "controller", backingPath: null });
  });

  it("reads sessions, CHAP accounts and the mixed address/name ACL", () => {
    const [rbd, file] = targets;
    expect(rbd?.sessions).toEqual([]);
    expect(file?.sessions).toEqual([
      { nexus: 1, initiator: "iqn.2008-11.org.linux-kvm", alias: null, addresses: ["127.0.0.1"] },
    ]);
    expect(rbd?.accounts).toEqual(["node07"]);
    expect(file?.accounts).toEqual([]);
    expect(rbd?.acl).toEqual(["127.0.0.1", "10.0.0.0/24", "iqn.2026-11.org.bmi.node:node-07"]);
    expect(file?.acl).toEqual(["ALL"]);
  });

  it("reads each session's InitiatorAlias: none (iPXE sends none), open-iscsi's host name (issue 15)", () => {
    // As tgt showed node-01's target while its OS logged in (the lab, issue 15).
    const show = [
      "Target 1: iqn.2026-11.org.bmi:651582img2",
      "    I_T nexus information:",
      "        I_T nexus: 2",
      "            Initiator: iqn.2010-04.org.ipxe:b1000000-0000-4000-8000-0000000c0501 alias: none",
      "            Connection: 0",
      "                IP Address: 127.0.0.1",
      "        I_T nexus: 3",
      "            Initiator: iqn.2010-04.org.ipxe:b1000000-0000-4000-8000-0000000c0501 alias: (none)",
      "            Connection: 0",
      "                IP Address: 127.0.0.1",
      "        I_T nexus: 4",
      "            Initiator: iqn.2010-04.org.ipxe:b1000000-0000-4000-8000-0000000c0501 alias: bmi-node",
      "",
    ].join("\n");
    expect(parseTargets(show)[0]?.sessions.map((s) => [s.nexus, s.alias])).toEqual([
      [2, null],
      [3, "(none)"],
      [4, "bmi-node"],
    ]);
  });

  it("reads an empty daemon as no targets", () => {
    expect(parseTargets("")).toEqual([]);
  });
});

describe("createTgtExport options", () => {
  it("rejects bad options with invalid_input naming the option", () => {
    const bad = [
      [{ portal: "not a host!" }, "options.portal"],
      [{ portal: "127.0.0.1", controlPort: 40000 }, "options.controlPort"],
      [{ portal: "127.0.0.1", port: 0 }, "options.port"],
      [{ portal: "127.0.0.1", naming: { iqnPrefix: "IQN.bad" } }, "options.naming"],
      [{ portal: "127.0.0.1", rbd: { conf: "relative/ceph.conf" } }, "options.rbd.conf"],
    ] as const;
    for (const [options, field] of bad) {
      let error: unknown;
      try {
        createTgtExport(options as never);
      } catch (e) {
        error = e;
      }
      expect(error, field).toBeInstanceOf(BmiError);
      expect((error as BmiError).code).toBe("invalid_input");
      expect((error as BmiError).message).toContain(field);
    }
  });

  it("names targets with the configured IQN prefix, or bare in compatibility mode", () => {
    expect(createTgtExport({ portal: "127.0.0.1" }).targetNameFor("1img7")).toBe("iqn.2026-11.org.bmi:1img7");
    const custom = createTgtExport({ portal: "127.0.0.1", naming: { iqnPrefix: "iqn.2024-01.edu.moc" } });
    expect(custom.targetNameFor("1img7")).toBe("iqn.2024-01.edu.moc:1img7");
    expect(createTgtExport({ portal: "127.0.0.1", naming: "bare" }).targetNameFor("1img7")).toBe("1img7");
  });

  it("registerTgtExport puts the driver under TOKENS.export", () => {
    const child = container.createChildContainer();
    const driver = registerTgtExport(child, { portal: "127.0.0.1" });
    expect(child.resolve(TOKENS.export)).toBe(driver);
    expect(driver.capabilities).toEqual({ backings: ["rbd", "file"], acl: true, chap: true });
  });
});

describe("export: the tgtadm calls", () => {
  it("creates target, LUN 1 and an explicit ALL binding with three calls and no show", async () => {
    const runner = scripted((args) => (isShow(args) ? { stdout: SHOW } : undefined));
    const driver = createTgtExport({ ...base, runner, timeoutMs: 4321 });
    const result = await driver.export(fileRequest());
    expect(result).toEqual({
      target: "iqn.2026-11.org.bmi:1img9",
      portal: "192.0.2.10",
      port: 3261,
      lun: 1,
      backing: { kind: "file", path: "/srv/bmi/1img9.img" },
      sessions: 0,
      initiators: "ALL",
    });
    expect(runner.calls.every((c) => c.file === "tgtadm")).toBe(true);
    expect(runner.calls.every((c) => c.args.slice(0, 4).join(" ") === PREFIX.join(" "))).toBe(true);
    expect(runner.calls.every((c) => c.options.timeoutMs === 4321)).toBe(true);
    expect(runner.calls.map((c) => rest(c.args))).toEqual([
      ["--mode", "target", "--op", "new", "--tid", "3", "--targetname", "iqn.2026-11.org.bmi:1img9"],
      [
        "--mode",
        "logicalunit",
        "--op",
        "new",
        "--tid",
        "3",
        "--lun",
        "1",
        "--bstype",
        "rdwr",
        "--backing-store",
        "/srv/bmi/1img9.img",
      ],
      ["--mode", "target", "--op", "bind", "--tid", "3", "--initiator-address", "ALL"],
    ]);
  });

  it("needs no show for the next export: the cost does not grow with the number of targets", async () => {
    const runner = scripted((args) => (isShow(args) ? { stdout: SHOW } : undefined));
    const driver = createTgtExport({ ...base, runner });
    await driver.export(fileRequest("iqn.2026-11.org.bmi:a"));
    const before = runner.calls.length;
    await driver.export(fileRequest("iqn.2026-11.org.bmi:b"));
    const second = runner.calls.slice(before).map((c) => rest(c.args));
    expect(second.some(isShow)).toBe(false);
    expect(second[0]).toContain("4");
  });

  it("serves rbd through --bstype rbd with conf and id from the backing, else from the options", async () => {
    const runner = scripted((args) => (isShow(args) ? { stdout: "" } : undefined));
    const driver = createTgtExport({ ...base, runner, rbd: { conf: "/etc/ceph/lab.conf", clientId: "bmi" } });
    await driver.export({
      target: "iqn.2026-11.org.bmi:1img7",
      backing: { kind: "rbd", pool: "bmi", image: "1img7" },
      access: { initiators: "ALL" },
    });
    await driver.export({
      target: "iqn.2026-11.org.bmi:1img8",
      backing: { kind: "rbd", pool: "bmi", image: "1img8", conf: "/other.conf", clientId: "admin" },
      access: { initiators: "ALL" },
    });
    const luns = runner.calls.map((c) => rest(c.args)).filter((a) => a.includes("logicalunit"));
    expect(luns[0]?.slice(-6)).toEqual([
      "--bstype",
      "rbd",
      "--backing-store",
      "bmi/1img7",
      "--bsopts",
      "conf=/etc/ceph/lab.conf;id=bmi",
    ]);
    expect(luns[1]?.slice(-2)).toEqual(["--bsopts", "conf=/other.conf;id=admin"]);
  });

  it("binds addresses and initiator names, and CHAP with the secret only where tgtadm needs it", async () => {
    const secret = "a-very-secret-chap-pw";
    const runner = scripted((args) => (isShow(args) ? { stdout: "" } : undefined));
    const driver = createTgtExport({ ...base, runner });
    await driver.export({
      ...fileRequest(),
      access: {
        initiators: { addresses: ["10.0.0.7"], names: ["iqn.2026-11.org.bmi.node:node-07"] },
        chap: { user: "node07", secret },
      },
    });
    const calls = runner.calls.map((c) => rest(c.args));
    expect(calls).toContainEqual([
      "--mode",
      "target",
      "--op",
      "bind",
      "--tid",
      "3",
      "--initiator-address",
      "10.0.0.7",
    ]);
    expect(calls).toContainEqual([
      "--mode",
      "target",
      "--op",
      "bind",
      "--tid",
      "3",
      "--initiator-name",
      "iqn.2026-11.org.bmi.node:node-07",
    ]);
    expect(calls).not.toContainEqual(expect.arrayContaining(["ALL"]));
    expect(calls).toContainEqual(["--mode", "account", "--op", "bind", "--tid", "3", "--user", "node07"]);
    const withSecret = runner.calls.filter((c) => c.args.includes(secret));
    expect(withSecret).toHaveLength(1);
    expect(withSecret[0]?.options.secrets).toEqual([secret]);
  });

  it("draws another tid when another process holds the one it drew", async () => {
    const runner = scripted((args) => {
      // Another process's target holds tid 3, the first one this driver draws.
      if (isShow(args)) return { stdout: `${SHOW}Target 3: iqn.2026-11.org.bmi:someone-else\n` };
      if (args.includes("new") && args.includes("target") && args.includes("3")) {
        return { exitCode: 22, stderr: "tgtadm: this target already exists\n" };
      }
      return undefined;
    });
    const driver = createTgtExport({ ...base, runner });
    await driver.export(fileRequest());
    const news = runner.calls.map((c) => rest(c.args)).filter((a) => a[1] === "target" && a[3] === "new");
    expect(news.map((a) => a[5])).toEqual(["3", "4"]);
  });

  it("is idempotent when the name already exists with the same backing and access", async () => {
    const same = `${SHOW}Target 3: iqn.2026-11.org.bmi:1img9\n    LUN information:\n        LUN: 1\n            Backing store type: rdwr\n            Backing store path: /srv/bmi/1img9.img\n    Account information:\n    ACL information:\n        ALL\n`;
    const runner = scripted((args) => {
      if (isShow(args)) return { stdout: same };
      if (args.includes("new")) return { exitCode: 22, stderr: "tgtadm: this target already exists\n" };
      return undefined;
    });
    const driver = createTgtExport({ ...base, runner });
    await expect(driver.export(fileRequest())).resolves.toMatchObject({
      target: "iqn.2026-11.org.bmi:1img9",
      lun: 1,
    });
    const other = await failureOf(
      driver.export({ ...fileRequest(), backing: { kind: "file", path: "/srv/bmi/other.img" } }),
    );
    expect(other.code).toBe("already_exists");
    expect(runner.calls.some((c) => c.args.includes("delete"))).toBe(false);
  });

  it("says tgtd is unreachable, not that the backing store failed, when tgtd dies during the export (issue 22.11)", async () => {
    const runner = scripted((args) => {
      if (isShow(args)) return { stdout: "" };
      if (args.includes("logicalunit"))
        return {
          exitCode: 107,
          stderr: "tgtadm: can't send the request to the tgt daemon, Transport endpoint is not connected\n",
        };
      return undefined;
    });
    const driver = createTgtExport({ ...base, runner });
    const error = await failureOf(driver.export(fileRequest()));
    expect(error.code).toBe("unavailable");
    expect(error.message).toMatch(/cannot reach tgtd .* to add LUN 1 to iqn\.2026-11\.org\.bmi:1img9/);
    expect(error.message).not.toMatch(/backing store/);
  });

  it("removes the half-made target when the LUN cannot be created, and says why in its own words", async () => {
    const runner = scripted((args) => {
      if (isShow(args)) return { stdout: "" };
      if (args.includes("logicalunit")) return { exitCode: 22, stderr: "tgtadm: invalid request\n" };
      return undefined;
    });
    const driver = createTgtExport({ ...base, runner });
    const error = await failureOf(driver.export(fileRequest()));
    expect(error.code).toBe("not_found");
    expect(error.message).toMatch(/backing store \/srv\/bmi\/1img9\.img/);
    expect(error.details).toMatchObject({ exitCode: 22, reason: "invalid request" });
    expect(rest(runner.calls.at(-1)?.args ?? [])).toEqual([
      "--mode",
      "target",
      "--op",
      "delete",
      "--force",
      "--tid",
      "3",
    ]);
  });

  it("validates before running anything", async () => {
    const runner = scripted(() => undefined);
    const driver = createTgtExport({ ...base, runner });
    const cases: ExportRequest[] = [
      { ...fileRequest(), target: "bad name" },
      { ...fileRequest(), backing: { kind: "file", path: "/srv/a,b.img" } },
      { ...fileRequest(), backing: { kind: "file", path: "/srv/../etc/shadow" } },
      { ...fileRequest(), backing: { kind: "rbd", pool: "bmi", image: "x;rm" } },
      { ...fileRequest(), access: { initiators: { addresses: ["10.0.0.1 ALL"] } } },
      { ...fileRequest(), access: { initiators: "ALL", chap: { user: "u", secret: "short" } } },
    ];
    for (const request of cases) expect((await failureOf(driver.export(request))).code).toBe("invalid_input");
    const memory = await failureOf(
      driver.export({ ...fileRequest(), backing: { kind: "memory", image: "x" } }),
    );
    expect(memory.code).toBe("unsupported");
    expect(runner.calls).toEqual([]);
  });
});

describe("unexport, list and errors", () => {
  it("refuses with busy while initiators are logged in, without deleting anything", async () => {
    const runner = scripted((args) => (isShow(args) ? { stdout: SHOW } : undefined));
    const driver = createTgtExport({ ...base, runner });
    const error = await failureOf(driver.unexport("1img8"));
    expect(error.code).toBe("busy");
    expect(error.retryable).toBe(true);
    expect(error.details).toMatchObject({ sessions: ["iqn.2008-11.org.linux-kvm"] });
    expect(runner.calls.some((c) => c.args.includes("delete"))).toBe(false);
  });

  it("force deletes by the target's own tid", async () => {
    const runner = scripted((args) => (isShow(args) ? { stdout: SHOW } : undefined));
    const driver = createTgtExport({ ...base, runner });
    await driver.unexport("1img8", { force: true });
    expect(rest(runner.calls[1]?.args ?? [])).toEqual([
      "--mode",
      "target",
      "--op",
      "delete",
      "--force",
      "--tid",
      "2",
    ]);
  });

  it("maps tgtd's 'still active' (a session opened meanwhile) to busy", async () => {
    const runner = scripted((args) => {
      if (isShow(args)) return { stdout: SHOW };
      return { exitCode: 22, stderr: "tgtadm: this target is still active\n" };
    });
    const driver = createTgtExport({ ...base, runner });
    expect((await failureOf(driver.unexport("iqn.2026-11.org.bmi:rack:1img7"))).code).toBe("busy");
  });

  it("unexports a target it exported with one delete by its tid, no show of every target", async () => {
    const runner = scripted((args) => (isShow(args) ? { stdout: SHOW } : undefined));
    const driver = createTgtExport({ ...base, runner });
    await driver.export(fileRequest());
    const before = runner.calls.length;
    await driver.unexport("iqn.2026-11.org.bmi:1img9");
    expect(runner.calls.slice(before).map((c) => rest(c.args))).toEqual([
      ["--mode", "target", "--op", "delete", "--tid", "3"],
    ]);
  });

  it("a target deleted behind its back: one show, then the right tid or not_found", async () => {
    let shows = 0;
    const runner = scripted((args) => {
      if (isShow(args)) {
        shows++;
        // Someone deleted 1img9 (our tid 3) and exported it again as tid 5.
        return { stdout: `${SHOW}Target 5: iqn.2026-11.org.bmi:1img9\n` };
      }
      if (args.includes("delete") && args.includes("3"))
        return { exitCode: 22, stderr: "tgtadm: can't find the target\n" };
      return undefined;
    });
    const driver = createTgtExport({ ...base, runner });
    await driver.export(fileRequest());
    await driver.unexport("iqn.2026-11.org.bmi:1img9");
    const deletes = runner.calls.map((c) => rest(c.args)).filter((a) => a.includes("delete"));
    expect(deletes.map((a) => a.at(-1))).toEqual(["3", "5"]);
    expect(shows).toBe(1);

    const gone = scripted((args) => {
      if (isShow(args)) return { stdout: SHOW };
      if (args.includes("delete") && args.includes("3"))
        return { exitCode: 22, stderr: "tgtadm: can't find the target\n" };
      return undefined;
    });
    const other = createTgtExport({ ...base, runner: gone });
    await other.export(fileRequest());
    expect((await failureOf(other.unexport("iqn.2026-11.org.bmi:1img9"))).code).toBe("not_found");
  });

  it("without force, a known target with initiators logged in stays (tgtd: still active → busy)", async () => {
    const runner = scripted((args) => {
      if (isShow(args)) return { stdout: SHOW };
      if (args.includes("delete")) return { exitCode: 22, stderr: "tgtadm: this target is still active\n" };
      return undefined;
    });
    const driver = createTgtExport({ ...base, runner });
    await driver.export(fileRequest());
    const error = await failureOf(driver.unexport("iqn.2026-11.org.bmi:1img9"));
    expect(error.code).toBe("busy");
    const deletes = runner.calls.map((c) => rest(c.args)).filter((a) => a.includes("delete"));
    expect(deletes).toEqual([["--mode", "target", "--op", "delete", "--tid", "3"]]);
  });

  it("exports different targets in parallel, each with its own tid", async () => {
    let running = 0;
    let most = 0;
    const slow = async () => {
      running++;
      most = Math.max(most, running);
      await new Promise((resolve) => setTimeout(resolve, 5));
      running--;
      return { command: "tgtadm", exitCode: 0, stdout: "", stderr: "", durationMs: 5 };
    };
    const runner = createRecordingRunner(
      (_file, args) => (isShow(args) ? { stdout: SHOW } : undefined),
      slow,
    );
    const driver = createTgtExport({ ...base, runner });
    const names = ["a", "b", "c", "d"].map((n) => `iqn.2026-11.org.bmi:${n}`);
    await Promise.all(names.map((name) => driver.export(fileRequest(name))));
    expect(most).toBeGreaterThan(1);
    const news = runner.calls.map((c) => rest(c.args)).filter((a) => a[1] === "target" && a[3] === "new");
    expect(new Set(news.map((a) => a[5])).size).toBe(4);
  });

  it("lists targets with backing, LUN 1 and session counts", async () => {
    const runner = scripted(() => ({ stdout: SHOW }));
    const driver = createTgtExport({ ...base, runner });
    expect(await driver.list()).toEqual([
      {
        target: "iqn.2026-11.org.bmi:rack:1img7",
        portal: "192.0.2.10",
        port: 3261,
        lun: 1,
        backing: { kind: "rbd", pool: "bmi", image: "1img7" },
        sessions: 0,
        initiators: { addresses: ["127.0.0.1", "10.0.0.0/24"], names: ["iqn.2026-11.org.bmi.node:node-07"] },
      },
      {
        target: "1img8",
        portal: "192.0.2.10",
        port: 3261,
        lun: 1,
        backing: { kind: "file", path: "/srv/bmi/disk.img" },
        sessions: 1,
        initiators: "ALL",
      },
    ]);
  });

  it("setInitiators takes the old ACL rules out first, then binds the new ones (issue 17.5)", async () => {
    const runner = scripted((args) => (isShow(args) ? { stdout: SHOW } : undefined));
    const driver = createTgtExport({ ...base, runner });
    await driver.setInitiators("iqn.2026-11.org.bmi:rack:1img7", {
      addresses: ["10.0.0.0/24", "10.247.0.10"],
    });
    expect(runner.calls.map((c) => rest(c.args).join(" "))).toEqual([
      "--mode target --op show",
      "--mode target --op unbind --tid 1 --initiator-address 127.0.0.1",
      "--mode target --op unbind --tid 1 --initiator-name iqn.2026-11.org.bmi.node:node-07",
      "--mode target --op bind --tid 1 --initiator-address 10.247.0.10",
    ]);
    expect((await failureOf(driver.setInitiators("iqn.2026-11.org.bmi:nope", "ALL"))).code).toBe("not_found");
    expect((await failureOf(driver.setInitiators("1img8", { addresses: ["300.1.1.1"] }))).code).toBe(
      "invalid_input",
    );
  });

  it("maps a daemon that does not answer to unavailable, and anything unknown to internal", async () => {
    const down = createTgtExport({
      ...base,
      runner: scripted(() => ({
        exitCode: 107,
        stderr: "tgtadm: failed to send request hdr to tgt daemon, Transport endpoint is not connected\n",
      })),
    });
    const unavailable = await failureOf(down.list());
    expect(unavailable.code).toBe("unavailable");
    expect(unavailable.message).toMatch(/cannot reach tgtd/);
    const odd = createTgtExport({
      ...base,
      runner: scripted(() => ({ exitCode: 3, stderr: "tgtadm: out of cheese\n" })),
    });
    const internal = await failureOf(odd.list());
    expect(internal.code).toBe("internal");
    expect(internal.message).not.toContain("cheese");
    expect(internal.details).toMatchObject({ reason: "out of cheese", exitCode: 3 });
  });

  it("restore creates only the missing targets, after one show", async () => {
    const runner = scripted((args) => (isShow(args) ? { stdout: SHOW } : undefined));
    const driver = createTgtExport({ ...base, runner });
    const created = await driver.restore([
      {
        target: "1img8",
        backing: { kind: "file", path: "/srv/bmi/disk.img" },
        access: { initiators: "ALL" },
      },
      fileRequest(),
    ]);
    expect(created).toEqual(["iqn.2026-11.org.bmi:1img9"]);
    const news = runner.calls.map((c) => rest(c.args)).filter((a) => a[1] === "target" && a[3] === "new");
    expect(news).toEqual([
      ["--mode", "target", "--op", "new", "--tid", "3", "--targetname", "iqn.2026-11.org.bmi:1img9"],
    ]);
  });

  it("passes the caller's abort signal to every tgtadm call", async () => {
    const runner = scripted((args) => (isShow(args) ? { stdout: "" } : undefined));
    const driver = createTgtExport({ ...base, runner });
    const controller = new AbortController();
    await driver.export(fileRequest(), { signal: controller.signal });
    expect(runner.calls.every((c) => c.options.signal === controller.signal)).toBe(true);
  });
});
