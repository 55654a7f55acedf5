import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterEach, describe, expect, it } from "vitest";
import { setup, thrown } from "./ops-helpers.js";

// Issue 21 point 2: a file on this host becomes a golden image in one step.
const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});
async function rawFile(bytes = 1024 * 1024): Promise<{ dir: string; file: string; data: Buffer }> {
  const dir = await mkdtemp(join(tmpdir(), "bmi-upload-test-"));
  dirs.push(dir);
  const data = Buffer.alloc(bytes);
  data.write("BMI upload test sector", 0);
  const file = join(dir, "disk.raw");
  await writeFile(file, data);
  return { dir, file, data };
}
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

describe("uploadImage", () => {
  it("a raw file becomes a golden image with its clone-source snapshot, and its checksum", async () => {
    const { bmi, storage } = await setup({ golden: false });
    const { file, data } = await rawFile();
    const image = await bmi.uploadImage({ project: "p1", file, name: "up", sha256: sha(data) });
    expect(image).toMatchObject({ name: "up", kind: "golden", format: "raw", sha256: sha(data) });
    expect((await storage.info(image.cephName)).sizeBytes).toBe(data.length);
    expect((await storage.listSnapshots(image.cephName)).map((s) => [s.name, s.protected])).toEqual([
      ["bmi_created_snapshot", true],
    ]);
    // A disk can be cloned from it at once.
    await expect(bmi.createDisk({ project: "p1", image: "up", disk: "d" })).resolves.toMatchObject({
      name: "d",
    });
  });

  it("a qcow2 file is converted by qemu-img: the image holds the raw content", async () => {
    const { bmi, storage } = await setup({ golden: false });
    const { dir, file, data } = await rawFile();
    const qcow2 = join(dir, "disk.qcow2");
    await execa("qemu-img", ["convert", "-f", "raw", "-O", "qcow2", file, qcow2]);
    const image = await bmi.uploadImage({ project: "p1", file: qcow2, name: "q" });
    expect(image.format).toBe("qcow2");
    const out = join(dir, "back.raw");
    await storage.exportFile(image.cephName, out);
    expect(sha(await readFile(out))).toBe(sha(data));
  });

  it("a checksum mismatch, a missing file or a relative path is refused and nothing is left", async () => {
    const { bmi, storage } = await setup({ golden: false });
    const { file } = await rawFile();
    const before = await storage.list();
    const mismatch = await thrown(() =>
      bmi.uploadImage({ project: "p1", file, name: "x", sha256: "0".repeat(64) }),
    );
    expect(mismatch).toMatchObject({ code: "invalid_input" });
    expect(mismatch.message).toMatch(/not the expected 0{64}/);
    expect(
      (await thrown(() => bmi.uploadImage({ project: "p1", file: `${file}.nope`, name: "x" }))).code,
    ).toBe("not_found");
    const relative = await thrown(() => bmi.uploadImage({ project: "p1", file: "disk.raw", name: "x" }));
    expect(relative).toMatchObject({ code: "invalid_input" });
    expect(relative.message).toMatch(/file.*absolute path/);
    expect(await storage.list()).toEqual(before);
    expect((await bmi.listImages({ project: "p1" })).map((i) => i.name)).not.toContain("x");
  });

  it("a failed import is undone: no row, no RBD image", async () => {
    const { bmi, storage } = await setup({ golden: false });
    const { file } = await rawFile();
    storage.failNext("createSnapshot");
    await expect(bmi.uploadImage({ project: "p1", file, name: "y" })).rejects.toMatchObject({
      code: "unavailable",
    });
    expect((await bmi.listImages({ project: "p1" })).map((i) => i.name)).not.toContain("y");
    expect(await storage.list()).toEqual([]);
  });
});
