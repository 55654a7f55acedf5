import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BmiError, TOKENS } from "@bmi/core";
import { container } from "@bmi/core/di";
import { testBootDriver } from "@bmi/core/testing/contracts";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  createPxeBoot,
  installTftpRoot,
  type PxeBootOptions,
  parseNodeScript,
  registerPxeBoot,
  renderNodeScript,
  STATIC_BOOT_FILES,
} from "../src/index.js";

async function makeTempDir(prefix: string) {
  const path = await mkdtemp(join(tmpdir(), `bmi-${prefix}-`));
  return { path, remove: () => rm(path, { recursive: true, force: true }) };
}

/** A fresh temp dir for each test of the enclosing describe, removed after it. */
function tempDirEach(prefix: string): { readonly path: string } {
  let dir: { path: string; remove: () => Promise<void> } | undefined;
  beforeEach(async () => {
    dir = await makeTempDir(prefix);
  });
  afterEach(async () => {
    await dir?.remove();
  });
  return {
    get path() {
      if (!dir) throw new Error("tempDirEach: used outside a test");
      return dir.path;
    },
  };
}

const exists = async (path: string) => {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
};

testBootDriver({
  name: "pxe (temp TFTP root)",
  create: async () => {
    const dir = await makeTempDir("pxe");
    return {
      driver: createPxeBoot({ root: dir.path }),
      cleanup: dir.remove,
      fileExists: (path) => exists(join(dir.path, path)),
    };
  },
});

testBootDriver({
  name: "pxe (original layout: absolute ipxe_path and pxelinux_path, bootNic net2)",
  create: async () => {
    const dir = await makeTempDir("pxe");
    const driver = createPxeBoot({
      root: dir.path,
      ipxePath: `${dir.path}/`,
      pxelinuxPath: `${dir.path}/pxelinux.cfg/`,
      bootNic: "net2",
    });
    return { driver, cleanup: dir.remove, fileExists: (path) => exists(join(dir.path, path)) };
  },
});

/** The boot contract suite on a PXE driver in a temp TFTP root, with `options` besides the root. */
const testPxeContract = (name: string, options: Omit<PxeBootOptions, "root">) =>
  testBootDriver({
    name,
    create: async () => {
      const dir = await makeTempDir("pxe");
      const driver = createPxeBoot({ root: dir.path, ...options });
      return { driver, cleanup: dir.remove, fileExists: (path) => exists(join(dir.path, path)) };
    },
  });

testPxeContract("pxe (with dnsmasq host entries in dhcp-hosts/)", { dhcpHostsPath: "dhcp-hosts" });

