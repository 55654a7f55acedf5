import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  BmiError,
  DEFAULT_CONFIG_PATH,
  loadConfig,
  redactedConfig,
  settingsFromConfig,
  targetNameFor,
} from "../src/index.js";

const SAMPLE_PATH = new URL("../../../docs/samples/bmi_config.cfg", import.meta.url).pathname;
const README_SAMPLE_PATH = new URL("../../../docs/samples/bmi_config.readme.cfg", import.meta.url).pathname;
const SAMPLE = readFileSync(SAMPLE_PATH, "utf8");
const SUDO_PASSWORD = "sudo-secret-7";
const HIL_PASSWORD = "hil-secret-9";

const temp = mkdtempSync(join(tmpdir(), "bmi-config-test-"));
afterAll(() => rmSync(temp, { recursive: true, force: true }));

/** The sample with one `key = value` line of `section` replaced (or added when missing). */
function withValue(section: string, key: string, value: string | null, text = SAMPLE): string {
  const lines = text.split("\n");
  const start = lines.indexOf(`[${section}]`);
  if (start < 0) throw new Error(`no [${section}] in the sample`);
  let end = lines.findIndex((l, i) => i > start && l.startsWith("["));
  if (end < 0) end = lines.length;
  const at = lines.findIndex((l, i) => i > start && i < end && l.startsWith(`${key} =`));
  if (at >= 0) {
    if (value === null) lines.splice(at, 1);
    else lines[at] = `${key} = ${value}`;
  } else if (value !== null) lines.splice(start + 1, 0, `${key} = ${value}`);
  return lines.join("\n");
}

function withoutSection(section: string, text = SAMPLE): string {
  const lines = text.split("\n");
  const start = lines.indexOf(`[${section}]`);
  let end = lines.findIndex((l, i) => i > start && l.startsWith("["));
  if (end < 0) end = lines.length;
  lines.splice(start, end - start);
  return lines.join("\n");
}

/** Loads config text, expecting a config error; returns it. */
function configError(text: string): BmiError {
  try {
    loadConfig({ text, baseDir: temp });
  } catch (error) {
    expect(error).toBeInstanceOf(BmiError);
    const e = error as BmiError;
    expect(e.code).toBe("invalid_input");
    expect(e.subsystem).toBe("config");
    expect(e.fault).toBe("client");
    return e;
  }
  throw new Error("the config loaded, but an error was expected");
}

