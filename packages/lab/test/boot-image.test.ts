import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  bootSector,
  buildBootImage,
  DEFAULT_BOOT_IMAGE_BYTES,
  makeTempDir,
  qemuArgs,
  serialTail,
} from "../src/index.js";

describe("bootSector", () => {
  it("is one 512-byte sector with the MBR signature and the marker", () => {
    const sector = bootSector("BMI-BOOT-OK node-a");
    expect(sector.length).toBe(512);
    expect([sector[510], sector[511]]).toEqual([0x55, 0xaa]);
    expect(Buffer.from(sector).toString("latin1")).toContain("\r\nBMI-BOOT-OK node-a\r\n\0");
    // The partition table area stays zero: nothing tells a loader to look for partitions.
    expect(sector.subarray(446, 510).every((byte) => byte === 0)).toBe(true);
  });

  it("differs only in the marker text between two markers", () => {
    const a = Buffer.from(bootSector("MARK-A"));
    const b = Buffer.from(bootSector("MARK-B"));
    const diff = [...a.keys()].filter((i) => a[i] !== b[i]);
    expect(diff).toHaveLength(1);
    expect(String.fromCharCode(a[diff[0] ?? 0] ?? 0)).toBe("A");
  });

  it.each(["", "line\nbreak", "é", "x".repeat(201)])("rejects the marker %j", (marker) => {
    expect(() => bootSector(marker)).toThrow(/printable ASCII/);
  });
});

describe("buildBootImage", () => {
  it("writes a sparse raw image of the requested size whose first sector boots", async () => {
    const dir = await makeTempDir("image");
    try {
      const path = join(dir.path, "disk.raw");
      const image = await buildBootImage(path, { marker: "HELLO-1" });
      expect(image).toEqual({ path, marker: "HELLO-1", sizeBytes: DEFAULT_BOOT_IMAGE_BYTES });
      const info = await stat(path);
      expect(info.size).toBe(DEFAULT_BOOT_IMAGE_BYTES);
      expect(info.blocks * 512).toBeLessThan(1024 * 1024);
      const data = await readFile(path);
      expect(data.subarray(0, 512).equals(Buffer.from(bootSector("HELLO-1")))).toBe(true);
    } finally {
      await dir.remove();
    }
  });

  it("rejects a size that is not a multiple of 512", async () => {
    await expect(buildBootImage("/nonexistent/x.raw", { sizeBytes: 1000 })).rejects.toThrow(
      /multiple of 512/,
    );
  });
});

describe("qemuArgs", () => {
  it("boots from the network with user-mode TFTP, the node's MAC and no disk", async () => {
    const args = await qemuArgs(
      { mac: "52:54:00:aa:bb:01", tftpRoot: "/srv/tftp", bootfile: "pxelinux.0" },
      "/tmp/serial.log",
    );
    expect(args).toContain("user,id=n0,tftp=/srv/tftp,bootfile=pxelinux.0");
    expect(args).toContain("e1000,netdev=n0,mac=52:54:00:aa:bb:01");
    expect(args).toContain("file:/tmp/serial.log");
    expect(args.join(" ")).toContain("-boot n");
    expect(args.join(" ")).not.toContain("-drive");
    expect(args.join(" ")).toContain("accel=tcg");
  });

  it("refuses a comma that would add qemu options", async () => {
    await expect(
      qemuArgs(
        { mac: "52:54:00:aa:bb:01", tftpRoot: "/srv/tftp,hostfwd=tcp::22-:22", bootfile: "x" },
        "/tmp/s",
      ),
    ).rejects.toThrow(/must not contain ','/);
  });

  it("a lab node's VM: its own UUID, a console appended across boots, the boot order its BMC set", async () => {
    const args = await qemuArgs(
      {
        mac: "52:54:00:aa:bb:01",
        tftpRoot: "/srv/tftp",
        bootfile: "x",
        uuid: "b1000000-0000-4000-8000-000000000001",
        bootOrder: "c",
      },
      "/tmp/node.console.log",
      { appendSerial: true },
    );
    const line = args.join(" ");
    expect(line).toContain("-uuid b1000000-0000-4000-8000-000000000001");
    expect(line).toContain(
      "-chardev file,id=serial0,path=/tmp/node.console.log,append=on -serial chardev:serial0",
    );
    expect(line).toContain("-boot c");
    await expect(qemuArgs({ mac: "m", disk: "/d", uuid: "not-a-uuid" }, "/l")).rejects.toThrow(/bad VM uuid/);
    await expect(qemuArgs({ mac: "m", disk: "/d" }, "/l,x")).rejects.toThrow(/must not contain ','/);
  });

  it("serialTail strips iPXE's colours and countdown", () => {
    const raw = "\x1b[0;1miPXE\x1b[0m\r\nPress Ctrl-B\b \b\b \bnet0: up\r\n\r\nBMI-BOOT-OK\r\n";
    expect(serialTail(raw)).toBe("iPXE\nPress Ctrl-Bnet0: up\nBMI-BOOT-OK");
  });
});