describe("dnsmasq host entries", () => {
  const dir = tempDirEach("pxe-dhcp");
  const spec = (macs: string[]) => ({
    node: "node-07",
    macs,
    target: { name: "iqn.2026-11.org.bmi:1img7", portal: "10.0.2.2", port: 3260, lun: 1 },
    firmware: "bios" as const,
    label: "disk",
  });

  it("writes one dhcp-host line per MAC, reports the file, and removes it at remove", async () => {
    const driver = createPxeBoot({ root: dir.path, dhcpHostsPath: `${dir.path}/dhcp-hosts/` });
    const entry = await driver.write(spec(["52:54:00:AA:BB:02", "52:54:00:aa:bb:01"]));
    expect(entry.files).toContain("dhcp-hosts/node-07.hosts");
    expect(await readFile(join(dir.path, "dhcp-hosts/node-07.hosts"), "utf8")).toBe(
      "# BMI: DHCP host entries of node node-07\n52:54:00:aa:bb:01\n52:54:00:aa:bb:02\n",
    );
    await driver.remove("node-07");
    expect(await exists(join(dir.path, "dhcp-hosts/node-07.hosts"))).toBe(false);
  });

  it("lists a node that only has a host entry left, so reconcile finds it", async () => {
    const driver = createPxeBoot({ root: dir.path, dhcpHostsPath: "dhcp-hosts" });
    await driver.write(spec(["52:54:00:aa:bb:01"]));
    await rm(join(dir.path, "node-07.ipxe"));
    await rm(join(dir.path, "node-07.bmi-index"));
    await rm(join(dir.path, "pxelinux.cfg"), { recursive: true });
    await rm(join(dir.path, "ipxe-mac"), { recursive: true });
    const listed = await driver.list();
    expect(listed.map((e) => [e.node, e.files, e.macs])).toEqual([
      ["node-07", ["dhcp-hosts/node-07.hosts"], ["52:54:00:aa:bb:01"]],
    ]);
  });

  it("refuses a hosts dir shared with boot files, or outside the root", () => {
    expect(() => createPxeBoot({ root: dir.path, dhcpHostsPath: "pxelinux.cfg" })).toThrow(/dhcpHostsPath/);
    expect(() => createPxeBoot({ root: dir.path, dhcpHostsPath: "" })).toThrow(/dhcpHostsPath/);
    expect(() => createPxeBoot({ root: dir.path, dhcpHostsPath: "/etc/dnsmasq.d" })).toThrow(
      /inside the TFTP root/,
    );
  });

  it("a removal whose dnsmasq cannot be told is unavailable (retryable), and signals nothing else", async () => {
    const pidFile = join(dir.path, "dnsmasq.pid");
    await writeFile(pidFile, `${process.pid}\n`); // this test process: not a dnsmasq
    const driver = createPxeBoot({ root: dir.path, dhcpHostsPath: "dhcp-hosts", dnsmasqPidFile: pidFile });
    await driver.write(spec(["52:54:00:aa:bb:01"]));
    const error = await driver.remove("node-07").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BmiError);
    expect((error as BmiError).code).toBe("unavailable");
    expect((error as BmiError).message).toMatch(/is not dnsmasq/);
    // The entry is gone from disk; a retry finishes the rest.
    await driver.remove("node-07");
    expect(await driver.read("node-07")).toBeNull();
  });
});

testPxeContract("pxe (host entries with fixed node addresses)", {
  dhcpHostsPath: "dhcp-hosts",
  nodeAddresses: "10.247.0.10-10.247.0.99",
});