describe("loadConfig: the sample bmi_config.cfg", () => {
  const { config, warnings } = loadConfig({ path: SAMPLE_PATH });

  it("reads every section of the original, with types", () => {
    expect(config.file).toBe(SAMPLE_PATH);
    expect(config.bmi).toEqual({
      uid: "1",
      snapshot: "bmi_created_snapshot",
      admin_project: "bmi_infra",
      concurrency: 8,
      lock_lease_ms: 600_000,
    });
    expect(config.db.path).toBe("/var/lib/bmi/bmi.db");
    expect(config.fs).toEqual({
      id: "admin",
      pool: "rbd",
      conf_file: "/etc/ceph/ceph.conf",
      keyring: "/etc/ceph/ceph.client.admin.keyring",
      timeout_ms: 60_000,
      client: "librbd",
    });
    expect(config.iscsi).toMatchObject({ ip: "127.0.0.1", port: 3260, lun: 1, initiators: "ALL" });
    expect(config.net_isolator).toMatchObject({
      url: "http://127.0.0.1:7000",
      username: "bmi",
      provisioning_network: "bmi_provision",
      channel: "vlan/native",
      action_timeout_ms: 60_000,
    });
    // %(tftp_root)s comes from [DEFAULT], as in Python's ConfigParser.
    expect(config.tftp).toMatchObject({
      ipxe_path: "/var/lib/tftpboot/",
      pxelinux_path: "/var/lib/tftpboot/pxelinux.cfg/",
      boot_nic: "net2",
      firmware: "bios",
      ipxe_kernel: "ipxe.lkrn",
      menu_timeout: 30,
    });
    expect(config.rest_api).toEqual({ ip: "127.0.0.1", port: 8000, tls_cert: null, tls_key: null });
    expect(config.logs).toEqual({ path: "/var/log/bmi/", debug: true, verbose: false });
    expect(config.driver).toEqual({ fs: "ceph", iscsi: "tgt", net_isolator: "hil", boot: "pxe" });
  });

  it("warns about each obsolete key and section, and about nothing else", () => {
    expect(warnings).toHaveLength(5);
    expect(warnings).toEqual(
      expect.arrayContaining([
        expect.stringContaining("[rpc] is obsolete"),
        expect.stringContaining("[tests] is obsolete"),
        expect.stringContaining("[bmi] service is obsolete"),
        expect.stringContaining("[iscsi] password is obsolete"),
        expect.stringContaining("[driver] is obsolete"),
      ]),
    );
  });

  it("never keeps the sudo password, nor puts a secret in a warning", () => {
    expect(JSON.stringify(config)).not.toContain(SUDO_PASSWORD);
    expect(warnings.join("\n")).not.toContain(SUDO_PASSWORD);
    expect(warnings.join("\n")).not.toContain(HIL_PASSWORD);
  });

  it("gives the operations their settings", () => {
    const settings = settingsFromConfig(config);
    expect(settings).toMatchObject({
      uid: "1",
      snapshotName: "bmi_created_snapshot",
      iscsi: { portal: "127.0.0.1", port: 3260, lun: 1, access: { initiators: "ALL" } },
      provisioningNetwork: "bmi_provision",
      provisioningChannel: "vlan/native",
      defaultFirmware: "bios",
      adminProject: "bmi_infra",
      concurrency: 8,
      lockLeaseMs: 600_000,
    });
    expect(targetNameFor("1img7", settings.iscsi.naming)).toBe("iqn.2026-11.org.bmi:1img7");
  });

  it("prints without secrets through redactedConfig", () => {
    const chap = loadConfig({
      text: withValue("iscsi", "chap_secret", "chap-secret-123", withValue("iscsi", "chap_user", "bmi")),
    }).config;
    expect(chap.iscsi.chap_secret).toBe("chap-secret-123");
    const printed = JSON.stringify(redactedConfig(chap));
    expect(printed).not.toContain(HIL_PASSWORD);
    expect(printed).not.toContain("chap-secret-123");
    expect(printed).toContain('"password":"[REDACTED]"');
    expect(chap.net_isolator.password).toBe(HIL_PASSWORD); // the original is untouched
    expect(settingsFromConfig(chap).iscsi.access.chap).toEqual({ user: "bmi", secret: "chap-secret-123" });
  });
});

describe("loadConfig: where the file comes from", () => {
  it("uses $BMI_CONFIG when no path is given", () => {
    expect(loadConfig({ env: { BMI_CONFIG: SAMPLE_PATH } }).config.file).toBe(SAMPLE_PATH);
  });

  it("names the path it could not load, defaulting to /etc/bmi/bmiconfig.cfg", () => {
    const missing = join(temp, "nope.cfg");
    expect(() => loadConfig({ path: missing })).toThrow(`cannot load config file ${missing}: no such file`);
    expect(() => loadConfig({ env: {} })).toThrow(`cannot load config file ${DEFAULT_CONFIG_PATH}`);
    expect(() => loadConfig({ env: { BMI_CONFIG: "" } })).toThrow(
      `cannot load config file ${DEFAULT_CONFIG_PATH}`,
    );
    try {
      loadConfig({ path: missing });
    } catch (error) {
      expect((error as BmiError).subsystem).toBe("config");
      expect((error as BmiError).details.file).toBe(missing);
    }
  });

  it("resolves relative paths against the config file's directory and adds the trailing '/'", () => {
    const dir = mkdtempSync(join(temp, "site-"));
    const file = join(dir, "bmi_config.cfg");
    let text = withValue("db", "path", "state/bmi.db");
    text = withValue("tftp", "ipxe_path", "tftp", text);
    text = withValue("tftp", "pxelinux_path", "tftp/pxelinux.cfg", text);
    text = withValue("fs", "conf_file", "./ceph/../ceph.conf", text);
    writeFileSync(file, text);
    const { config } = loadConfig({ path: file });
    expect(config.db.path).toBe(join(dir, "state/bmi.db"));
    expect(config.tftp.ipxe_path).toBe(`${join(dir, "tftp")}/`);
    expect(config.tftp.pxelinux_path).toBe(`${join(dir, "tftp/pxelinux.cfg")}/`);
    expect(config.fs.conf_file).toBe(join(dir, "ceph.conf"));
  });
});

