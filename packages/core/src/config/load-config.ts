import { readFileSync } from "node:fs";
import { dirname, isAbsolute, resolve } from "node:path";
import { z } from "zod";
import { type AddressRange, AddressRangeSchema, inAddressRange } from "../domain/addresses.js";
import {
  Host,
  IqnPrefix,
  NetworkName,
  PoolName,
  ProjectName,
  RbdSnapshotName,
  Uid,
} from "../domain/names.js";
import { BmiError } from "../errors/index.js";
import type { ExportAccess } from "../ports/export.js";
import { type IniDocument, interpolate, readIni } from "./ini-reader.js";
import { type BmiSettings, DEFAULT_IQN_PREFIX } from "./settings.js";

/** Where the original looked when `$BMI_CONFIG` was unset. */
export const DEFAULT_CONFIG_PATH = "/etc/bmi/bmiconfig.cfg";

/**
 * A loaded `bmi_config.cfg`. Sections and keys keep the original's names; every key the original
 * hard-coded (§9 "Hard-coded values") is a key here with the original value as default. Paths are
 * absolute (relative ones are resolved against the config file's directory), and directories end
 * with `/` as the original required. Secrets (`[net_isolator] password`, `[iscsi] chap_secret`)
 * are here because drivers need them: print the config only through {@link redactedConfig}.
 */
export interface BmiConfig {
  /** The file it was read from; null when loaded from text. */
  file: string | null;
  bmi: {
    uid: string;
    snapshot: string;
    /** The project the admin CLI acts as (hard-coded `bmi_infra` in the original). */
    admin_project: string;
    /** Bound on external commands running at once (CON-4). */
    concurrency: number;
    /** Lease of a per-node / per-image lock before another process may take it over. */
    lock_lease_ms: number;
  };
  db: { path: string };
  fs: {
    id: string;
    pool: string;
    conf_file: string;
    keyring: string | null;
    timeout_ms: number;
    /** The storage back end: `librbd` in-process or the `rbd` CLI (`[ceph] client`). */
    client: "librbd" | "cli";
  };
  iscsi: {
    /** The portal written into boot scripts; may be another host than BMI's (OPS-4). */
    ip: string;
    port: number;
    lun: number;
    iqn_prefix: string;
    /** Export clones under their bare RBD names, as the original did, so its nodes keep booting. */
    bare_target_names: boolean;
    initiators: ExportAccess["initiators"];
    /**
     * `address`: provision restricts a node's target to the node's fixed provisioning address
     * (`[tftp] node_addresses`), deprovision opens it again to `initiators`; `none`: every target
     * admits `initiators`.
     */
    per_node_access: "none" | "address";
    chap_user: string | null;
    chap_secret: string | null;
    /** tgtd's `--control-port` (tgtadm `-C`), so BMI can drive its own tgtd beside a system one. */
    tgt_control_port: number;
    /** Address tgtd listens on (`--iscsi portal=<bind>:<port>`); null = tgtd's default (all). */
    portal_bind: string | null;
    conf_dir: string;
    timeout_ms: number;
  };
  net_isolator: {
    url: string;
    username: string | null;
    password: string | null;
    timeout_ms: number;
    /** How long attach/detach wait for HIL's networking daemon (`[net_isolator] action_timeout_ms`). */
    action_timeout_ms: number;
    provisioning_network: string | null;
    channel: string;
  };
  tftp: {
    ipxe_path: string;
    pxelinux_path: string;
    boot_nic: string;
    firmware: "bios" | "uefi";
    ipxe_kernel: string;
    /** pxelinux menu timeout in tenths of a second (`TIMEOUT 30` = 3 s). */
    menu_timeout: number;
    dnsmasq_leases: string;
    /** Where the PXE driver writes one dnsmasq host entry per provisioned MAC (inside the TFTP root); null: none. */
    dhcp_hosts_path: string | null;
    /** The dnsmasq to SIGHUP when a host entry goes (it only adds entries by itself); null: none. */
    dnsmasq_pid_file: string | null;
    /** The fixed provisioning addresses the PXE driver gives nodes (`<mac>,<ip>` host lines); null: none. */
    node_addresses: AddressRange | null;
  };
  /** The REST server's bind address; null when the file has no `[rest_api]` (no server). */
  rest_api: {
    ip: string;
    port: number;
    /** PEM certificate (chain) and key for HTTPS; both or neither (the server receives HIL passwords). */
    tls_cert: string | null;
    tls_key: string | null;
  } | null;
  logs: { path: string | null; debug: boolean; verbose: boolean };
  /** The drivers to wire. Only the ones this SDK ships are accepted (OPS-4). */
  driver: { fs: "ceph"; iscsi: "tgt"; net_isolator: "hil"; boot: "pxe" };
}

