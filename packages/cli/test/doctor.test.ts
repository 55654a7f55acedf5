import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type HilServer, startHilServer } from "@bmi/driver-hil/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runDoctor } from "../src/doctor.js";

// Issue 19 point 5: doctor checks the provisioning network in HIL (exists, has the channel) and
// accepts a freshly installed TFTP root (pxelinux.cfg/ comes with the first provision).

let server: HilServer;
const dir = mkdtempSync(join(tmpdir(), "bmi-doctor-test-"));
const root = join(dir, "tftp");
beforeAll(async () => {
  server = await startHilServer({
    auth: "basic",
    fixture: {
      projects: ["proj1"],
      users: [{ name: "bmi", password: "bmi-pw-12345", projects: ["proj1"] }],
      networks: [{ name: "prov", owner: "admin", access: ["proj1"], netId: "300" }],
    },
  });
  mkdirSync(root, { recursive: true });
  for (const loader of ["pxelinux.0", "ldlinux.c32", "menu.c32", "libutil.c32", "ipxe.lkrn"]) {
    writeFileSync(join(root, loader), "");
  }
});
afterAll(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

function configFile(net: { network: string; channel: string }): string {
  const path = join(dir, `bmi-${net.network}-${net.channel.replace("/", "-")}.cfg`);
  writeFileSync(
    path,
    [
      "[bmi]",
      "uid = 1",
      "[db]",
      `path = ${join(dir, "bmi.db")}`,
      "[fs]",
      "id = admin",
      "pool = rbd",
      `conf_file = ${join(dir, "no-ceph.conf")}`,
      "timeout_ms = 2000",
      "[iscsi]",
      "ip = 127.0.0.1",
      "initiators = ALL",
      "tgt_control_port = 1",
      "timeout_ms = 2000",
      "[net_isolator]",
      `url = ${server.url}`,
      "username = bmi",
      "password = bmi-pw-12345",
      `provisioning_network = ${net.network}`,
      `channel = ${net.channel}`,
      "[tftp]",
      `ipxe_path = ${root}/`,
      `pxelinux_path = ${root}/pxelinux.cfg/`,
    ].join("\n"),
  );
  return path;
}

const checkOf = async (path: string, name: string) =>
  (await runDoctor({ path, env: {} })).find((c) => c.name === name);

describe("bmi doctor: HIL's provisioning network and a fresh TFTP root", () => {
  it("accepts a fresh TFTP root without pxelinux.cfg/, and a provisioning network with its channel", async () => {
    const path = configFile({ network: "prov", channel: "vlan/native" });
    const checks = await runDoctor({ path, env: {} });
    const tftp = checks.find((c) => c.name === "tftp");
    expect(tftp?.ok, tftp?.detail).toBe(true);
    expect(tftp?.detail).toMatch(/pxelinux\.cfg\/ will be created by the first provision/);
    const hil = checks.find((c) => c.name === "hil");
    expect(hil?.ok, hil?.detail).toBe(true);
    expect(hil?.detail).toMatch(/provisioning network prov exists with channel vlan\/native/);
    expect(JSON.stringify(checks)).not.toContain("bmi-pw-12345");
  });

  it("fails HIL when the provisioning network does not exist, or lacks the configured channel", async () => {
    const missing = await checkOf(configFile({ network: "nope", channel: "vlan/native" }), "hil");
    expect(missing?.ok).toBe(false);
    expect(missing?.detail).toMatch(/the provisioning network nope does not exist in HIL/);
    expect(missing?.fix).toMatch(/provisioning_network exists in HIL/);
    const channel = await checkOf(configFile({ network: "prov", channel: "vlan/999" }), "hil");
    expect(channel?.ok).toBe(false);
    expect(channel?.detail).toMatch(
      /has channels vlan\/native, vlan\/300, not \[net_isolator\] channel vlan\/999/,
    );
  });
});