describe("loadConfig: Python SafeConfigParser compatibility", () => {
  it("reads 'key: value', upper-case keys, inline ' ;' comments and a '#' inside a value", () => {
    let text = SAMPLE.replace("uid = 1", "UID: 42 ; the deployment id");
    text = withValue("net_isolator", "password", "p#ss;word", text);
    const { config } = loadConfig({ text });
    expect(config.bmi.uid).toBe("42");
    expect(config.net_isolator.password).toBe("p#ss;word");
  });

  it("interpolates %(name)s within the section, '%%' as a literal '%', nested references", () => {
    let text = withValue("net_isolator", "host", "127.0.0.1");
    text = withValue("net_isolator", "base", "http://%(host)s", text);
    text = withValue("net_isolator", "url", "%(base)s:7000/", text);
    text = withValue("net_isolator", "password", "100%%sure", text);
    const { config, warnings } = loadConfig({ text });
    expect(config.net_isolator.url).toBe("http://127.0.0.1:7000/");
    expect(config.net_isolator.password).toBe("100%sure");
    // helper keys are unknown to BMI, so they are reported (Python ignored them silently)
    expect(warnings).toContain("unknown key [net_isolator] host ignored");
  });

  it("accepts bools as true/false in any case only", () => {
    expect(
      loadConfig({ text: withValue("iscsi", "bare_target_names", "TRUE") }).config.iscsi.bare_target_names,
    ).toBe(true);
    const e = configError(withValue("iscsi", "bare_target_names", "yes"));
    expect(e.message).toBe("invalid [iscsi] bare_target_names: must be true or false (any case)");
  });

  it("accepts the old section names [ceph], [haas] and [http] with a warning", () => {
    let text = SAMPLE.replace("[fs]", "[ceph]")
      .replace("[net_isolator]", "[haas]")
      .replace("[rest_api]", "[http]");
    text = withValue("http", "ip", null, text);
    text = withValue("http", "bind_ip", "127.0.0.2", text);
    const { config, warnings } = loadConfig({ text });
    expect(config.fs.pool).toBe("rbd");
    expect(config.net_isolator.url).toBe("http://127.0.0.1:7000");
    expect(config.rest_api).toEqual({ ip: "127.0.0.2", port: 8000, tls_cert: null, tls_key: null });
    expect(warnings).toContain(
      "old names read as new ones: [ceph] read as [fs]; [haas] read as [net_isolator]; [http] read as [rest_api]; [http] bind_ip read as [rest_api] ip",
    );
    // Both names at once: the same value is fine, a different one names both places.
    expect(loadConfig({ text: `${SAMPLE}\n[ceph]\npool = rbd\n` }).config.fs.pool).toBe("rbd");
    expect(configError(`${SAMPLE}\n[ceph]\npool = other\n`).message).toBe(
      "[fs] pool and [ceph] pool are the same setting with different values; keep one",
    );
  });

  it("defaults every key the original hard-coded to the original's value", () => {
    let text = SAMPLE;
    for (const key of [
      "port",
      "lun",
      "conf_dir",
      "initiators",
      "iqn_prefix",
      "bare_target_names",
      "tgt_control_port",
    ]) {
      text = withValue("iscsi", key, null, text);
    }
    for (const key of ["boot_nic", "firmware", "ipxe_kernel", "menu_timeout"])
      text = withValue("tftp", key, null, text);
    for (const key of ["admin_project", "concurrency", "lock_lease_ms"])
      text = withValue("bmi", key, null, text);
    text = withValue("net_isolator", "channel", null, text);
    text = withValue("net_isolator", "timeout_ms", null, text);
    text = withoutSection("rest_api", withoutSection("logs", text));
    const { config, warnings } = loadConfig({ text });
    expect(config.iscsi).toMatchObject({
      port: 3260,
      lun: 1,
      conf_dir: "/etc/tgt/conf.d/",
      initiators: "ALL",
    });
    // boot_nic is the one deliberate change: `any` (DHCP on every NIC) instead of the original's net2.
    expect(config.tftp).toMatchObject({ boot_nic: "any", ipxe_kernel: "ipxe.lkrn", menu_timeout: 30 });
    expect(config.tftp.dnsmasq_leases).toBe("/var/lib/misc/dnsmasq.leases");
    expect(config.net_isolator).toMatchObject({
      channel: "vlan/native",
      timeout_ms: 10_000,
      action_timeout_ms: 60_000,
    });
    expect(config.bmi.admin_project).toBe("bmi_infra");
    expect(config.rest_api).toBeNull();
    expect(config.logs).toEqual({ path: null, debug: false, verbose: false });
    // Opening every target to every initiator silently is what SEC-6 forbids: it is warned about.
    expect(warnings.some((w) => w.startsWith("[iscsi] initiators is not set"))).toBe(true);
  });

  it("reads an initiator list into addresses and names", () => {
    const { config } = loadConfig({
      text: withValue("iscsi", "initiators", "10.0.0.5, 10.1.0.0/16, iqn.1993-08.org.debian:01:node7"),
    });
    expect(config.iscsi.initiators).toEqual({
      addresses: ["10.0.0.5", "10.1.0.0/16"],
      names: ["iqn.1993-08.org.debian:01:node7"],
    });
    expect(settingsFromConfig(config).iscsi.access.initiators).toEqual(config.iscsi.initiators);
  });
});