export interface LoadConfigOptions {
  /** The config file; else `env.BMI_CONFIG`, else {@link DEFAULT_CONFIG_PATH}. */
  path?: string;
  /** Defaults to `process.env`. */
  env?: Record<string, string | undefined>;
  /** Config text to parse instead of reading a file (tests, embedded configs). */
  text?: string;
  /** Directory that relative paths are resolved against when `text` is given; default: cwd. */
  baseDir?: string;
}

export interface LoadedConfig {
  config: BmiConfig;
  /** Obsolete, unknown or defaulted-insecure settings, one sentence each; never a value. */
  warnings: string[];
  /** Old section and key names read as new ones, e.g. `[ceph] read as [fs]`, `[db] url read as [db] path`. */
  mapped: string[];
}

// ---------------------------------------------------------------------------------------------
// Value schemas. Every input is the interpolated string from the file.

/** C0 controls and DEL: a newline in a value would add lines to a generated file (SEC-5). */
const CONTROL_CHARS = /\p{Cc}/u;

const bool = z.string().transform((value, ctx) => {
  const lower = value.toLowerCase();
  if (lower === "true") return true;
  if (lower === "false") return false;
  ctx.addIssue({ code: "custom", message: "must be true or false (any case)" });
  return z.NEVER;
});

const int = (min: number, max: number) =>
  z
    .string()
    .regex(/^[+-]?\d+$/, { error: "must be an integer" })
    .transform(Number)
    .pipe(
      z
        .number()
        .min(min, { error: `must be at least ${min}` })
        .max(max, { error: `must be at most ${max}` }),
    );

const port = int(1, 65535);
const simpleName = (what: string) =>
  z.string().regex(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$/, {
    error: `${what} may only contain ASCII letters, digits, '_', '.' and '-'`,
  });
const nonEmpty = z.string().min(1, { error: "must not be empty" });

/**
 * Paths: absolute, or relative to the config file's directory (so a config and the files it
 * names can move together; the original resolved them against its working directory).
 */
const pathIn = (baseDir: string) =>
  nonEmpty
    .refine((p) => !p.includes("\0"))
    .transform((p) => (isAbsolute(p) ? resolve(p) : resolve(baseDir, p)));

/** A directory: the original concatenated names to it, so it had to end with `/`; we add it. */
const dirIn = (baseDir: string) => pathIn(baseDir).transform((p) => (p.endsWith("/") ? p : `${p}/`));

const IPV4 = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}(\/(3[0-2]|[12]?\d))?$/;
const INITIATOR_NAME = /^(iqn\.\d{4}-\d{2}\.[a-z0-9][a-z0-9.-]*(:[A-Za-z0-9_.:-]+)?|eui\.[0-9A-Fa-f]{16})$/;

