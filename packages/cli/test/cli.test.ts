import { BmiError, type ErrorCode } from "@bmi/core";
import { textSink } from "@bmi/core/testing";
import { describe, expect, it } from "vitest";
import { basicCredentials, EXIT, exitCodeFor, httpStatusFor, ROUTES, run } from "../src/index.js";

async function bmi(...argv: string[]) {
  const out = textSink();
  const err = textSink();
  const code = await run(argv, { stdout: out.stream, stderr: err.stream, env: {} });
  return { code, stdout: out.text(), stderr: err.text() };
}

describe("exit codes and HTTP statuses", () => {
  const cases: [ErrorCode, number, number][] = [
    ["invalid_input", EXIT.usage, 400],
    ["unsupported", EXIT.usage, 400],
    ["not_found", EXIT.notFound, 404],
    ["already_exists", EXIT.conflict, 409],
    ["conflict", EXIT.conflict, 409],
    ["busy", EXIT.conflict, 409],
    ["unauthenticated", EXIT.auth, 401],
    ["forbidden", EXIT.auth, 403],
    ["permission_denied", EXIT.serverFault, 500],
    ["unavailable", EXIT.serverFault, 503],
    ["timeout", EXIT.serverFault, 504],
    ["internal", EXIT.serverFault, 500],
  ];
  it.each(cases)("%s → exit %i, HTTP %i", (code, exit, status) => {
    const error = new BmiError(code, "x");
    expect(exitCodeFor(error)).toBe(exit);
    expect(httpStatusFor(error)).toBe(status);
  });
  it("anything that is not a BmiError is a server fault", () => {
    expect(exitCodeFor(new TypeError("boom"))).toBe(EXIT.serverFault);
  });
});

describe("HTTP Basic credentials", () => {
  const header = (s: string) => `Basic ${Buffer.from(s).toString("base64")}`;
  it("splits at the first colon only", () => {
    expect(basicCredentials(header("alice:pa:ss"))).toEqual({ username: "alice", password: "pa:ss" });
    expect(basicCredentials(header("alice:"))).toEqual({ username: "alice", password: "" });
  });
  it("refuses a missing header, another scheme, and a value without user or colon", () => {
    for (const bad of [undefined, "Bearer abc", header("alice"), header(":pw"), "Basic !!!"]) {
      expect(() => basicCredentials(bad)).toThrow(/Authentication|Basic/);
    }
  });
});

describe("routes", () => {
  it("are the original picasso routes with their methods and fields", () => {
    expect(ROUTES.map((r) => `${r.method} ${r.path} ${r.fields.join(",")}`)).toEqual([
      "POST /list_images/ ",
      "PUT /provision/ node,disk_name,nic",
      "DELETE /deprovision/ node,nic",
      "PUT /create_snapshot/ disk_name,snap_name",
      "POST /list_snapshots/ ",
      "DELETE /remove_image/ img",
      "PUT /create_disk disk_name,img",
      "DELETE /delete_disk disk_name",
    ]);
  });
});

describe("run() without a deployment", () => {
  it("prints help with examples and the exit-code table", async () => {
    const r = await bmi("--help");
    expect(r.code).toBe(EXIT.ok);
    expect(r.stdout).toMatch(/Examples:[\s\S]*Exit codes: 0 ok, 1 server fault, 2 usage/);
  });
  it("usage errors exit 2 and name the problem", async () => {
    const r = await bmi("snap", "create", "p");
    expect(r.code).toBe(EXIT.usage);
    expect(r.stderr).toMatch(/missing required argument 'disk'/);
    expect((await bmi("nope")).code).toBe(EXIT.usage);
  });
  it("a missing config file is a client error with a clear message, in both output forms", async () => {
    const human = await bmi("--config", "/nonexistent/bmi.cfg", "ls", "p");
    expect(human.code).toBe(EXIT.usage);
    expect(human.stderr).toBe(
      "bmi: error: cannot load config file /nonexistent/bmi.cfg: no such file (invalid_input)\n",
    );
    const json = await bmi("--config", "/nonexistent/bmi.cfg", "ls", "p", "--json");
    expect(JSON.parse(json.stdout)).toMatchObject({ error: { code: "invalid_input", subsystem: "config" } });
  });
});

describe("bmi config (issue 19 point 6)", () => {
  const sample = (name: string) => new URL(`../../../docs/samples/${name}`, import.meta.url).pathname;
  it("prints the effective values with secrets redacted, and which of the original's old names it mapped", async () => {
    const template = await bmi("--config", sample("bmi_config.cfg"), "config", "--json");
    expect(template.code).toBe(EXIT.ok);
    const shown = JSON.parse(template.stdout);
    expect(shown.net_isolator.password).toBe("[REDACTED]");
    expect(template.stdout).not.toContain("hil-secret-9");
    expect(shown.mapped).toEqual([]);

    const readme = await bmi("--config", sample("bmi_config.readme.cfg"), "config");
    expect(readme.code).toBe(EXIT.ok);
    expect(readme.stdout).toContain('"path": "/home/user/bmi.db"');
    expect(readme.stdout).toMatch(/^# \[db\] url read as \[db\] path$/m);
    expect(readme.stdout).toMatch(/^# \[haas\] read as \[net_isolator\]$/m);
    expect(readme.stderr).toMatch(/warning: \[rpc\] is obsolete/);
    expect(readme.stdout + readme.stderr).not.toContain("not-needed-sudo-password");
  });
});
