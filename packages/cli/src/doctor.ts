import { constants } from "node:fs";
import { access, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import {
  type BmiConfig,
  closeDriver,
  isBmiError,
  loadConfig,
  settingsFromConfig,
  toBmiError,
} from "@bmi/core";
import type { HilClient } from "@bmi/driver-hil";
import { type ConfigDrivers, createDriversFromConfig } from "@bmi/wiring";
import { inspectDatabase } from "./doctor-database.js";

export interface DoctorCheck {
  name: "config" | "database" | "ceph" | "tgtd" | "tftp" | "hil";
  ok: boolean;
  /** What was found, or what is wrong. */
  detail: string;
  /** How to fix it; null when ok. */
  fix: string | null;
}

/** Loaders each firmware's chain needs in the TFTP root (see @bmi/driver-pxe's STATIC_BOOT_FILES). */
const LOADERS: Record<BmiConfig["tftp"]["firmware"], string[]> = {
  bios: ["pxelinux.0", "ldlinux.c32", "menu.c32", "libutil.c32"],
  uefi: ["ipxe.efi"],
};

/** One check of `bmi doctor`, run on its own so a caller can show each as it happens. */
export interface DoctorStep {
  name: DoctorCheck["name"];
  run(): Promise<DoctorCheck>;
}

export interface DoctorOptions {
  path?: string;
  env?: Record<string, string | undefined>;
}

/**
 * Checks that the deployment a config describes works: the config loads, the database opens,
 * Ceph answers `rbd ls`, tgtd answers `tgtadm show`, the TFTP root is writable and has its
 * loaders, HIL answers with the configured credentials. Every check runs, whatever failed before.
 * Nothing is created or changed: the database is read from a copy, directories are probed with access().
 */
export async function runDoctor(options: DoctorOptions): Promise<DoctorCheck[]> {
  const checks: DoctorCheck[] = [];
  for (const step of doctorSteps(options)) checks.push(await step.run());
  return checks;
}

/** The checks in order; without a loadable config, only the config check (which fails). */
export function doctorSteps(options: DoctorOptions): DoctorStep[] {
  const env = options.env ?? process.env;
  let config: BmiConfig;
  let warnings: string[];
  try {
    ({ config, warnings } = loadConfig({ ...(options.path ? { path: options.path } : {}), env }));
  } catch (error) {
    const detail = toBmiError(error, "config").message;
    const fix = "pass --config <file> or set BMI_CONFIG, and correct the named section and key";
    return [{ name: "config", run: async () => ({ name: "config", ok: false, detail, fix }) }];
  }
  const noted = warnings.length > 0 ? `; ${warnings.length} warning(s): ${warnings.join("; ")}` : "";
  const loaded: DoctorCheck = {
    name: "config",
    ok: true,
    detail: `${config.file ?? "config"} loaded${noted}`,
    fix: null,
  };
  // Each driver is built inside its own check, so one bad section does not hide the others.
  // and each is closed after it (the librbd back end holds a cluster connection).
  const withDriver = async <K extends keyof ConfigDrivers, T>(
    key: K,
    use: (driver: ConfigDrivers[K]) => Promise<T> | T,
  ): Promise<T> => {
    const driver = createDriversFromConfig(config, { env }, [key])[key];
    try {
      return await use(driver);
    } finally {
      await closeDriver(driver);
    }
  };
  const step = (
    name: DoctorCheck["name"],
    fix: string,
    probe: () => Promise<string> | string,
  ): DoctorStep => ({
    name,
    run: () => check(name, fix, probe),
  });
  return [
    { name: "config", run: async () => loaded },
    step("database", "run `bmi db init`, and check that [db] path is readable", () =>
      inspectDatabase(config.db.path, settingsFromConfig(config).adminProject),
    ),
    step(
      "ceph",
      `check that the monitors in ${config.fs.conf_file} are up and that client.${config.fs.id} (keyring ${config.fs.keyring ?? "default"}) may read pool ${config.fs.pool}`,
      () =>
        withDriver(
          "storage",
          async (storage) => `pool ${config.fs.pool}: ${(await storage.list()).length} RBD image(s)`,
        ),
    ),
    step(
      "tgtd",
      `start tgtd${config.iscsi.tgt_control_port ? ` with --control-port ${config.iscsi.tgt_control_port}` : ""} (Debian packages tgt and tgt-rbd), or correct [iscsi] tgt_control_port`,
      () =>
        withDriver("export", async (exporter) => `tgtd answers: ${(await exporter.list()).length} target(s)`),
    ),
    step(
      "tftp",
      "install the boot loaders (`installTftpRoot` from @bmi/driver-pxe, or Debian pxelinux, syslinux-common, ipxe) and make the directories writable",
      () => withDriver("boot", () => tftpRoot(config)),
    ),
    step(
      "hil",
      "check [net_isolator] url and the credentials ([net_isolator] username/password or HIL_USERNAME/HIL_PASSWORD), and that [net_isolator] provisioning_network exists in HIL with [net_isolator] channel",
      () =>
        withDriver("isolation", async ({ client }) => {
          const free = await client.listNodes("free");
          const answers = `HIL at ${client.url} answers: ${free.length} free node(s)`;
          return `${answers}; ${await provisioningNetworkCheck(config, client)}`;
        }),
    ),
  ];
}

async function tftpRoot(config: BmiConfig): Promise<string> {
  const root = config.tftp.ipxe_path;
  const dirs = [...new Set([root, config.tftp.pxelinux_path])];
  const later: string[] = [];
  for (const dir of dirs) {
    // A fresh root has no pxelinux.cfg/ yet: the boot driver creates it on the first provision.
    const exists = (await stat(dir).catch(() => null)) !== null;
    if (!exists && dir !== root && (await isDirectory(dirname(dir)))) later.push(dir);
    await writableDirectory(exists || dir === root ? dir : dirname(dir));
  }
  const wanted = [
    ...LOADERS[config.tftp.firmware],
    ...(config.tftp.firmware === "bios" ? [config.tftp.ipxe_kernel] : []),
  ];
  const missing: string[] = [];
  for (const file of wanted) {
    await access(join(root, file), constants.R_OK).catch(() => missing.push(file));
  }
  if (missing.length > 0) throw new Error(`${root} lacks ${missing.join(", ")}`);
  const note = later.length > 0 ? `; ${later.join(", ")} will be created by the first provision` : "";
  return `${root} is writable and has ${wanted.join(", ")}${note}`;
}

async function isDirectory(path: string): Promise<boolean> {
  return (await stat(path).catch(() => null))?.isDirectory() === true;
}

async function writableDirectory(dir: string): Promise<void> {
  if (!(await isDirectory(dir))) throw new Error(`${dir} is not a directory`);
  // access(), not a probe file: doctor changes nothing.
  await access(dir, constants.W_OK).catch(() => {
    throw new Error(`${dir} is not writable`);
  });
}

/**
 * The provisioning network must exist in HIL and carry the configured channel, or the first
 * provision fails at its last step, after clone, export and boot files.
 */
async function provisioningNetworkCheck(config: BmiConfig, client: HilClient): Promise<string> {
  const { provisioning_network: network, channel } = config.net_isolator;
  if (network === null) return "no [net_isolator] provisioning_network: BMI leaves networks alone";
  const shown = await client.showNetwork(network).catch((error: unknown) => {
    if (!isBmiError(error, "not_found")) throw error;
    throw new Error(
      `the provisioning network ${network} does not exist in HIL: create it (PUT /v0/network/${network}) or correct [net_isolator] provisioning_network`,
    );
  });
  if (!shown.channels.includes(channel)) {
    throw new Error(
      `the provisioning network ${network} has channels ${shown.channels.join(", ")}, not [net_isolator] channel ${channel}`,
    );
  }
  return `provisioning network ${network} exists with channel ${channel}`;
}

async function check(
  name: DoctorCheck["name"],
  fix: string,
  probe: () => Promise<string> | string,
): Promise<DoctorCheck> {
  try {
    return { name, ok: true, detail: await probe(), fix: null };
  } catch (error) {
    const message =
      error instanceof Error ? toBmiError(error).message.replace(/^unexpected error: /, "") : String(error);
    return { name, ok: false, detail: message, fix };
  }
}