/** `ALL`, or a comma list of IPv4 addresses (optionally /prefix) and initiator names (iqn./eui.). */
const initiators = z.string().transform((value, ctx): ExportAccess["initiators"] => {
  if (value.trim().toUpperCase() === "ALL") return "ALL";
  const addresses: string[] = [];
  const names: string[] = [];
  for (const entry of value
    .split(",")
    .map((e) => e.trim())
    .filter(Boolean)) {
    if (IPV4.test(entry)) addresses.push(entry);
    else if (INITIATOR_NAME.test(entry)) names.push(entry);
    else {
      ctx.addIssue({
        code: "custom",
        message:
          "each entry must be an IPv4 address (optionally /prefix) or an initiator name (iqn.… or eui.…)",
      });
      return z.NEVER;
    }
  }
  if (addresses.length + names.length === 0) {
    ctx.addIssue({ code: "custom", message: "must be ALL or a comma-separated list of initiators" });
    return z.NEVER;
  }
  return { ...(addresses.length > 0 ? { addresses } : {}), ...(names.length > 0 ? { names } : {}) };
});

function sectionSchemas(baseDir: string) {
  const path = pathIn(baseDir);
  const dir = dirIn(baseDir);
  return {
    bmi: z.object({
      uid: Uid,
      // The original README's older layout has no snapshot key; this was its name then.
      snapshot: RbdSnapshotName.default("bmi_created_snapshot"),
      admin_project: ProjectName.default("bmi_infra"),
      concurrency: int(1, 1024).default(8),
      lock_lease_ms: int(1_000, 7 * 24 * 3_600_000).default(10 * 60_000),
    }),
    db: z.object({ path: z.literal(":memory:").or(path) }),
    fs: z.object({
      id: simpleName("a Ceph client id"),
      pool: PoolName,
      conf_file: path,
      keyring: path.nullable().default(null),
      timeout_ms: int(100, 3_600_000).default(60_000),
      client: z.enum(["librbd", "cli"], { error: "must be librbd or cli" }).default("librbd"),
    }),
    iscsi: z.object({
      ip: Host,
      port: port.default(3260),
      lun: int(1, 255).default(1),
      iqn_prefix: IqnPrefix.default(DEFAULT_IQN_PREFIX),
      bare_target_names: bool.default(false),
      initiators: initiators.default("ALL"),
      per_node_access: z.enum(["none", "address"], { error: "must be none or address" }).default("none"),
      chap_user: simpleName("a CHAP user").nullable().default(null),
      chap_secret: z
        .string()
        .min(12, { error: "must be 12 to 16 characters (the CHAP secret length most initiators accept)" })
        .max(16, { error: "must be 12 to 16 characters (the CHAP secret length most initiators accept)" })
        .nullable()
        .default(null),
      tgt_control_port: int(0, 65535).default(0),
      portal_bind: Host.nullable().default(null),
      conf_dir: dir.default("/etc/tgt/conf.d/"),
      timeout_ms: int(100, 3_600_000).default(30_000),
    }),
    net_isolator: z.object({
      url: z.url({ protocol: /^https?$/, error: "must be an http:// or https:// URL" }),
      username: nonEmpty
        .refine((u) => !u.includes(":"), { error: "must not contain ':' (HTTP Basic auth)" })
        .nullable()
        .default(null),
      password: nonEmpty.nullable().default(null),
      timeout_ms: int(100, 3_600_000).default(10_000),
      /** How long attach/detach wait for HIL's networking daemon to apply an action. */
      action_timeout_ms: int(1_000, 3_600_000).default(60_000),
      provisioning_network: NetworkName.nullable().default(null),
      channel: z
        .string()
        .regex(/^(vlan\/(native|\d{1,4})|null)$/, { error: "must be vlan/native, vlan/<id> or null" })
        .default("vlan/native"),
    }),
    tftp: z.object({
      ipxe_path: dir,
      pxelinux_path: dir,
      // `any`: plain `dhcp` on every NIC in turn (one-NIC nodes, VMs); the original hard-coded net2.
      boot_nic: z
        .string()
        .regex(/^(any|net\d{1,2})$/, { error: "must be any, or an iPXE interface name such as net0" })
        .default("any"),
      firmware: z.enum(["bios", "uefi"], { error: "must be bios or uefi" }).default("bios"),
      ipxe_kernel: simpleName("a file name").default("ipxe.lkrn"),
      menu_timeout: int(0, 36_000).default(30),
      dnsmasq_leases: path.default("/var/lib/misc/dnsmasq.leases"),
      dhcp_hosts_path: dir.nullable().default(null),
      dnsmasq_pid_file: path.nullable().default(null),
      node_addresses: AddressRangeSchema.nullable().default(null),
    }),
    // tls_cert and tls_key go together: checked after the section is read, as chap_user/chap_secret.
    rest_api: z.object({
      ip: Host,
      port,
      tls_cert: path.nullable().default(null),
      tls_key: path.nullable().default(null),
    }),
    logs: z.object({
      path: dir.nullable().default(null),
      debug: bool.default(false),
      verbose: bool.default(false),
    }),
  };
}

