/**
 * Every `bmi` command against the real lab drivers (shared Ceph, own tgtd, HIL-compatible
 * server, TFTP root, SQLite DB), run in-process through `run(argv)` with the lab's generated
 * bmi_config.cfg, plus one run of the real binary. Checks output, exit codes and the real effects.
 */
import { existsSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { EXIT, run } from "@bmi/cli";
import { textSink } from "@bmi/core/testing";
import { createHilClient } from "@bmi/driver-hil";
import { type BmiLab, startBmiLab } from "@bmi/lab";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";

interface Result {
  code: number;
  stdout: string;
  stderr: string;
  // biome-ignore lint/suspicious/noExplicitAny: parsed --json output, asserted field by field
  json: any;
}

/** A tgtd control port no tgtd listens on (tgtadm -C n talks to the socket /var/run/tgtd/socket.n). */
function unusedTgtControlPort(): number {
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 40_000);
    if (!existsSync(`/var/run/tgtd/socket.${port}`)) return port;
  }
}

let lab: BmiLab;
let source: string;
const exported: string[] = [];

/** HIL as the project's user sees it (to enable a node's OBM, as its owner would). */
const hil = () =>
  createHilClient({ url: lab.hil.url, username: lab.hilUser.name, password: lab.hilUser.password });

async function bmi(...args: string[]): Promise<Result> {
  const out = textSink();
  const err = textSink();
  const code = await run(["--config", lab.configPath, ...args], {
    stdout: out.stream,
    stderr: err.stream,
    env: {},
  });
  let json: unknown;
  if (args.includes("--json")) json = JSON.parse(out.text());
  return { code, stdout: out.text(), stderr: err.text(), json };
}

beforeAll(async () => {
  lab = await startBmiLab({ ceph: inject("ceph"), nodes: 4, hilActionDelayMs: 5 });
  source = `lab${lab.settings.uid}-cli-src`;
  await lab.drivers.storage.create(source, 8 * 1024 * 1024);
});

afterAll(async () => {
  if (!lab) return;
  for (const name of [source, ...exported]) {
    if (await lab.drivers.storage.exists(name).catch(() => false)) await lab.drivers.storage.remove(name);
  }
  await lab.stop();
});

