/**
 * Issue 10 §6 (unit part): with a HIL password, a CHAP secret and a Ceph key set, every operation
 * and every error path runs with logs captured at debug level; no secret appears in the logs, in
 * error messages, details or causes, in the progress events, or in the redacted config.
 */
import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import {
  type Bmi,
  createBmi,
  createLogger,
  loadConfig,
  openSqliteStore,
  redactedConfig,
  settingsFromConfig,
} from "../src/index.js";
import {
  createMemoryBoot,
  createMemoryExport,
  createMemoryIsolation,
  createMemoryStorage,
} from "../src/testing/index.js";

const HIL_PASSWORD = "hil-Pa55word-zq81";
const CHAP_SECRET = "chapSecret12zq";
const CEPH_KEY = "AQBzq9lmAAAAABAAcephkeyzq81ABCDEFGHIJ==";
const SECRETS = [HIL_PASSWORD, CHAP_SECRET, CEPH_KEY];

const CONFIG = `
[bmi]
uid = 5
snapshot = bmi_created_snapshot
[db]
path = :memory:
[fs]
id = admin
pool = rbd
conf_file = /etc/ceph/ceph.conf
keyring = /etc/ceph/ceph.client.admin.keyring
[iscsi]
ip = 127.0.0.1
initiators = ALL
chap_user = bmiuser
chap_secret = ${CHAP_SECRET}
password = sudo-${HIL_PASSWORD}
[net_isolator]
url = http://bmi:${HIL_PASSWORD}@127.0.0.1:7000
username = bmi
password = ${HIL_PASSWORD}
provisioning_network = prov
[tftp]
ipxe_path = /var/lib/tftpboot/
pxelinux_path = /var/lib/tftpboot/pxelinux.cfg/
`;

/** Every string reachable from an error: message, details, causes (recursively). */
function errorText(error: unknown, depth = 0): string {
  if (depth > 5 || error === null || error === undefined) return "";
  if (!(error instanceof Error)) return JSON.stringify(error) ?? "";
  const e = error as Error & { details?: unknown };
  return [e.message, e.stack ?? "", JSON.stringify(e.details ?? {}), errorText(e.cause, depth + 1)].join(
    "\n",
  );
}

function setup() {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      lines.push(String(chunk));
      done();
    },
  });
  const { config, warnings } = loadConfig({ text: CONFIG });
  const settings = settingsFromConfig(config);
  const logger = createLogger({ level: "debug" }, sink);
  logger.info({ config: redactedConfig(config), warnings }, "config loaded");
  // Drivers are handed the secrets as a deployment would: the export driver gets the CHAP secret
  // in each request, the "storage" is told the Ceph key.
  const storage = createMemoryStorage();
  const store = openSqliteStore({
    create: true,
    path: ":memory:",
    uid: settings.uid,
    snapshotName: settings.snapshotName,
    logger,
  });
  const bmi: Bmi = createBmi({
    storage,
    export: createMemoryExport(),
    boot: createMemoryBoot(),
    isolation: createMemoryIsolation({
      nodes: [
        { name: "n1", project: "p1", nics: [{ label: "eth0", mac: "52:54:00:00:00:01" }] },
        { name: "n2", project: "p2", nics: [{ label: "eth0", mac: "52:54:00:00:00:02" }] },
      ],
      networks: ["prov"],
    }),
    store,
    settings,
    logger,
  });
  const events: unknown[] = [];
  bmi.on((event) => events.push(event));
  logger.debug({ ceph: { keyring: config.fs.keyring, key: CEPH_KEY } }, "ceph client configured");
  return { bmi, storage, lines, events, config, settings, warnings };
}