describe("fixed node addresses (issue 17.5)", () => {
  const dir = tempDirEach("pxe-addr");
  const specOf = (node: string, mac: string) => ({
    node,
    macs: [mac],
    target: { name: "iqn.2026-11.org.bmi:1img7", portal: "10.247.0.1", port: 3260, lun: 1 },
    firmware: "bios" as const,
    label: "disk",
  });
  const driverOf = (range = "10.247.0.10-10.247.0.12") =>
    createPxeBoot({ root: dir.path, dhcpHostsPath: "dhcp-hosts", nodeAddresses: range });
  const hostsOf = (node: string) => readFile(join(dir.path, `dhcp-hosts/${node}.hosts`), "utf8");

  it("writes `<mac>,<ip>` (no set: tag), keeps the address on a rewrite and frees it at remove", async () => {
    const driver = driverOf();
    const one = await driver.write(specOf("node-01", "52:54:00:17:00:01"));
    expect(one.address).toBe("10.247.0.10");
    expect(await hostsOf("node-01")).toBe(
      "# BMI: DHCP host entries of node node-01\n52:54:00:17:00:01,10.247.0.10\n",
    );
    expect(one.files).toContain("dhcp-hosts/.addr-10.247.0.10");
    const two = await driver.write(specOf("node-02", "52:54:00:17:00:02"));
    expect(two.address).toBe("10.247.0.11");
    const again = await driver.write({ ...specOf("node-01", "52:54:00:17:00:01"), firmware: "uefi" });
    expect(again.address).toBe("10.247.0.10");
    expect((await driver.read("node-01"))?.address).toBe("10.247.0.10");
    await driver.remove("node-01");
    expect(await readdir(join(dir.path, "dhcp-hosts"))).toEqual([".addr-10.247.0.11", "node-02.hosts"]);
    expect((await driver.write(specOf("node-03", "52:54:00:17:00:03"))).address).toBe("10.247.0.10");
  });

  it("two drivers on one directory (two BMI processes) never give one address to two nodes", async () => {
    const [a, b] = [driverOf(), driverOf()];
    const written = await Promise.all([
      a.write(specOf("node-01", "52:54:00:17:00:01")),
      b.write(specOf("node-02", "52:54:00:17:00:02")),
      a.write(specOf("node-03", "52:54:00:17:00:03")),
    ]);
    expect(new Set(written.map((e) => e.address)).size).toBe(3);
    const error = await b.write(specOf("node-04", "52:54:00:17:00:04")).catch((e: unknown) => e);
    expect((error as BmiError).message).toMatch(/no free node address left in 10.247.0.10-10.247.0.12/);
    expect(await b.read("node-04")).toBeNull();
  });

  it("lists an address claim left without its host entry (for reconcile)", async () => {
    const driver = driverOf();
    await driver.write(specOf("node-01", "52:54:00:17:00:01"));
    for (const file of ["node-01.ipxe", "node-01.bmi-index", "dhcp-hosts/node-01.hosts"]) {
      await rm(join(dir.path, file));
    }
    await rm(join(dir.path, "pxelinux.cfg"), { recursive: true });
    await rm(join(dir.path, "ipxe-mac"), { recursive: true });
    const listed = await driver.list();
    expect(listed.map((e) => [e.node, e.files])).toEqual([["node-01", ["dhcp-hosts/.addr-10.247.0.10"]]]);
    await driver.remove("node-01");
    expect(await driver.list()).toEqual([]);
  });

  it("refuses addresses without host entries, and a bad range", () => {
    expect(() => createPxeBoot({ root: dir.path, nodeAddresses: "10.247.0.10-10.247.0.12" })).toThrow(
      /nodeAddresses: needs dhcpHostsPath/,
    );
    expect(() => driverOf("10.247.0.10-10.247.1.12")).toThrow(/one \/24/);
  });
});

const target = { name: "iqn.2026-11.org.bmi:1img7", portal: "10.0.2.2", port: 3261, lun: 1 };
const spec = {
  node: "node-07",
  macs: ["52:54:00:AA:BB:01"],
  target,
  firmware: "bios" as const,
  label: "centos7-disk",
};

