import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { describe, expect, it } from "vitest";
import {
  buildDebianImage,
  debianImageKey,
  FW_CFG_RUN,
  isAlive,
  parseOsLine,
  publishEntry,
  qemuArgs,
  removeBuildDir,
  runBuildStep,
  waitFor,
} from "../src/index.js";

const mirror = "http://deb.debian.org/debian";

describe("debian image recipe", () => {
  it("keys the cache by the recipe: same options same key, another size another key", async () => {
    const a = await debianImageKey({ cacheDir: "/a", mirror });
    expect(await debianImageKey({ cacheDir: "/b", mirror })).toBe(a);
    expect(await debianImageKey({ cacheDir: "/a", mirror, sizeMiB: 768 })).not.toBe(a);
    expect(await debianImageKey({ cacheDir: "/a", mirror: "http://mirror.example/debian" })).not.toBe(a);
  });

  it.each([
    [{ cacheDir: "" }, /cacheDir/],
    [{ cacheDir: "/c", mirror: "not a url" }, /mirror/],
    [{ cacheDir: "/c", sizeMiB: 4096 }, /sizeMiB/],
  ])("rejects %j before building anything", async (options, message) => {
    await expect(buildDebianImage(options)).rejects.toThrow(message);
  });
});

describe("runBuildStep", () => {
  // The step's shell starts a background child (as debootstrap's dpkg runs) and prints its pid.
  const withChild = (then: string) => ["-c", `sleep 300 >/dev/null 2>&1 & echo child=$!; ${then}`];
  const childOf = (error: unknown) => Number(/child=(\d+)/.exec(String(error))?.[1]);

  it.each([
    ["times out", withChild("sleep 300"), /: timed out after 300 ms\n/],
    ["fails", withChild("exit 3"), /: exit 3\n/],
  ])(
    "kills the step's whole process group when it %s, not only its top process",
    async (_, args, message) => {
      const error = await runBuildStep("test", "sh", args, 300).catch((e: unknown) => e);
      expect(String(error)).toMatch(message);
      const child = childOf(error);
      expect(child).toBeGreaterThan(1);
      await waitFor(`the step's child ${child} to be gone`, async () => !(await isAlive(child)), {
        timeoutMs: 10_000,
      });
    },
  );

  it("returns the step's stdout when it succeeds", async () => {
    expect(await runBuildStep("test", "sh", ["-c", "echo ok"], 10_000)).toBe("ok");
  });
});

describe("parseOsLine", () => {
  it("reads the fields the image prints, not systemd's echo of the unit description", () => {
    const serial = [
      "[  OK  ] Starting bmi-os-line.service - BMI OS line on ttyS0...",
      'BMI-OS os="Debian GNU/Linux 12 (bookworm)" root="/dev/sda1" target="iqn.2010-04.org.bmi:x" session="10.0.2.2:3260,1 iqn.2010-04.org.bmi:x" userspaceMs=61234 uptime=80.1',
    ].join("\r\n");
    expect(parseOsLine(serial)).toEqual({
      os: "Debian GNU/Linux 12 (bookworm)",
      root: "/dev/sda1",
      target: "iqn.2010-04.org.bmi:x",
      session: "10.0.2.2:3260,1 iqn.2010-04.org.bmi:x",
      userspaceMs: 61234,
    });
    expect(parseOsLine("Starting BMI-OS line")).toBeNull();
  });
});

describe("qemuArgs fw_cfg", () => {
  it("passes host files as fw_cfg entries and refuses names outside opt/ or commas in paths", async () => {
    const args = await qemuArgs(
      { mac: "52:54:00:00:00:01", disk: "/d.raw", fwCfgFiles: { [FW_CFG_RUN]: "/s.sh" } },
      "/l",
    );
    expect(args.join(" ")).toContain(`-fw_cfg name=${FW_CFG_RUN},file=/s.sh`);
    await expect(qemuArgs({ mac: "m", disk: "/d", fwCfgFiles: { "etc/x": "/s" } }, "/l")).rejects.toThrow(
      /fw_cfg/,
    );
    await expect(qemuArgs({ mac: "m", disk: "/d", fwCfgFiles: { "opt/x": "/a,b" } }, "/l")).rejects.toThrow(
      /fw_cfg/,
    );
  });
});

describe("removeBuildDir", () => {
  it("unmounts what a killed debootstrap left mounted in the tree before removing it, so the host's files stay", async () => {
    const scratch = await mkdtemp(join(tmpdir(), "bmi-builddir-"));
    try {
      const host = join(scratch, "host-dir");
      await mkdir(host);
      await writeFile(join(host, "precious"), "keep me");
      const build = join(scratch, "debian-x.partial-1");
      const mountPoint = join(build, "tree", "proc");
      await mkdir(mountPoint, { recursive: true });
      await execa("mount", ["--bind", host, mountPoint]);
      await removeBuildDir(build);
      expect(existsSync(build)).toBe(false);
      expect(await readFile(join(host, "precious"), "utf8")).toBe("keep me");
      expect(await readFile("/proc/mounts", "utf8")).not.toContain(mountPoint);
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  });
});

describe("publishEntry", () => {
  it("moves a finished build into place, but never over an entry another build completed first", async () => {
    const scratch = await mkdtemp(join(tmpdir(), "bmi-publish-"));
    try {
      const entry = join(scratch, "debian-k");
      const first = join(scratch, "debian-k.partial-1");
      const second = join(scratch, "debian-k.partial-2");
      const builds: [string, string][] = [
        [first, "first"],
        [second, "second"],
      ];
      for (const [dir, who] of builds) {
        await mkdir(dir, { recursive: true });
        await writeFile(join(dir, "manifest.json"), who);
      }
      expect(await publishEntry(first, entry)).toBe(true);
      expect(await publishEntry(second, entry)).toBe(false);
      expect(await readFile(join(entry, "manifest.json"), "utf8")).toBe("first");
      expect(existsSync(first)).toBe(false);
      expect(existsSync(second)).toBe(false);
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  });
});