describe("no secret in logs, errors, events or the redacted config", () => {
  it("every operation and every error path", async () => {
    const { bmi, storage, lines, events, config, settings, warnings } = setup();
    expect(settings.iscsi.access.chap?.secret).toBe(CHAP_SECRET); // the secret is really in play
    const errors: unknown[] = [];
    const attempt = async (fn: () => unknown) => {
      try {
        await fn();
      } catch (error) {
        errors.push(error);
      }
    };

    await bmi.createProject({ name: "p1" });
    await bmi.createProject({ name: "p2" });
    await storage.create("src", 1024 * 1024);
    await bmi.importImage({ project: "p1", source: "src", name: "golden" });
    await bmi.createDisk({ project: "p1", image: "golden", disk: "d1" });
    await bmi.provision({ project: "p1", node: "n1", disk: "d1" });
    await bmi.provision({ project: "p1", node: "n1", disk: "d1" }); // idempotent
    await bmi.snapshotDisk({ project: "p1", disk: "d1", snapshot: "s1", force: true });
    await bmi.copyImage({ project: "p1", image: "golden", destProject: "p2", destName: "c1" });
    await bmi.moveImage({ project: "p2", image: "c1", destProject: "p2", destName: "c2" });
    await bmi.mountImage({ project: "p1", image: "golden" });
    await bmi.listMounts({ project: "p1" });
    await bmi.unmountImage({ project: "p1", image: "golden" });
    await bmi.exportImage({ project: "p1", image: "s1", rbdName: "exported" });
    await bmi.restoreTargets();
    await bmi.createProject({ name: "bmi_infra" });
    await bmi.reconcile({ repair: true });
    await bmi.listImages({ project: "p1" });
    await bmi.listSnapshots({ project: "p1" });
    await bmi.listDisks({ project: "p1" });
    await bmi.listProvisionings();

    // Error paths: bad input, not found, conflicts, busy, forbidden nodes, in-use disks.
    await attempt(() => bmi.createDisk({ project: "p1", image: "nope", disk: "d2" }));
    await attempt(() => bmi.createDisk({ project: "p1", image: "golden", disk: "d1" }));
    await attempt(() => bmi.createDisk({ project: "p1", image: `x/${CHAP_SECRET}`, disk: "d2" }));
    await attempt(() => bmi.provision({ project: "p1", node: "n2", disk: "d9", image: "golden" }));
    await attempt(() => bmi.provision({ project: "p1", node: "n1", disk: "d9", image: "golden" }));
    await attempt(() => bmi.deleteDisk({ project: "p1", disk: "d1" }));
    await attempt(() => bmi.snapshotDisk({ project: "p1", disk: "d1", snapshot: "s2" }));
    await attempt(() => bmi.removeImage({ project: "p1", image: "golden" }));
    await attempt(() => bmi.deprovision({ project: "p2", node: "n1" }));
    await attempt(() => bmi.deleteProject({ name: "p1" }));
    await attempt(() => bmi.importImage({ project: "p1", source: "missing", name: "g9" }));
    await attempt(() => bmi.moveImage({ project: "p1", image: "d1", destProject: "p2" }));
    await attempt(() => bmi.unmountImage({ project: "p1", image: "golden" }));
    await attempt(() => bmi.provisionMany([{ project: "p1", node: "n1", disk: "d1" }], { concurrency: 0 }));
    await attempt(() => loadConfig({ text: CONFIG.replace("chap_secret = ", "chap_secret = short") }));
    await attempt(() => loadConfig({ text: CONFIG.replace("url = http://", "url = ftp://") }));
    await attempt(() =>
      loadConfig({
        text: CONFIG.replace(`password = ${HIL_PASSWORD}`, `password = ${HIL_PASSWORD}\npassword = x`),
      }),
    );
    expect(errors.length).toBeGreaterThanOrEqual(15);

    await bmi.deprovision({ project: "p1", node: "n1", deleteDisk: true });

    const haystacks = {
      logs: lines.join(""),
      errors: errors.map((e) => errorText(e)).join("\n"),
      events: JSON.stringify(events),
      redactedConfig: JSON.stringify(redactedConfig(config)),
      warnings: warnings.join("\n"),
    };
    expect(haystacks.logs).toContain("step finished"); // the logs really were captured
    expect(JSON.stringify(config)).toContain(HIL_PASSWORD); // and the unredacted config does hold it
    for (const [where, text] of Object.entries(haystacks)) {
      for (const secret of SECRETS) expect(text.includes(secret), `${where} contains a secret`).toBe(false);
    }
  });
});