type Schemas = ReturnType<typeof sectionSchemas>;
type SectionName = keyof Schemas;

/** Sections we need, and the older names the original README (or its forks) used for them. */
const SECTION_ALIASES: Record<string, SectionName> = { ceph: "fs", haas: "net_isolator", http: "rest_api" };
const REQUIRED_SECTIONS: readonly SectionName[] = ["bmi", "db", "fs", "iscsi", "net_isolator", "tftp"];
/** Keys read from the file but never as values: obsolete (warned about) or secret-and-ignored. */
const OBSOLETE_KEYS: Record<string, Record<string, string>> = {
  bmi: { service: "it ran remake_mappings at start, which the tgt driver never implemented" },
  iscsi: { password: "it was a plaintext sudo password; BMI never needs one (SEC-4)" },
  net_isolator: { api_version: "HIL has one API version, /v0, which the client always uses" },
};
/** Older key names (the original README's layout), in the old or the new section name. */
const KEY_ALIASES: Partial<Record<SectionName, Record<string, string>>> = {
  db: { url: "path" },
  tftp: { pxelinux_url: "pxelinux_path", ipxe_url: "ipxe_path" },
  rest_api: { bind_ip: "ip", bind_port: "port" },
  logs: { url: "path" },
};
const OBSOLETE_SECTIONS: Record<string, string> = {
  rpc: "the Pyro RPC layer is gone",
  filesystem: "it chose the storage back end, and Ceph is the only one",
  tests: "it only served the original's own tests",
  test: "it only served the original's own tests",
};

/** Driver names accepted for each `[driver]` key, including the original's module paths. */
const DRIVER_NAMES: Record<keyof BmiConfig["driver"], { value: string; accepted: readonly string[] }> = {
  fs: {
    value: "ceph",
    accepted: ["ceph", "rbd", "ims.einstein.ceph", "ims.einstein.fs.ceph", "ims.einstein.fs.ceph.driver"],
  },
  iscsi: {
    value: "tgt",
    accepted: ["tgt", "ims.einstein.iscsi.tgt", "ims.einstein.iscsi.tgt.driver", "ims.einstein.tgt.driver"],
  },
  net_isolator: {
    value: "hil",
    accepted: ["hil", "haas", "default", "<default>", "ims.einstein.hil", "ims.einstein.networkisolator.hil"],
  },
  boot: { value: "pxe", accepted: ["pxe", "ipxe", "pxelinux"] },
};

const configError = (message: string, details: Record<string, unknown>, cause?: unknown) =>
  new BmiError("invalid_input", message, { subsystem: "config", details, cause });

// ---------------------------------------------------------------------------------------------

/**
 * Loads `bmi_config.cfg`: from `options.text`, else from `options.path`, `$BMI_CONFIG` or
 * `/etc/bmi/bmiconfig.cfg`. Throws `BmiError("invalid_input", …)` with subsystem `config` whose
 * message names the section and key (`invalid [iscsi] port: must be an integer`) or the file.
 */