describe("bmi CLI against the lab", () => {
  it("--help lists the commands with examples and exits 0; usage errors exit 2", async () => {
    const help = await bmi("--help");
    expect(help.code).toBe(EXIT.ok);
    expect(help.stdout).toMatch(/Examples:/);
    for (const command of [
      "import",
      "provision|pro",
      "deprovision|dpro",
      "snap",
      "iscsi",
      "doctor",
      "serve",
    ]) {
      expect(help.stdout).toContain(command);
    }
    expect((await bmi("frobnicate")).code).toBe(EXIT.usage);
    const missing = await bmi("disk", "create", "demo");
    expect(missing.code).toBe(EXIT.usage);
    expect(missing.stderr).toMatch(/missing required argument/);
  });

  it("db init keeps the one admin project the lab created", async () => {
    const first = await bmi("db", "init", "--json");
    expect(first.code).toBe(EXIT.ok);
    expect(first.json).toMatchObject({ created: false, adminProject: { name: "bmi_infra" } });
    const second = await bmi("db", "init");
    expect(second.code).toBe(EXIT.ok);
    expect(second.stdout).toMatch(/admin project bmi_infra \(id \d+\) already existed/);
    const projects = await bmi("project", "ls", "--json");
    expect(projects.json.map((p: { name: string }) => p.name).sort()).toEqual(["bmi_infra", "demo"]);
  });

  it("project create / ls / rm, with conflict, invalid and not-found exit codes", async () => {
    expect((await bmi("project", "create", "other", "--id", "77")).stdout).toMatch(
      /project other created \(id 77\)/,
    );
    const again = await bmi("project", "create", "other", "--json");
    expect(again.code).toBe(EXIT.conflict);
    expect(again.json.error).toMatchObject({ code: "already_exists", fault: "client" });
    const bad = await bmi("project", "create", "no;way");
    expect(bad.code).toBe(EXIT.usage);
    expect(bad.stderr).toMatch(/^bmi: error: .*\(invalid_input\)/);
    expect((await bmi("project", "rm", "ghost")).code).toBe(EXIT.notFound);
    expect((await bmi("project", "ls", "-f", "value")).stdout).toMatch(/^77\tother$/m);
    expect((await bmi("project", "ls")).stdout).toMatch(/│ id +│ name +│[\s\S]*│ 77 +│ other +│/);
  });

  it("import adopts an RBD image; ls and image ls list it; a second import conflicts", async () => {
    const imported = await bmi("import", "demo", source, "--name", "golden", "--json");
    expect(imported.code).toBe(EXIT.ok);
    expect(imported.json.cephName).toMatch(new RegExp(`^${lab.settings.uid}img\\d+$`));
    expect(await lab.drivers.storage.exists(imported.json.cephName)).toBe(true);
    expect((await bmi("ls", "demo", "-f", "value", "-c", "name")).stdout).toBe("golden\n");
    expect((await bmi("image", "ls", "demo", "--json")).json.map((i: { name: string }) => i.name)).toEqual([
      "golden",
    ]);
    expect((await bmi("import", "demo", source, "--name", "golden")).code).toBe(EXIT.conflict);
    expect((await bmi("import", "demo", `${source}-missing`)).code).toBe(EXIT.notFound);
  });

  it("cp, mv and rm move images between projects (and rm refuses what is missing)", async () => {
    const copied = await bmi("cp", "demo", "golden", "other", "golden2", "--json");
    expect(copied.code).toBe(EXIT.ok);
    expect(await lab.drivers.storage.exists(copied.json.cephName)).toBe(true);
    const moved = await bmi("mv", "other", "golden2", "other", "golden3", "--json");
    expect(moved.code).toBe(EXIT.ok);
    expect(moved.json.cephName).toBe(copied.json.cephName); // a move keeps the RBD name
    expect((await bmi("ls", "other", "-f", "value", "-c", "name")).stdout).toBe("golden3\n");
    expect((await bmi("cp", "demo", "nope", "other")).code).toBe(EXIT.notFound);
    expect((await bmi("rm", "other", "golden3")).code).toBe(EXIT.ok);
    expect(await lab.drivers.storage.exists(copied.json.cephName)).toBe(false);
    expect((await bmi("image", "rm", "other", "golden3")).code).toBe(EXIT.notFound);
    expect((await bmi("project", "rm", "other")).code).toBe(EXIT.ok);
  });

  it("export copies an image out of BMI to a free RBD name", async () => {
    const name = `lab${lab.settings.uid}-cli-exported`;
    exported.push(name);
    expect((await bmi("export", "demo", "golden", name)).code).toBe(EXIT.ok);
    expect(await lab.drivers.storage.exists(name)).toBe(true);
    expect((await bmi("export", "demo", "golden", name)).code).toBe(EXIT.conflict);
  });

  it("disk create / ls / showdisks export a clone as an iSCSI target", async () => {
    const created = await bmi("disk", "create", "demo", "golden", "d1", "--json");
    expect(created.code).toBe(EXIT.ok);
    const targets = (await lab.drivers.export.list()).map((t) => t.target);
    expect(targets).toContain(created.json.target.name);
    const columns = ["-f", "value", "-c", "name,parent,target,node"];
    const listed = await bmi("disk", "ls", "demo", ...columns);
    expect(listed.stdout).toBe(`d1\tgolden\t${created.json.target.name}\t\n`);
    expect((await bmi("showdisks", "demo", ...columns)).stdout).toBe(listed.stdout);
    const shown = await bmi("disk", "show", "demo", "d1", "--json");
    expect(shown.json).toMatchObject({ name: "d1", parent: "golden", target: created.json.target });
    expect((await bmi("disk", "create", "demo", "golden", "d1")).code).toBe(EXIT.conflict);
    expect((await bmi("disk", "create", "demo", "nope", "d2")).code).toBe(EXIT.notFound);
    // A disk is never a clone source (spec §2.3).
    expect((await bmi("disk", "create", "demo", "d1", "d3")).code).toBe(EXIT.usage);
  });

  it("pro writes boot files after the HIL ownership check; is idempotent; refuses busy disks and foreign nodes", async () => {
    const pro = await bmi("pro", "demo", "node-01", "d1", "eth0", "--json");
    expect(pro.code).toBe(EXIT.ok);
    expect(pro.json).toMatchObject({ node: "node-01", disk: "d1", nic: "eth0", mac: lab.nodes[0]?.mac });
    const entry = await lab.drivers.boot.read("node-01");
    expect(entry?.target?.name).toBe(pro.json.target.name);
    expect((await bmi("provision", "demo", "node-01", "d1")).code).toBe(EXIT.ok);
    expect((await bmi("nodes", "demo", "-f", "value")).stdout).toMatch(/^node-01\tdemo\td1\teth0\t/m);
    const busy = await bmi("pro", "demo", "node-02", "d1", "--json");
    expect(busy.code).toBe(EXIT.conflict);
    expect(busy.json.error.code).toBe("busy");
    expect((await bmi("pro", "demo", "node-99", "d9", "--image", "golden")).code).toBe(EXIT.notFound);
    const node = lab.hil.state.nodes.get("node-04");
    if (node) node.project = null; // a free node: not the project's (SEC-2)
    const free = await bmi("pro", "demo", "node-04", "d4", "--image", "golden", "--json");
    expect(free.code).toBe(EXIT.auth);
    expect(free.json.error.code).toBe("forbidden");
    expect((await bmi("disk", "ls", "demo", "-f", "value")).stdout).not.toMatch(/^d4/m); // undone
    expect(await lab.drivers.boot.read("node-04")).toBeNull();
  });

  it("snap create refuses a disk that boots a node unless --force; snap ls / rm", async () => {
    // d1 boots node-01. With its OBM disabled in HIL nobody can say the node is off: refused.
    await hil().setObm("node-01", false);
    try {
      const refused = await bmi("snap", "create", "demo", "d1", "s1", "--json");
      expect(refused.code).toBe(EXIT.conflict);
      expect(refused.json.error.message).toMatch(/power state cannot be read.*pass force/);
    } finally {
      await hil().setObm("node-01", true);
    }
    const snap = await bmi("snap", "create", "demo", "d1", "s1", "--force", "--json");
    expect(snap.code).toBe(EXIT.ok);
    expect(await lab.drivers.storage.exists(snap.json.cephName)).toBe(true);
    expect((await bmi("snap", "ls", "demo", "-f", "value", "-c", "name,parent")).stdout).toBe("s1\tgolden\n");
    expect((await bmi("snap", "rm", "demo", "s1")).code).toBe(EXIT.ok);
    expect(await lab.drivers.storage.exists(snap.json.cephName)).toBe(false);
    expect((await bmi("snap", "ls", "demo")).stdout).toBe("no results\n");
  });

  it("dpro checks the NIC, removes boot files and (with --delete-disk) the disk", async () => {
    expect((await bmi("dpro", "demo", "node-01", "eth1")).code).toBe(EXIT.usage);
    const target = (await bmi("disk", "ls", "demo", "--json")).json[0].target.name;
    expect((await bmi("dpro", "demo", "node-01", "eth0", "--delete-disk")).code).toBe(EXIT.ok);
    expect(await lab.drivers.boot.read("node-01")).toBeNull();
    expect((await lab.drivers.export.list()).map((t) => t.target)).not.toContain(target);
    expect((await bmi("disk", "ls", "demo", "-f", "value")).stdout).toBe("");
    expect((await bmi("deprovision", "demo", "node-01")).code).toBe(EXIT.notFound);
  });

  it("provision-many reports one result per node (progress only at a terminal)", async () => {
    const file = join(lab.dir, "batch.txt");
    await writeFile(file, "# node disk nic\nnode-01 b1 eth0\nnode-02 b2\n");
    const ok = await bmi(
      "provision-many",
      "demo",
      file,
      "--image",
      "golden",
      "-f",
      "value",
      "-c",
      "node,ok,disk",
    );
    expect(ok.code).toBe(EXIT.ok);
    expect(ok.stdout).toBe("node-01\ttrue\tb1\nnode-02\ttrue\tb2\n");
    expect(ok.stderr).toBe(""); // progress only at a terminal

    await writeFile(
      file,
      JSON.stringify([
        { node: "node-03", disk: "b3" },
        { node: "node-04", disk: "b4" },
      ]),
    );
    const mixed = await bmi("provision-many", "demo", file, "--image", "golden", "--json");
    expect(mixed.code).toBe(EXIT.auth); // node-04 is free
    expect(mixed.json.map((r: { node: string; ok: boolean }) => [r.node, r.ok])).toEqual([
      ["node-03", true],
      ["node-04", false],
    ]);
    expect(mixed.json[1].error.code).toBe("forbidden");
    for (const node of ["node-01", "node-02", "node-03"]) {
      expect((await bmi("dpro", "demo", node, "--delete-disk")).code).toBe(EXIT.ok);
    }
    expect((await lab.leftovers()).bootFiles).toEqual([]);
  });

  it("power goes through HIL's redirect to the node's obmd; pro --power --wait on a node that does not boot times out naming the stage", async () => {
    await hil().setObm("node-01", false); // the lab enables every node's OBM; an owner can turn it off
    const disabled = await bmi("power", "on", "demo", "node-01", "--json");
    expect(disabled.code).toBe(EXIT.conflict); // OBM not enabled in HIL
    await hil().setObm("node-01", true);
    const machine = lab.hil.obmd.nodes.get("node-01");
    const on = await bmi("power", "on", "demo", "node-01", "--json");
    expect(on.code).toBe(EXIT.ok);
    expect(on.json).toEqual({ project: "demo", node: "node-01", power: "on" });
    expect(await machine?.state()).toBe("on");
    expect(
      (await bmi("power", "cycle", "demo", "node-01", "--force", "-f", "value", "-c", "power")).stdout,
    ).toBe("on\n");
    expect((await bmi("power", "status", "demo", "node-01", "-f", "value", "-c", "power")).stdout).toBe(
      "on\n",
    );
    expect((await bmi("power", "off", "demo", "node-01", "-f", "value", "-c", "power")).stdout).toBe("off\n");
    expect(await machine?.state()).toBe("off");
    const foreign = await bmi("power", "status", "demo", "node-04", "--json"); // free since the pro test
    expect(foreign.code).toBe(EXIT.auth);
    expect(foreign.json.error.code).toBe("forbidden");

    // The lab's BMC is a memory machine: it powers on, but nothing logs in to the target.
    const pro = await bmi(
      "pro",
      "demo",
      "node-01",
      "w1",
      "--image",
      "golden",
      "--power",
      "cycle",
      "--wait",
      "--timeout",
      "2s",
      "--json",
    );
    expect(pro.code).toBe(EXIT.serverFault);
    expect(pro.json.error).toMatchObject({ code: "timeout", subsystem: "power" });
    expect(pro.json.error.message).toMatch(/did not reach firmware_login: stopped after powered_on/);
    expect(pro.json.error.details.boot.stages.map((s: { stage: string }) => s.stage)).toEqual(["powered_on"]);
    expect(await machine?.state()).toBe("on");
    expect((await bmi("nodes", "demo", "-f", "value", "-c", "node,disk")).stdout).toBe("node-01\tw1\n");
    const dpro = await bmi("dpro", "demo", "node-01", "--power-off", "--delete-disk");
    expect(dpro.code, dpro.stderr).toBe(EXIT.ok);
    expect(await machine?.state()).toBe("off");
    await hil().setObm("node-01", false);
    expect((await lab.leftovers()).bootFiles).toEqual([]);
  });

  it("iscsi create / ls / rm mount an image as a target", async () => {
    const mounted = await bmi("iscsi", "create", "demo", "golden", "--json");
    expect(mounted.code).toBe(EXIT.ok);
    expect((await lab.drivers.export.list()).map((t) => t.target)).toContain(mounted.json.name);
    expect((await bmi("iscsi", "ls", "demo", "-f", "value")).stdout).toMatch(
      new RegExp(`^golden\\t${mounted.json.name}\\t`, "m"),
    );
    expect((await bmi("rm", "demo", "golden")).code).toBe(EXIT.conflict); // mounted
    expect((await bmi("iscsi", "rm", "demo", "golden")).code).toBe(EXIT.ok);
    expect((await lab.drivers.export.list()).map((t) => t.target)).not.toContain(mounted.json.name);
    expect((await bmi("iscsi", "rm", "demo", "golden")).code).toBe(EXIT.notFound);
  });

  it("db ls lists every row with the original's filters", async () => {
    expect((await bmi("disk", "create", "demo", "golden", "c1")).code).toBe(EXIT.ok);
    const all = await bmi("db", "ls", "--json");
    expect(all.json.map((r: { name: string }) => r.name).sort()).toEqual(["c1", "golden"]);
    const clones = await bmi("db", "ls", "-c", "--project", "demo", "-f", "value");
    expect(clones.stdout).toMatch(/^\d+\tc1\tdemo\t\S+img\d+\tfalse\tfalse\tgolden\n$/);
    expect((await bmi("db", "ls", "-s", "-f", "value")).stdout).toBe("");
    expect((await bmi("db", "ls", "--name", "golden", "--json")).json).toHaveLength(1);
    expect((await bmi("rm", "demo", "golden")).code).toBe(EXIT.conflict); // c1 is cloned from it
    expect((await bmi("disk", "delete", "demo", "c1")).code).toBe(EXIT.ok);
  });

  it("reconcile reports boot files it did not make as unknown, and removes them only when named", async () => {
    expect((await bmi("reconcile")).stdout).toBe("no drift\n");
    await lab.drivers.boot.write({
      node: "node-02",
      macs: [lab.nodes[1]?.mac ?? ""],
      target: { name: "iqn.2026-11.org.bmi:stray", portal: "127.0.0.1", port: 3260, lun: 1 },
      firmware: "bios",
      label: "stray",
    });
    const found = await bmi("reconcile", "--json");
    expect(found.code).toBe(EXIT.conflict);
    expect(found.json.drift).toEqual([expect.objectContaining({ kind: "unknown", subject: "node-02" })]);
    const unnamed = await bmi("reconcile", "--repair");
    expect(unnamed.code).toBe(EXIT.conflict);
    expect(await lab.drivers.boot.read("node-02")).not.toBeNull();
    const repaired = await bmi("reconcile", "--repair", "--remove", "node-02");
    expect(repaired.code).toBe(EXIT.ok);
    expect(repaired.stdout).toMatch(/^repaired\tunknown\tnode-02/m);
    expect(await lab.drivers.boot.read("node-02")).toBeNull();
  });

  it("config prints the configuration with secrets redacted", async () => {
    const shown = await bmi("config", "--json");
    expect(shown.code).toBe(EXIT.ok);
    expect(shown.json.net_isolator.password).toBe("[REDACTED]");
    expect(shown.stdout).not.toContain(lab.hilUser.password);
  });

  it("doctor says OK for the lab and what is wrong (and how to fix it) for a broken config", async () => {
    const good = await bmi("doctor", "--json");
    expect(good.code).toBe(EXIT.ok);
    expect(good.json.checks.map((c: { name: string; ok: boolean }) => [c.name, c.ok])).toEqual([
      ["config", true],
      ["database", true],
      ["ceph", true],
      ["tgtd", true],
      ["tftp", true],
      ["hil", true],
    ]);

    const emptyRoot = join(lab.dir, "empty-tftp");
    await mkdir(join(emptyRoot, "pxelinux.cfg"), { recursive: true });
    const brokenPath = join(lab.dir, "broken.cfg");
    const text = (await readFile(lab.configPath, "utf8"))
      .replace(/^tgt_control_port = .*$/m, `tgt_control_port = ${unusedTgtControlPort()}`)
      .replace(/^url = .*$/m, "url = http://127.0.0.1:9")
      .replace(/^ipxe_path = .*$/m, `ipxe_path = ${emptyRoot}/`)
      .replace(/^pxelinux_path = .*$/m, `pxelinux_path = ${emptyRoot}/pxelinux.cfg/`);
    await writeFile(brokenPath, text);
    const out = textSink();
    const code = await run(["--config", brokenPath, "doctor"], {
      stdout: out.stream,
      stderr: textSink().stream,
      env: {},
    });
    expect(code).toBe(EXIT.serverFault);
    const lines = out.text();
    expect(lines).toMatch(/^OK {3}ceph/m);
    expect(lines).toMatch(/^FAIL tgtd/m);
    expect(lines).toMatch(/^FAIL tftp .*lacks pxelinux\.0/m);
    expect(lines).toMatch(/^FAIL hil .*cannot reach/m);
    expect(lines).toMatch(/fix: start tgtd/);
    expect(lines).not.toContain(lab.hilUser.password);

    const missing = await run(["--config", join(lab.dir, "nope.cfg"), "doctor"], {
      stdout: out.stream,
      stderr: textSink().stream,
      env: {},
    });
    expect(missing).toBe(EXIT.serverFault);
    expect(out.text()).toMatch(/FAIL config .*no such file/);
  });

  it("BMI_CONFIG is honoured when --config is absent", async () => {
    const out = textSink();
    const code = await run(["ls", "demo", "-f", "value", "-c", "name"], {
      stdout: out.stream,
      stderr: textSink().stream,
      env: { BMI_CONFIG: lab.configPath },
    });
    expect(code).toBe(EXIT.ok);
    expect(out.text()).toBe("golden\n");
  });

  it("the bmi binary runs as a process with the same output and exit codes", async () => {
    const bin = fileURLToPath(new URL("../../packages/cli/src/bin.ts", import.meta.url));
    const env = { BMI_CONFIG: lab.configPath };
    const ok = await execa("node", ["--import", "tsx", bin, "ls", "demo", "--json"], { env, reject: false });
    expect(ok.exitCode).toBe(EXIT.ok);
    expect(JSON.parse(ok.stdout).map((i: { name: string }) => i.name)).toEqual(["golden"]);
    const missing = await execa("node", ["--import", "tsx", bin, "disk", "delete", "demo", "nope"], {
      env,
      reject: false,
    });
    expect(missing.exitCode).toBe(EXIT.notFound);
    expect(missing.stderr).toMatch(/^bmi: error: disk nope not found in project demo \(not_found\)$/m);
  });

  it("rm removes the golden image once nothing uses it, leaving nothing behind", async () => {
    expect((await bmi("rm", "demo", "golden")).code).toBe(EXIT.ok);
    expect(await lab.leftovers()).toEqual({ images: [], targets: [], bootFiles: [] });
    expect((await bmi("reconcile")).code).toBe(EXIT.ok);
  });
});