describe("loadConfig: broken configs name the section and key", () => {
  it.each([
    ["a missing section", withoutSection("db"), /^missing \[db\] section in the config text$/],
    [
      "a missing required key",
      withValue("bmi", "uid", null),
      /^missing \[bmi\] uid in the config text \(required\)$/,
    ],
    ["a missing [net_isolator] url", withValue("net_isolator", "url", null), /^missing \[net_isolator\] url/],
    ["a bad bool", withValue("logs", "debug", "1"), /^invalid \[logs\] debug: must be true or false/],
    [
      "a non-integer port",
      withValue("iscsi", "port", "32x60"),
      /^invalid \[iscsi\] port: must be an integer/,
    ],
    [
      "an out-of-range port",
      withValue("rest_api", "port", "70000"),
      /^invalid \[rest_api\] port: must be at most 65535/,
    ],
    [
      "a TLS certificate without its key",
      withValue("rest_api", "tls_cert", "/etc/bmi/rest.pem"),
      /^missing \[rest_api\] tls_key: tls_cert and tls_key go together/,
    ],
    [
      "a TLS key without its certificate",
      withValue("rest_api", "tls_key", "/etc/bmi/rest.key"),
      /^missing \[rest_api\] tls_cert: tls_cert and tls_key go together/,
    ],
    [
      "a LUN 0 (tgt's controller)",
      withValue("iscsi", "lun", "0"),
      /^invalid \[iscsi\] lun: must be at least 1/,
    ],
    [
      "a stray %",
      withValue("bmi", "snapshot", "bmi%snap"),
      /^invalid \[bmi\] snapshot: a '%' must be followed by/,
    ],
    [
      "a reference to a missing option",
      withValue("fs", "pool", "%(nope)s"),
      /^invalid \[fs\] pool: refers to %\(nope\)s, which is not an option/,
    ],
    [
      "a reference loop",
      withValue("fs", "pool", "%(id)s", withValue("fs", "id", "%(pool)s")),
      /^invalid \[fs\] (id|pool): %\(name\)s references nest deeper than 10/,
    ],
    [
      "an unknown driver",
      withValue("driver", "iscsi", "iet"),
      /^invalid \[driver\] iscsi: not a driver this BMI has; it supports only tgt/,
    ],
    [
      "a bad firmware",
      withValue("tftp", "firmware", "efi"),
      /^invalid \[tftp\] firmware: must be bios or uefi/,
    ],
    [
      "a non-http HIL URL",
      withValue("net_isolator", "url", "ftp://hil"),
      /^invalid \[net_isolator\] url: must be an http/,
    ],
    ["a CHAP user without secret", withValue("iscsi", "chap_user", "bmi"), /^missing \[iscsi\] chap_secret/],
    [
      "a bad initiator",
      withValue("iscsi", "initiators", "node7;rm"),
      /^invalid \[iscsi\] initiators: each entry/,
    ],
  ])("%s", (_what, text, message) => {
    const e = configError(text);
    expect(e.message).toMatch(message);
    expect(e.details.section).toBeTypeOf("string");
  });

  it.each([
    ["a path in uid", "bmi", "uid", "../1", /^invalid \[bmi\] uid: uid may only contain/],
    ["img in uid", "bmi", "uid", "1img", /^invalid \[bmi\] uid: uid must not contain 'img'/],
    ["a path in the snapshot name", "bmi", "snapshot", "../../snap", /^invalid \[bmi\] snapshot: /],
    ["a path in the pool", "fs", "pool", "../rbd", /^invalid \[fs\] pool: pool name may only contain/],
    [
      "a path in the iPXE kernel",
      "tftp",
      "ipxe_kernel",
      "../../etc/passwd",
      /^invalid \[tftp\] ipxe_kernel: /,
    ],
    ["a shell string in the boot NIC", "tftp", "boot_nic", "net2; reboot", /^invalid \[tftp\] boot_nic: /],
    [
      "a newline in the boot NIC",
      "tftp",
      "boot_nic",
      '"net2\\nsanboot evil"',
      /^invalid \[tftp\] boot_nic: must not contain a newline/,
    ],
    [
      "a newline in the portal",
      "iscsi",
      "ip",
      '"10.0.0.1\\n#!ipxe"',
      /^invalid \[iscsi\] ip: must not contain a newline/,
    ],
    ["a space in the portal", "iscsi", "ip", "10.0.0.1 evil", /^invalid \[iscsi\] ip: host must be/],
    [
      "a bad IQN prefix",
      "iscsi",
      "iqn_prefix",
      "iqn.2026-11.org.bmi:../x",
      /^invalid \[iscsi\] iqn_prefix: /,
    ],
    ["a slash in the admin project", "bmi", "admin_project", "a/b", /^invalid \[bmi\] admin_project: /],
    [
      "a NUL in a path",
      "db",
      "path",
      '"/var/lib/bmi\\u0000.db"',
      /^invalid \[db\] path: must not contain a newline/,
    ],
  ])("rejects a hostile value: %s", (_what, section, key, value, message) => {
    expect(configError(withValue(section, key, value)).message).toMatch(message);
  });

  it("rejects a continuation line, which would put a newline into a value", () => {
    const text = SAMPLE.replace("pool = rbd", "pool = rbd\n  sanboot iscsi:evil");
    expect(configError(text).message).toMatch(/^invalid \[fs\] pool: line \d+ of config text is indented/);
  });

  it("rejects an option before any section and a line that is not an option", () => {
    expect(configError(`uid = 1\n${SAMPLE}`).message).toMatch(/option 'uid' comes before any \[section\]/);
    expect(configError(`${SAMPLE}\n[bmi]\njust words\n`).message).toMatch(
      /is not a \[section\], a 'key = value'/,
    );
  });

  it("never shows a secret in an error, even one reached through interpolation", () => {
    const hostile = [
      withValue("iscsi", "port", "%(password)s"),
      withValue("net_isolator", "url", "ftp://bmi:hil-secret-9@hil"),
      withValue("net_isolator", "url", "%(password)s"),
      withValue("net_isolator", "password", "%(nope)s"),
      withValue("net_isolator", "password", "50%"),
      withValue("driver", "fs", "%(password)s", withValue("driver", "password", SUDO_PASSWORD)),
    ];
    for (const text of hostile) {
      const e = configError(text);
      expect(e.message).not.toContain(SUDO_PASSWORD);
      expect(e.message).not.toContain(HIL_PASSWORD);
      expect(e.message).not.toContain("50%");
      expect(JSON.stringify(e.toJSON())).not.toContain(HIL_PASSWORD);
    }
  });

  it("ignores a stray % in the obsolete sudo password, which is never read", () => {
    const { config, warnings } = loadConfig({ text: withValue("iscsi", "password", "50%off") });
    expect(config.iscsi.ip).toBe("127.0.0.1");
    expect(warnings.join("\n")).not.toContain("50%off");
  });

  it("accepts the original's module paths and placeholders in [driver], and no other driver", () => {
    let text = withValue("driver", "iscsi", "ims.einstein.iscsi.tgt");
    text = withValue("driver", "fs", "<driver to load>", text);
    text = withValue("driver", "net_isolator", "<default>", text);
    expect(loadConfig({ text }).config.driver).toEqual({
      fs: "ceph",
      iscsi: "tgt",
      net_isolator: "hil",
      boot: "pxe",
    });
    expect(configError(withValue("driver", "net_isolator", "openstack")).message).toMatch(
      /^invalid \[driver\] net_isolator: not a driver this BMI has; it supports only hil/,
    );
  });

  it("reports unknown sections and keys as warnings (the original ignored them)", () => {
    const { warnings } = loadConfig({ text: `${withValue("iscsi", "colour", "blue")}\n[extras]\nx = 1\n` });
    expect(warnings).toContain("unknown key [iscsi] colour ignored");
    expect(warnings).toContain("unknown section [extras] ignored");
  });
});

