import { describe, expect, it } from "vitest";
import { qemuArgs } from "../src/qemu.js";

describe("qemuArgs for a local disk", () => {
  it("boots a qcow2 overlay with a user-mode NIC when asked, and no network otherwise", async () => {
    const withNic = await qemuArgs(
      { mac: "52:54:00:b2:00:01", disk: "/o.qcow2", diskFormat: "qcow2", diskNic: true },
      "/l",
    );
    expect(withNic.join(" ")).toContain("-drive file=/o.qcow2,format=qcow2,if=ide -boot c");
    expect(withNic.join(" ")).toContain("-netdev user,id=n0 -device e1000,netdev=n0,mac=52:54:00:b2:00:01");
    expect(withNic).not.toContain("-net");
    const bare = await qemuArgs({ mac: "m", disk: "/d.raw" }, "/l");
    expect(bare.join(" ")).toContain("-drive file=/d.raw,format=raw,if=ide -boot c -net none");
  });

  it("refuses a disk path with a comma (it would add qemu options)", async () => {
    await expect(qemuArgs({ mac: "m", disk: "/d,format=qcow2" }, "/l")).rejects.toThrow(
      /must not contain ','/,
    );
  });
});