describe("createPxeBoot files", () => {
  let root: string;
  let remove: () => Promise<void>;
  beforeEach(async () => {
    ({ path: root, remove } = await makeTempDir("pxe"));
  });
  afterEach(async () => {
    await remove();
  });

  it("writes the node script iPXE can sanboot, mode 0755", async () => {
    await createPxeBoot({ root }).write(spec);
    const path = join(root, "node-07.ipxe");
    expect(await readFile(path, "utf8")).toBe(
      [
        "#!ipxe",
        "      set keep-san 1",
        "      dhcp",
        "      sanboot --keep iscsi:10.0.2.2::3261:1:iqn.2026-11.org.bmi:1img7",
        "      boot",
        "",
      ].join("\n"),
    );
    expect((await stat(path)).mode & 0o777).toBe(0o755);
  });

  it("configures the given NIC when bootNic is set, as the original's net2", async () => {
    await createPxeBoot({ root, bootNic: "net2" }).write(spec);
    expect(await readFile(join(root, "node-07.ipxe"), "utf8")).toContain(
      "      ifconf --configurator=dhcp net2\n",
    );
  });

  it("writes the LUN in hexadecimal, as iPXE reads it", () => {
    const text = renderNodeScript({ ...target, lun: 26 }, { bootNic: null });
    expect(text).toContain("iscsi:10.0.2.2::3261:1a:iqn.2026-11.org.bmi:1img7");
    expect(parseNodeScript(text)).toEqual({ ...target, lun: 26 });
  });

  it("writes the per-MAC pxelinux file of §4.4 with a lower-case name, mode 0644", async () => {
    await createPxeBoot({ root }).write(spec);
    const path = join(root, "pxelinux.cfg", "01-52-54-00-aa-bb-01");
    expect(await readFile(path, "utf8")).toBe(
      [
        "DEFAULT menu",
        "  PROMPT 0",
        "  MENU TITLE PXE Menu",
        "  TIMEOUT 30",
        "  ONTIMEOUT centos7-disk",
        "",
        "",
        "LABEL centos7-disk",
        "     MENU LABEL centos7-disk",
        "     KERNEL ipxe.lkrn",
        "     INITRD node-07.ipxe",
        "",
      ].join("\n"),
    );
    expect((await stat(path)).mode & 0o777).toBe(0o644);
  });

  it("names the script by its path under the root when ipxePath is a sub-directory", async () => {
    await createPxeBoot({ root, ipxePath: "scripts" }).write(spec);
    expect(await readFile(join(root, "pxelinux.cfg", "01-52-54-00-aa-bb-01"), "utf8")).toContain(
      "INITRD scripts/node-07.ipxe",
    );
    expect(await readFile(join(root, "ipxe-mac", "52-54-00-aa-bb-01.ipxe"), "utf8")).toContain(
      "chain --autofree /scripts/node-07.ipxe",
    );
  });

  it("UEFI nodes get a per-MAC iPXE entry and no pxelinux file", async () => {
    const entry = await createPxeBoot({ root }).write({ ...spec, firmware: "uefi" });
    expect(entry.files).toEqual(["ipxe-mac/52-54-00-aa-bb-01.ipxe", "node-07.bmi-index", "node-07.ipxe"]);
    expect(await exists(join(root, "pxelinux.cfg", "01-52-54-00-aa-bb-01"))).toBe(false);
    expect(await readFile(join(root, "ipxe-mac", "52-54-00-aa-bb-01.ipxe"), "utf8")).toMatch(
      /^#!ipxe\n[^\n]*\nchain --autofree \/node-07\.ipxe\n$/,
    );
  });

  it("reads and removes files the original BMI wrote (upper-case MAC, :tcp:3260:)", async () => {
    await writeFile(
      join(root, "node-07.ipxe"),
      "#!ipxe\n      set keep-san 1\n      ifconf --configurator=dhcp net2\n      sanboot --keep iscsi:10.0.0.5:tcp:3260:1:1img13\n      boot\n",
    );
    await mkdir(join(root, "pxelinux.cfg"));
    const legacy = join(root, "pxelinux.cfg", "01-00-1A-2B-3C-4D-5E");
    await writeFile(legacy, "DEFAULT menu\nLABEL disk\n     KERNEL ipxe.lkrn\n     INITRD node-07.ipxe\n");
    const driver = createPxeBoot({ root });
    expect(await driver.read("node-07")).toEqual({
      node: "node-07",
      macs: ["00:1a:2b:3c:4d:5e"],
      target: { name: "1img13", portal: "10.0.0.5", port: 3260, lun: 1 },
      firmware: "bios",
      files: ["node-07.ipxe", "pxelinux.cfg/01-00-1A-2B-3C-4D-5E"],
    });
    await driver.remove("node-07");
    expect(await exists(legacy)).toBe(false);
    expect(await driver.list()).toEqual([]);
  });

  it("keeps a per-node index of its per-MAC files beside the script, and removes it last", async () => {
    const driver = createPxeBoot({ root });
    await driver.write({ ...spec, macs: ["52:54:00:aa:bb:01", "52:54:00:aa:bb:02"] });
    const index = JSON.parse(await readFile(join(root, "node-07.bmi-index"), "utf8"));
    expect(index).toEqual({
      node: "node-07",
      files: [
        "ipxe-mac/52-54-00-aa-bb-01.ipxe",
        "ipxe-mac/52-54-00-aa-bb-02.ipxe",
        "pxelinux.cfg/01-52-54-00-aa-bb-01",
        "pxelinux.cfg/01-52-54-00-aa-bb-02",
      ],
    });
    await driver.write(spec);
    expect(JSON.parse(await readFile(join(root, "node-07.bmi-index"), "utf8")).files).toEqual([
      "ipxe-mac/52-54-00-aa-bb-01.ipxe",
      "pxelinux.cfg/01-52-54-00-aa-bb-01",
    ]);
    // A removal cut short after the script (the index is left) is finished by the next one.
    await rm(join(root, "node-07.ipxe"));
    await driver.remove("node-07");
    expect(await readdir(join(root, "pxelinux.cfg"))).toEqual([]);
    expect(await readdir(join(root, "ipxe-mac"))).toEqual([]);
    expect(await exists(join(root, "node-07.bmi-index"))).toBe(false);
  });

  it("a MAC entry the original BMI wrote for another node (upper-case name) is still a conflict", async () => {
    await writeFile(join(root, "node-a.ipxe"), renderNodeScript(target, { bootNic: "net2" }));
    await mkdir(join(root, "pxelinux.cfg"));
    await writeFile(
      join(root, "pxelinux.cfg", "01-52-54-00-AA-BB-01"),
      "DEFAULT menu\nLABEL disk\n     KERNEL ipxe.lkrn\n     INITRD node-a.ipxe\n",
    );
    const driver = createPxeBoot({ root });
    const error = await driver.write(spec).catch((caught: unknown) => caught);
    expect((error as BmiError).code).toBe("conflict");
    expect((error as BmiError).message).toContain("node-a");
    expect(await driver.read("node-07")).toBeNull();
  });

  it("re-writing a node the original BMI wrote indexes it and drops its upper-case entry", async () => {
    await writeFile(join(root, "node-07.ipxe"), renderNodeScript(target, { bootNic: "net2" }));
    await mkdir(join(root, "pxelinux.cfg"));
    const legacy = join(root, "pxelinux.cfg", "01-52-54-00-AA-BB-01");
    await writeFile(legacy, "DEFAULT menu\nLABEL disk\n     KERNEL ipxe.lkrn\n     INITRD node-07.ipxe\n");
    const driver = createPxeBoot({ root });
    const entry = await driver.write(spec);
    expect(await exists(legacy)).toBe(false);
    expect(entry.files).toEqual([
      "ipxe-mac/52-54-00-aa-bb-01.ipxe",
      "node-07.bmi-index",
      "node-07.ipxe",
      "pxelinux.cfg/01-52-54-00-aa-bb-01",
    ]);
    await driver.remove("node-07");
    expect(await driver.list()).toEqual([]);
  });

  it("finds files the original BMI wrote after the driver started (its script is there)", async () => {
    const driver = createPxeBoot({ root });
    expect(await driver.read("node-07")).toBeNull();
    await writeFile(join(root, "node-07.ipxe"), renderNodeScript(target, { bootNic: "net2" }));
    await mkdir(join(root, "pxelinux.cfg"));
    const legacy = join(root, "pxelinux.cfg", "01-00-1A-2B-3C-4D-5E");
    await writeFile(legacy, "DEFAULT menu\nLABEL disk\n     KERNEL ipxe.lkrn\n     INITRD node-07.ipxe\n");
    expect((await driver.read("node-07"))?.macs).toEqual(["00:1a:2b:3c:4d:5e"]);
    await driver.remove("node-07");
    expect(await exists(legacy)).toBe(false);
  });

  it("an index naming files outside the per-MAC directories is ignored, and nothing else is removed", async () => {
    const driver = createPxeBoot({ root });
    await driver.write(spec);
    await writeFile(join(root, "keep.txt"), "mine\n");
    await writeFile(
      join(root, "node-07.bmi-index"),
      JSON.stringify({ node: "node-07", files: ["keep.txt"] }),
    );
    await driver.remove("node-07");
    expect(await readFile(join(root, "keep.txt"), "utf8")).toBe("mine\n");
    expect(await driver.list()).toEqual([]);
  });

  it("leaves files that are not BMI entries alone", async () => {
    await mkdir(join(root, "pxelinux.cfg"));
    await writeFile(join(root, "pxelinux.cfg", "default"), "DEFAULT local\n");
    await writeFile(join(root, "menu.ipxe"), "#!ipxe\nmenu Pick one\n");
    const driver = createPxeBoot({ root });
    await driver.write(spec);
    expect((await driver.list()).map((entry) => entry.node)).toEqual(["node-07"]);
    await driver.remove("node-07");
    expect(await readFile(join(root, "pxelinux.cfg", "default"), "utf8")).toBe("DEFAULT local\n");
    expect(await exists(join(root, "menu.ipxe"))).toBe(true);
  });

  it("leaves no temp files behind", async () => {
    const driver = createPxeBoot({ root });
    await driver.write(spec);
    await driver.write({ ...spec, target: { ...target, name: "1img8" } });
    const names = await readdir(root, { recursive: true });
    expect(names.filter((name) => name.includes(".tmp-"))).toEqual([]);
  });

  it.each([
    [{ root: "relative/dir" }, "options.root"],
    [{ root: "/srv/tftp", ipxePath: "/etc" }, "ipxePath"],
    [{ root: "/srv/tftp", pxelinuxPath: "../pxelinux.cfg" }, "pxelinuxPath"],
    [{ root: "/srv/tftp", bootNic: "eth0; shell" }, "options.bootNic"],
    [{ root: "/srv/tftp", ipxeKernel: "../../vmlinuz" }, "options.ipxeKernel"],
  ])("rejects bad options %j naming the option", (options, field) => {
    let error: unknown;
    try {
      createPxeBoot(options);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(BmiError);
    expect((error as BmiError).code).toBe("invalid_input");
    expect((error as BmiError).details.field).toBe(field);
  });

  it("a failed first write leaves none of the node's files", async () => {
    // A file where the pxelinux directory should be (tests run as root, so modes would not stop us).
    await writeFile(join(root, "pxelinux.cfg"), "not a directory");
    const driver = createPxeBoot({ root });
    const error = await driver.write(spec).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(BmiError);
    expect((error as BmiError).subsystem).toBe("boot");
    expect((error as BmiError).message).toContain("pxelinux.cfg/01-52-54-00-aa-bb-01");
    expect(await exists(join(root, "node-07.ipxe"))).toBe(false);
  });

  it("registerPxeBoot puts the driver in the container", async () => {
    const child = container.createChildContainer();
    const driver = registerPxeBoot(child, { root });
    expect(child.resolve(TOKENS.boot)).toBe(driver);
  });
});

describe("installTftpRoot", () => {
  it("copies the boot loaders from Debian's packages and writes the dispatcher", async () => {
    const dir = await makeTempDir("tftp");
    try {
      const result = await installTftpRoot({ root: dir.path });
      expect(result.dispatcher).toBe("ipxe-mac/boot.ipxe");
      for (const file of STATIC_BOOT_FILES) {
        expect((await stat(join(dir.path, file.name))).size, file.name).toBeGreaterThan(0);
      }
      const pxelinux = await readFile(join(dir.path, "pxelinux.0"));
      expect(pxelinux.equals(await readFile("/usr/lib/PXELINUX/pxelinux.0"))).toBe(true);
      expect(await readFile(join(dir.path, "ipxe-mac", "boot.ipxe"), "utf8")).toContain(
        "chain --autofree $" + "{netX/mac:hexhyp}.ipxe",
      );
    } finally {
      await dir.remove();
    }
  });

  it("names the Debian package when a loader is missing", async () => {
    const dir = await makeTempDir("tftp");
    try {
      const error = await installTftpRoot({
        root: dir.path,
        files: [{ name: "x.efi", sources: ["/nonexistent/x.efi"], debianPackage: "ipxe", purpose: "uefi" }],
      }).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(BmiError);
      expect((error as BmiError).code).toBe("not_found");
      expect((error as BmiError).message).toContain("Debian package ipxe");
    } finally {
      await dir.remove();
    }
  });
});