describe("loadConfig: both layouts of the original (issue 19 point 6)", () => {
  const README_SAMPLE = readFileSync(README_SAMPLE_PATH, "utf8");

  it("loads the original README's older layout with the same meaning as the newer names", () => {
    const { config, warnings, mapped } = loadConfig({ text: README_SAMPLE, baseDir: temp });
    expect(config.bmi).toMatchObject({ uid: "5", snapshot: "bmi_created_snapshot" });
    expect(config.db.path).toBe("/home/user/bmi.db");
    expect(config.fs).toMatchObject({
      id: "bmi",
      pool: "bmi",
      conf_file: "/etc/ceph/ceph.conf",
      keyring: "/etc/ceph/bmi.key",
    });
    expect(config.net_isolator.url).toBe("http://localhost:3241/");
    expect(config.iscsi.ip).toBe("10.0.0.5");
    expect(config.tftp).toMatchObject({
      pxelinux_path: "/var/lib/tftpboot/pxelinux.cfg/",
      ipxe_path: "/var/lib/tftpboot/",
    });
    expect(config.rest_api).toEqual({ ip: "127.0.0.1", port: 8000, tls_cert: null, tls_key: null });
    expect(config.logs).toEqual({ path: "/home/bmi/logs/", debug: false, verbose: false });
    expect(mapped).toEqual([
      "[ceph] read as [fs]",
      "[haas] read as [net_isolator]",
      "[http] read as [rest_api]",
      "[db] url read as [db] path",
      "[tftp] pxelinux_url read as [tftp] pxelinux_path",
      "[tftp] ipxe_url read as [tftp] ipxe_path",
      "[http] bind_ip read as [rest_api] ip",
      "[http] bind_port read as [rest_api] port",
      "[logs] url read as [logs] path",
    ]);
    // Obsolete settings are accepted with a warning each, and the sudo password is never shown.
    for (const obsolete of ["[filesystem] is obsolete", "[rpc] is obsolete", "[bmi] service is obsolete"]) {
      expect(warnings.some((w) => w.startsWith(obsolete))).toBe(true);
    }
    expect(warnings.some((w) => w.startsWith("[iscsi] password is obsolete"))).toBe(true);
    expect(JSON.stringify({ config, warnings })).not.toContain("not-needed-sudo-password");
  });

  it("loads the newer template, and both name sets in any mix", () => {
    const template = loadConfig({ text: SAMPLE }).config;
    let mixed = SAMPLE.replace("[fs]", "[ceph]").replace("[net_isolator]", "[haas]");
    mixed = withValue("db", "path", null, mixed);
    mixed = withValue("db", "url", "/var/lib/bmi/bmi.db", mixed);
    mixed = withValue("tftp", "ipxe_path", null, mixed);
    mixed = withValue("tftp", "ipxe_url", "%(tftp_root)s/", mixed);
    const { config } = loadConfig({ text: mixed });
    expect({ ...config, file: null }).toEqual({ ...template, file: null });
  });

  it("a setting given both ways with different values is an error naming both; the same value is fine", () => {
    const same = withValue("db", "url", "/var/lib/bmi/bmi.db");
    expect(loadConfig({ text: same }).config.db.path).toBe("/var/lib/bmi/bmi.db");
    expect(configError(withValue("db", "url", "/tmp/other.db")).message).toBe(
      "[db] url and [db] path are the same setting with different values; keep one",
    );
    const error = configError(withValue("tftp", "pxelinux_url", "/srv/secret-path/"));
    expect(error.message).toBe(
      "[tftp] pxelinux_url and [tftp] pxelinux_path are the same setting with different values; keep one",
    );
  });

  it("defaults a missing [bmi] snapshot to the original's bmi_created_snapshot", () => {
    expect(loadConfig({ text: withValue("bmi", "snapshot", null) }).config.bmi.snapshot).toBe(
      "bmi_created_snapshot",
    );
  });

  it("drops [net_isolator] api_version with a warning (HIL has only /v0) and reads action_timeout_ms", () => {
    const { config, warnings } = loadConfig({ text: withValue("net_isolator", "api_version", "v1") });
    expect(warnings).toContain(
      "[net_isolator] api_version is obsolete and ignored: HIL has one API version, /v0, which the client always uses",
    );
    expect(config.net_isolator.action_timeout_ms).toBe(60_000);
    const short = withValue("net_isolator", "action_timeout_ms", "5000");
    expect(loadConfig({ text: short }).config.net_isolator.action_timeout_ms).toBe(5_000);
  });
});

