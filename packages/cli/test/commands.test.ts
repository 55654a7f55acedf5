import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BmiError } from "@bmi/core";
import type { MemoryBmi } from "@bmi/core/testing";
import { afterAll, beforeEach, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { EXIT } from "../src/index.js";
import { cliOn, memoryDeployment } from "./harness.js";

let memory: MemoryBmi;
let bmi: ReturnType<typeof cliOn>;
beforeEach(async () => {
  memory = await memoryDeployment();
  bmi = cliOn(memory);
});
const dir = mkdtempSync(join(tmpdir(), "bmi-cli-test-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("--version and usage errors (issue 21.1)", () => {
  it("--version prints the package's version", async () => {
    const { version } = createRequire(import.meta.url)("../package.json") as { version: string };
    expect(await bmi("--version")).toMatchObject({ code: EXIT.ok, stdout: `${version}\n` });
  });

  it.each([
    [["ls", "p1", "--bogus"], "unknown option '--bogus'", "commander.unknownOption"],
    [["snap", "create", "p1"], "missing required argument 'disk'", "commander.missingArgument"],
    [["frobnicate"], "unknown command 'frobnicate'", "commander.unknownCommand"],
    [
      ["ls", "p1", "-f", "xml"],
      "option '-f, --format <format>' argument 'xml' is invalid",
      "commander.invalidArgument",
    ],
  ])("%j is invalid_input as JSON on stdout under --json and -f json", async (argv, message, usage) => {
    for (const json of [["--json"], ["-f", "json"], ["--format=json"]]) {
      // -f xml replaces the format, so only --json applies to that case.
      if (argv.includes("xml") && json[0] !== "--json") continue;
      const r = await bmi(...argv, ...json);
      expect(r.code).toBe(EXIT.usage);
      expect(r.stderr).toBe("");
      const { error } = JSON.parse(r.stdout);
      expect(error).toMatchObject({ code: "invalid_input", fault: "client", details: { usage } });
      expect(error.message).toContain(message);
    }
    const human = await bmi(...argv);
    expect(human.code).toBe(EXIT.usage);
    expect(human.stderr).toContain(message);
  });

  it("a usage error under -f yaml is YAML", async () => {
    const r = await bmi("snap", "create", "p1", "-f", "yaml");
    expect(parseYaml(r.stdout).error).toMatchObject({ code: "invalid_input" });
  });

  it("bad option values and a missing batch file exit 2 (invalid_input), not 1", async () => {
    for (const argv of [
      ["serve", "--port", "abc"],
      ["serve", "--port", "70000"],
      ["serve", "--drain", "-1"],
      ["provision-many", "p1", join(dir, "nope.txt")],
      ["provision-many", "p1", join(dir, "nope.txt"), "--concurrency", "0"],
      ["pro", "p1", "n2", "d2", "--power", "cycle", "--wait", "--timeout", "5x"],
      ["pro", "p1", "n2", "d2", "--power", "sideways"],
      ["project", "create", "x", "--id", "1.5"],
    ]) {
      const r = await bmi(...argv, "--json");
      expect(r.code, argv.join(" ")).toBe(EXIT.usage);
      expect(JSON.parse(r.stdout).error.code, argv.join(" ")).toBe("invalid_input");
    }
    const missing = await bmi("provision-many", "p1", join(dir, "nope.txt"));
    expect(missing.stderr).toMatch(
      /^bmi: error: the batch file .*nope\.txt: no such file \(invalid_input\)$/m,
    );
  });
});

describe("bmi power (issue 16.6)", () => {
  it("on, off, cycle --force and status, through the project's ownership check", async () => {
    const on = await bmi("power", "on", "p1", "n2", "--json");
    expect(on.code).toBe(EXIT.ok);
    expect(JSON.parse(on.stdout)).toEqual({ project: "p1", node: "n2", power: "on" });
    expect(memory.power.boots("n2")).toBe(1);
    expect((await bmi("power", "cycle", "p1", "n2", "--force", "-f", "value", "-c", "power")).stdout).toBe(
      "on\n",
    );
    expect(memory.power.boots("n2")).toBe(2);
    expect((await bmi("power", "status", "p1", "n2", "-f", "value", "-c", "power")).stdout).toBe("on\n");
    expect((await bmi("power", "off", "p1", "n2", "-f", "value", "-c", "power")).stdout).toBe("off\n");
    const table = (await bmi("power", "status", "p1", "n2")).stdout;
    expect(table).toMatch(/│ power +│ off +│/);
  });

  it("a node the project does not own is forbidden, and no call reaches its BMC", async () => {
    const before = memory.power.calls.length;
    for (const action of ["on", "off", "cycle", "status"]) {
      const r = await bmi("power", action, "p1", "n3", "--json");
      expect(r.code).toBe(EXIT.auth);
      expect(JSON.parse(r.stdout).error.code).toBe("forbidden");
    }
    expect(memory.power.calls.slice(before)).toEqual([]);
  });
});

describe("bmi pro --power --wait (issue 16.6)", () => {
  /** The node's firmware, then its OS, log in to its target once its BMC has powered it on. */
  function bootsWhenPowered(node: string): void {
    memory.bmi.on(async (event) => {
      if (event.type !== "boot:stage" || event.node !== node) return;
      const target = (await memory.bmi.listProvisionings()).find((p) => p.node === node)?.target.name ?? "";
      if (event.stage === "powered_on") memory.export.login(target, "iqn.2010-04.org.ipxe:n2");
      if (event.stage === "firmware_login") memory.export.login(target, "iqn.1993-08.org.debian:n2");
    });
  }

  it("provisions, powers the node with boot device PXE, and reports the stages in order", async () => {
    bootsWhenPowered("n2");
    const r = await bmi("pro", "p1", "n2", "d2", "--image", "golden", "--power", "cycle", "--wait", "--json");
    expect(r.code, r.stdout).toBe(EXIT.ok);
    const result = JSON.parse(r.stdout);
    expect(result).toMatchObject({ node: "n2", disk: "d2", boot: { state: "SUCCESS" } });
    expect(result.boot.stages.map((s: { stage: string }) => s.stage)).toEqual([
      "powered_on",
      "firmware_login",
      "os_login",
    ]);
    expect(memory.power.bootDevice("n2")).toBe("pxe");
  });

  it("shows the stages live on a terminal, and says how long the boot took", async () => {
    bootsWhenPowered("n2");
    const tty = cliOn(memory, { tty: true });
    const r = await tty(
      "pro",
      "p1",
      "n2",
      "d2",
      "--image",
      "golden",
      "--power",
      "on",
      "--wait",
      "--timeout",
      "1m",
    );
    expect(r.code, r.stderr).toBe(EXIT.ok);
    expect(r.stdout).toMatch(/^node n2 boots disk d2 through eth0/m);
    expect(r.stdout).toMatch(
      /^node n2 booted in [\d.]+ s: powered_on [\d.]+ s, firmware_login [\d.]+ s, os_login/m,
    );
    for (const stage of ["powered_on", "firmware_login", "os_login"]) {
      expect(r.stderr).toMatch(new RegExp(`n2: ${stage} after [\\d.]+ s`));
    }
  });

  it("a boot that does not finish in --timeout is a timeout naming the last stage, with the stages", async () => {
    const r = await bmi(
      "pro",
      "p1",
      "n2",
      "d2",
      "--image",
      "golden",
      "--power",
      "on",
      "--wait",
      "--timeout",
      "300ms",
      "--json",
    );
    expect(r.code).toBe(EXIT.serverFault);
    const { error } = JSON.parse(r.stdout);
    expect(error).toMatchObject({ code: "timeout", subsystem: "power" });
    expect(error.message).toMatch(
      /node n2 is provisioned, but node n2 did not reach firmware_login: stopped after powered_on/,
    );
    expect(error.details.boot.stages.map((s: { stage: string }) => s.stage)).toEqual(["powered_on"]);
    // The provisioning stays: a failed boot is the node's state, not a reason to undo its disk.
    expect((await bmi("node", "show", "p1", "n2", "-f", "value", "-c", "disk")).stdout).toBe("d2\n");
  });

  it("--wait without --power is invalid input before anything runs", async () => {
    const r = await bmi("pro", "p1", "n2", "d2", "--image", "golden", "--wait", "--json");
    expect(r.code).toBe(EXIT.usage);
    expect(JSON.parse(r.stdout).error.message).toMatch(/wait needs input.power/);
    expect((await memory.bmi.listDisks({ project: "p1" })).map((d) => d.name)).toEqual(["d1"]);
  });
});

describe("progress (issue 21.1)", () => {
  it("is drawn on stderr at a terminal, and never on stdout, for JSON, or off a terminal", async () => {
    await memory.storage.create("src3", 1024 * 1024);
    const tty = cliOn(memory, { tty: true });
    const shown = await tty("import", "p1", "src3", "--name", "third");
    expect(shown.code).toBe(EXIT.ok);
    expect(shown.stdout).toMatch(/^imported src3 as third \(RBD \S+\)\n$/);
    expect(shown.stderr).toMatch(/import src3/);
    expect(shown.stderr).toMatch(/\(\d+ ms\)/); // a finished step

    const json = await tty("cp", "p1", "third", "p2", "--json");
    expect(json.code).toBe(EXIT.ok);
    expect(json.stderr).toBe("");
    expect(JSON.parse(json.stdout).name).toBe("third");
    const plain = await bmi("snap", "create", "p1", "d1", "s2", "--force");
    expect(plain.code).toBe(EXIT.ok);
    expect(plain.stderr).not.toMatch(/snapshot d1/);
  });

  it("provision-many goes through the SDK's provisionMany: one row per node, progress per node", async () => {
    const file = join(dir, "batch.txt");
    writeFileSync(file, "# node disk nic\nn2 b2 eth0\nfree1 b3\n");
    const tty = cliOn(memory, { tty: true });
    const r = await tty("provision-many", "p1", file, "--image", "golden");
    expect(r.code).toBe(EXIT.auth); // free1 is nobody's
    expect(r.stderr).toMatch(/n2 boots disk b2/);
    expect(r.stderr).toMatch(/free1 ← b3/);
    expect(r.stdout).toMatch(/│ n2 +│ true +│ b2 /);
    expect(r.stdout).toMatch(/│ free1 +│ false +│ +│ +│ node free1 .*\(forbidden\)/);

    writeFileSync(file, JSON.stringify([{ node: "n2", disk: "b2" }]));
    const json = await bmi("provision-many", "p1", file, "--json");
    expect(json.code).toBe(EXIT.ok);
    expect(JSON.parse(json.stdout)).toMatchObject([{ node: "n2", ok: true, provisioning: { disk: "b2" } }]);
  });
});

describe("deprovision", () => {
  it("a NIC other than the provisioned one is refused by the SDK, and the node stays provisioned", async () => {
    const r = await bmi("dpro", "p1", "n1", "eth1", "--json");
    expect(r.code).toBe(EXIT.usage);
    expect(JSON.parse(r.stdout).error.message).toBe("node n1 is provisioned through NIC eth0, not eth1");
    expect((await memory.bmi.listProvisionings()).map((p) => p.node)).toEqual(["n1"]);
    const ok = await bmi("dpro", "p1", "n1", "eth0", "--power-off");
    expect(ok).toMatchObject({ code: EXIT.ok, stdout: "node n1 deprovisioned\n" });
    expect(await memory.bmi.listProvisionings()).toEqual([]);
  });
});

describe("reconcile", () => {
  it("a repair that failed is a FAILED line saying whether a later run may succeed", async () => {
    expect((await bmi("db", "init")).code).toBe(EXIT.ok);
    await memory.boot.write({
      node: "n2",
      macs: ["52:54:00:00:00:02"],
      target: { name: "iqn.2026-11.org.bmi:stray", portal: "127.0.0.1", port: 3260, lun: 1 },
      firmware: "bios",
      label: "stray",
    });
    memory.boot.failNext("remove", new BmiError("busy", "the TFTP root is being synced"));
    const r = await bmi("reconcile", "--repair", "--remove", "n2");
    expect(r.code).toBe(EXIT.conflict);
    expect(r.stdout).toMatch(
      /^FAILED\tunknown\tn2\tthe TFTP root is being synced \(may succeed if run again later\)$/m,
    );
    const json = JSON.parse((await bmi("reconcile", "--json")).stdout);
    expect(json.drift).toEqual([expect.objectContaining({ kind: "unknown", subject: "n2" })]);
    const again = await bmi("reconcile", "--repair", "--remove", "n2");
    expect(again.code).toBe(EXIT.ok);
    expect(await memory.boot.read("n2")).toBeNull();
  });
});