export function loadConfig(options: LoadConfigOptions = {}): LoadedConfig {
  const env = options.env ?? process.env;
  let text: string;
  let file: string | null;
  let baseDir: string;
  if (options.text !== undefined) {
    text = options.text;
    file = options.path === undefined ? null : resolve(options.path);
    baseDir = resolve(options.baseDir ?? (file ? dirname(file) : process.cwd()));
  } else {
    // An empty $BMI_CONFIG counts as unset, like an empty path.
    file = resolve(options.path || env.BMI_CONFIG || DEFAULT_CONFIG_PATH);
    baseDir = dirname(file);
    try {
      text = readFileSync(file, "utf8");
    } catch (error) {
      const why = (error as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : "unreadable";
      throw new BmiError("invalid_input", `cannot load config file ${file}: ${why}`, {
        subsystem: "config",
        details: { file },
        cause: error,
      });
    }
  }
  return parseConfig(readIni(text, file ?? "config text"), file, baseDir);
}

/**
 * The values of one of our sections, gathered from every file section that feeds it, under new
 * or old key names in any mix. The same setting given twice with different values is an error
 * naming both places (never the values); given twice alike, it is accepted.
 */
function readSection(
  doc: IniDocument,
  section: SectionName,
  sources: string[],
  schema: z.ZodObject,
  warnings: string[],
  mapped: string[],
  file: string | null,
): { input: Record<string, string>; origin: Map<string, { section: string; key: string }> } {
  const known = new Set(Object.keys(schema.shape));
  const aliases: Record<string, string> = KEY_ALIASES[section] ?? {};
  const obsolete: Record<string, string> = OBSOLETE_KEYS[section] ?? {};
  const input: Record<string, string> = {};
  const origin = new Map<string, { section: string; key: string }>();
  const take = (source: string, fileKey: string, key: string) => {
    const value = interpolate(doc, source, fileKey);
    if (CONTROL_CHARS.test(value)) {
      throw configError(
        `invalid [${source}] ${fileKey}: must not contain a newline or other control characters`,
        { section: source, key: fileKey, file },
      );
    }
    const first = origin.get(key);
    if (first !== undefined && input[key] !== value) {
      throw configError(
        `[${first.section}] ${first.key} and [${source}] ${fileKey} are the same setting with different values; keep one`,
        { section: source, key: fileKey, file, other: `[${first.section}] ${first.key}` },
      );
    }
    input[key] = value;
    if (first === undefined) origin.set(key, { section: source, key: fileKey });
  };
  for (const source of sources) {
    for (const fileKey of doc.sections.get(source)?.keys() ?? []) {
      if (known.has(fileKey)) take(source, fileKey, fileKey);
      else if (aliases[fileKey] !== undefined) {
        take(source, fileKey, aliases[fileKey]);
        mapped.push(`[${source}] ${fileKey} read as [${section}] ${aliases[fileKey]}`);
      } else if (obsolete[fileKey] !== undefined)
        warnings.push(`[${source}] ${fileKey} is obsolete and ignored: ${obsolete[fileKey]}`);
      else warnings.push(`unknown key [${source}] ${fileKey} ignored`);
    }
  }
  // [DEFAULT] options apply to every section, as in Python; only keys this section knows.
  const primary = sources[0] ?? section;
  for (const key of doc.defaults.keys())
    if (known.has(key) && input[key] === undefined) take(primary, key, key);
  return { input, origin };
}

function parseConfig(doc: IniDocument, file: string | null, baseDir: string): LoadedConfig {
  const warnings: string[] = [...doc.duplicates];
  const mapped: string[] = [];
  const where = file ?? "the config text";
  const schemas = sectionSchemas(baseDir);

  // Which file sections feed each of ours: its own name and/or an old one ([ceph] for [fs]).
  const sourcesOf = new Map<SectionName, string[]>();
  for (const name of doc.sections.keys()) {
    const target = (name in schemas ? name : SECTION_ALIASES[name]) as SectionName | undefined;
    if (target !== undefined) {
      sourcesOf.set(target, [...(sourcesOf.get(target) ?? []), name]);
      if (name !== target) mapped.push(`[${name}] read as [${target}]`);
    } else if (name === "driver") {
      // Handled below.
    } else if (name in OBSOLETE_SECTIONS) {
      warnings.push(`[${name}] is obsolete and ignored: ${OBSOLETE_SECTIONS[name]}`);
    } else {
      warnings.push(`unknown section [${name}] ignored`);
    }
  }
  for (const section of REQUIRED_SECTIONS) {
    if (!sourcesOf.has(section)) {
      throw configError(`missing [${section}] section in ${where}`, { section, file });
    }
  }
  const read = <S extends SectionName>(section: S): z.output<Schemas[S]> | undefined => {
    const sources = sourcesOf.get(section);
    if (sources === undefined) return undefined;
    const values = readSection(doc, section, sources, schemas[section], warnings, mapped, file);
    const result = schemas[section].safeParse(values.input);
    if (result.success) return result.data as z.output<Schemas[S]>;
    const issue = result.error.issues[0];
    const key = String(issue?.path[0] ?? "");
    const origin = values.origin.get(key);
    if (origin === undefined) {
      throw configError(`missing [${sources[0]}] ${key} in ${where} (required)`, {
        section: sources[0],
        key,
        file,
      });
    }
    // The key and the rule, never the value: a secret typed into the wrong key must not be echoed.
    throw configError(`invalid [${origin.section}] ${origin.key}: ${issue?.message ?? "is invalid"}`, {
      section: origin.section,
      key: origin.key,
      file,
    });
  };

  const bmi = read("bmi");
  const db = read("db");
  const fs = read("fs");
  const iscsi = read("iscsi");
  const netIsolator = read("net_isolator");
  const tftp = read("tftp");
  // Presence checked above; the assertion only narrows the type.
  if (!bmi || !db || !fs || !iscsi || !netIsolator || !tftp) throw new Error("unreachable");
  const restApi = read("rest_api") ?? null;
  const logs = read("logs") ?? { path: null, debug: false, verbose: false };

  if ((iscsi.chap_user === null) !== (iscsi.chap_secret === null)) {
    const key = iscsi.chap_user === null ? "chap_user" : "chap_secret";
    throw configError(`missing [iscsi] ${key}: chap_user and chap_secret go together`, {
      section: "iscsi",
      key,
      file,
    });
  }
  if (restApi && (restApi.tls_cert === null) !== (restApi.tls_key === null)) {
    const key = restApi.tls_cert === null ? "tls_cert" : "tls_key";
    throw configError(`missing [rest_api] ${key}: tls_cert and tls_key go together (HTTPS needs both)`, {
      section: "rest_api",
      key,
      file,
    });
  }
  checkNodeAddresses(iscsi, tftp, file);
  if (!doc.sections.get("iscsi")?.has("initiators")) {
    warnings.push(
      "[iscsi] initiators is not set: any initiator may log in to every target (the original's behaviour); set it to ALL to make that explicit, or list the nodes' initiators",
    );
  }

  const driver = readDrivers(doc, warnings, file);
  const config: BmiConfig = {
    file,
    bmi,
    db,
    fs,
    iscsi,
    net_isolator: netIsolator,
    tftp,
    rest_api: restApi,
    logs,
    driver,
  };
  if (mapped.length > 0) warnings.push(`old names read as new ones: ${mapped.join("; ")}`);
  return { config, warnings, mapped };
}

/**
 * Per-node access needs the addresses it restricts to, and those need the dnsmasq host entries
 * that hand them out; the portal itself must not be one of them.
 */
function checkNodeAddresses(iscsi: BmiConfig["iscsi"], tftp: BmiConfig["tftp"], file: string | null): void {
  if (iscsi.per_node_access === "address" && tftp.node_addresses === null) {
    throw configError(
      "missing [tftp] node_addresses: [iscsi] per_node_access = address restricts each target to its node's fixed address, taken from that range",
      { section: "tftp", key: "node_addresses", file },
    );
  }
  if (tftp.node_addresses === null) return;
  if (tftp.dhcp_hosts_path === null) {
    throw configError(
      "missing [tftp] dhcp_hosts_path: [tftp] node_addresses are handed out through dnsmasq host entries written there",
      { section: "tftp", key: "dhcp_hosts_path", file },
    );
  }
  if (inAddressRange(tftp.node_addresses, iscsi.ip)) {
    throw configError("invalid [tftp] node_addresses: must not include the portal address [iscsi] ip", {
      section: "tftp",
      key: "node_addresses",
      file,
    });
  }
}

/** `[driver]` was parsed and never used by the original: accept its keys only if they name ours (OPS-4). */
function readDrivers(doc: IniDocument, warnings: string[], file: string | null): BmiConfig["driver"] {
  const driver: BmiConfig["driver"] = { fs: "ceph", iscsi: "tgt", net_isolator: "hil", boot: "pxe" };
  const section = doc.sections.get("driver");
  if (!section) return driver;
  const matched: string[] = [];
  for (const key of section.keys()) {
    const spec = DRIVER_NAMES[key as keyof BmiConfig["driver"]];
    if (!spec) {
      warnings.push(`unknown key [driver] ${key} ignored`);
      continue;
    }
    const value = interpolate(doc, "driver", key).trim();
    // The original's sample shipped `<driver to load>` placeholders, and BMI ran with them.
    const placeholder = /^<[^<>]*>$/.test(value);
    if (!placeholder && !spec.accepted.includes(value.toLowerCase())) {
      throw configError(
        `invalid [driver] ${key}: not a driver this BMI has; it supports only ${spec.value} (${spec.accepted.join(", ")})`,
        { section: "driver", key, file },
      );
    }
    matched.push(`${key}=${spec.value}`);
  }
  if (matched.length > 0) {
    warnings.push(
      `[driver] is obsolete: drivers are wired in code; its keys name the defaults (${matched.join(", ")}) and are accepted`,
    );
  }
  return driver;
}

/** The settings the operations need, derived from a loaded config. */
export function settingsFromConfig(config: BmiConfig): BmiSettings {
  const { iscsi } = config;
  return {
    uid: config.bmi.uid,
    snapshotName: config.bmi.snapshot,
    iscsi: {
      portal: iscsi.ip,
      port: iscsi.port,
      lun: iscsi.lun,
      naming: iscsi.bare_target_names ? "bare" : { iqnPrefix: iscsi.iqn_prefix },
      access: {
        initiators: iscsi.initiators,
        ...(iscsi.chap_user !== null && iscsi.chap_secret !== null
          ? { chap: { user: iscsi.chap_user, secret: iscsi.chap_secret } }
          : {}),
      },
      ...(iscsi.per_node_access === "address" ? { perNode: "address" as const } : {}),
    },
    provisioningNetwork: config.net_isolator.provisioning_network,
    provisioningChannel: config.net_isolator.channel,
    defaultFirmware: config.tftp.firmware,
    adminProject: config.bmi.admin_project,
    concurrency: config.bmi.concurrency,
    lockLeaseMs: config.bmi.lock_lease_ms,
  };
}

const MASK = "[REDACTED]";

/** A copy safe to print or log: secrets replaced by `[REDACTED]`, credentials stripped from the URL. */
export function redactedConfig(config: BmiConfig): BmiConfig {
  const copy = structuredClone(config);
  if (copy.net_isolator.password !== null) copy.net_isolator.password = MASK;
  if (copy.iscsi.chap_secret !== null) copy.iscsi.chap_secret = MASK;
  try {
    const url = new URL(copy.net_isolator.url);
    if (url.password || url.username) {
      url.username = url.username ? MASK : "";
      url.password = url.password ? MASK : "";
      copy.net_isolator.url = url.toString();
    }
  } catch {
    // The URL was validated at load time; a hand-built config may hold anything.
  }
  return copy;
}