describe("loadConfig: errors quote the key and the rule, never a value (issue 22 point 10)", () => {
  it("a password typed into username, a Ceph key pasted into [fs] id, a secret in a number", () => {
    const cephKey = "AQBvaBFZAAAAABAAq1JbUQpNfqV4ELoV0hXPNw==";
    const cases: [string, string, string, RegExp][] = [
      [
        "net_isolator",
        "username",
        "bmi:hunter2-pass",
        /^invalid \[net_isolator\] username: must not contain ':'/,
      ],
      ["fs", "id", cephKey, /^invalid \[fs\] id: a Ceph client id may only contain/],
      ["iscsi", "port", "s3cr3t-value", /^invalid \[iscsi\] port: must be an integer$/],
      ["tftp", "boot_nic", "p@ssw0rd", /^invalid \[tftp\] boot_nic: must be any, or an iPXE interface name/],
      ["driver", "fs", "top-secret-driver", /^invalid \[driver\] fs: not a driver this BMI has/],
    ];
    for (const [section, key, value, rule] of cases) {
      const error = configError(withValue(section, key, value));
      expect(error.message).toMatch(rule);
      const everything = JSON.stringify({ message: error.message, json: error.toJSON() });
      for (const piece of [value, "hunter2", "AQBvaBFZ"]) expect(everything).not.toContain(piece);
    }
  });
});

describe("loadConfig: repeated sections and keys are warned about (issue 22 point 11)", () => {
  it("warns naming the lines, never the values; the later key wins and sections merge, as in Python 2", () => {
    const text = `${withValue("iscsi", "port", "3260")}\n[iscsi]\nport = 3261\n`;
    const { config, warnings } = loadConfig({ text });
    expect(config.iscsi.port).toBe(3261);
    expect(config.iscsi.ip).toBe("127.0.0.1");
    const lines = text.split("\n");
    const first = lines.indexOf("[iscsi]") + 1;
    const second = lines.lastIndexOf("[iscsi]") + 1;
    expect(warnings).toContain(
      `[iscsi] appears twice in config text (lines ${first} and ${second}); read as one section`,
    );
    expect(
      warnings.some((w) =>
        /^\[iscsi\] port is set twice in config text \(lines \d+ and \d+\); the later one is used$/.test(w),
      ),
    ).toBe(true);
    const twice = loadConfig({ text: `${SAMPLE}\n[net_isolator]\npassword = other-secret-1\n` });
    expect(twice.warnings.join("\n")).not.toContain("other-secret-1");
    expect(twice.warnings.join("\n")).not.toContain(HIL_PASSWORD);
  });
});

describe("loadConfig: per-node iSCSI access and node addresses (issue 17.5)", () => {
  const README_SAMPLE = readFileSync(README_SAMPLE_PATH, "utf8");
  /** `text` with per-node access on, the node range and the host entries it needs. */
  const perNode = (text: string, range = "10.247.0.10-10.247.0.99") => {
    let out = withValue("iscsi", "per_node_access", "address", text);
    out = withValue("tftp", "node_addresses", range, out);
    return withValue("tftp", "dhcp_hosts_path", "/var/lib/tftpboot/dhcp-hosts", out);
  };

  it.each([
    ["the newer template", SAMPLE],
    ["the original README's older layout", README_SAMPLE],
  ])("reads them in %s, into the settings", (_layout, text) => {
    const { config } = loadConfig({ text: perNode(text), baseDir: temp });
    expect(config.iscsi.per_node_access).toBe("address");
    expect(config.tftp.node_addresses).toEqual({ first: "10.247.0.10", last: "10.247.0.99" });
    expect(settingsFromConfig(config).iscsi.perNode).toBe("address");
  });

  it("defaults to none (every target gets [iscsi] initiators) and no fixed addresses", () => {
    const { config } = loadConfig({ text: SAMPLE });
    expect(config.iscsi.per_node_access).toBe("none");
    expect(config.tftp.node_addresses).toBeNull();
    expect(settingsFromConfig(config).iscsi.perNode).toBeUndefined();
  });

  it.each([
    ["a range that is not one", "10.247.0.10", /^invalid \[tftp\] node_addresses: must be <first>-<last>/],
    [
      "a range with a bad address",
      "10.247.0.10-10.247.0.300",
      /^invalid \[tftp\] node_addresses: must be <first>-<last>/,
    ],
    [
      "a range outside one /24",
      "10.247.0.10-10.247.1.20",
      /^invalid \[tftp\] node_addresses: must lie inside one \/24/,
    ],
    [
      "a range backwards",
      "10.247.0.99-10.247.0.10",
      /^invalid \[tftp\] node_addresses: the first address must not come after the last/,
    ],
    [
      "a range with the broadcast address",
      "10.247.0.10-10.247.0.255",
      /^invalid \[tftp\] node_addresses: must not include the subnet's .0 or .255/,
    ],
  ])("rejects %s", (_what, range, message) => {
    expect(configError(perNode(SAMPLE, range)).message).toMatch(message);
  });

  it("rejects per-node access without addresses, addresses without host entries, and a range holding the portal", () => {
    expect(configError(withValue("iscsi", "per_node_access", "address")).message).toMatch(
      /^missing \[tftp\] node_addresses: \[iscsi\] per_node_access = address/,
    );
    expect(configError(withValue("iscsi", "per_node_access", "names")).message).toMatch(
      /^invalid \[iscsi\] per_node_access: must be none or address/,
    );
    const noHosts = withValue("tftp", "node_addresses", "10.247.0.10-10.247.0.99");
    expect(configError(noHosts).message).toMatch(/^missing \[tftp\] dhcp_hosts_path/);
    const portalInside = withValue("iscsi", "ip", "10.247.0.50", perNode(SAMPLE));
    expect(configError(portalInside).message).toBe(
      "invalid [tftp] node_addresses: must not include the portal address [iscsi] ip",
    );
  });
});
