/**
 * Issue 21 point 2 on the real lab: `bmi image upload` turns a raw or qcow2 file of this host into
 * a golden image in Ceph in one step (through the configured storage back end), checksummed;
 * a refused upload leaves nothing in Ceph or the database.
 */
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { EXIT, run } from "@bmi/cli";
import { textSink } from "@bmi/core/testing";
import { type BmiLab, buildBootImage, startBmiLab } from "@bmi/lab";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";

let lab: BmiLab;
let raw: string;
let qcow2: string;

async function bmi(...args: string[]) {
  const out = textSink();
  const code = await run(["--config", lab.configPath, "--json", ...args], {
    stdout: out.stream,
    stderr: textSink().stream,
    env: {},
  });
  return { code, json: JSON.parse(out.text()) };
}

/** This lab's RBD images, by the lab's own naming rule: other test files may share the pool. */
const labImages = async () => (await lab.leftovers()).images;

beforeAll(async () => {
  lab = await startBmiLab({ ceph: inject("ceph"), nodes: 1, hilActionDelayMs: 5 });
  raw = (await buildBootImage(join(lab.dir, "upload.raw"), { marker: "UPLOADED" })).path;
  qcow2 = join(lab.dir, "upload.qcow2");
  await execa("qemu-img", ["convert", "-f", "raw", "-O", "qcow2", raw, qcow2]);
}, 180_000);

afterAll(async () => {
  try {
    for (const image of ["from-raw", "from-qcow2"])
      await lab?.bmi.removeImage({ project: lab.project, image }).catch(() => undefined);
    expect(await lab.leftovers()).toEqual({ images: [], targets: [], bootFiles: [] });
  } finally {
    await lab?.stop();
  }
}, 180_000);

describe("bmi image upload", () => {
  it("uploads a raw file and a qcow2 file as golden images holding the same bytes", async () => {
    const sha = createHash("sha256")
      .update(await readFile(raw))
      .digest("hex");
    const fromRaw = await bmi("image", "upload", lab.project, raw, "from-raw", "--sha256", sha);
    expect(fromRaw.code).toBe(EXIT.ok);
    expect(fromRaw.json).toMatchObject({ name: "from-raw", kind: "golden", format: "raw", sha256: sha });
    const fromQcow2 = await bmi("image", "upload", lab.project, qcow2, "from-qcow2");
    expect(fromQcow2.code).toBe(EXIT.ok);
    expect(fromQcow2.json.format).toBe("qcow2");
    for (const image of [fromRaw.json, fromQcow2.json]) {
      const out = join(lab.dir, `${image.name}.back.raw`);
      await lab.drivers.storage.exportFile?.(image.cephName, out);
      expect(
        createHash("sha256")
          .update(await readFile(out))
          .digest("hex"),
      ).toBe(sha);
    }
    // Usable at once: a disk is cloned from it.
    const disk = await lab.bmi.createDisk({ project: lab.project, image: "from-qcow2", disk: "up-disk" });
    expect(disk.name).toBe("up-disk");
    await lab.bmi.deleteDisk({ project: lab.project, disk: "up-disk" });
  });

  it("a wrong checksum is refused (invalid input) and nothing is made", async () => {
    const before = await labImages();
    const refused = await bmi("image", "upload", lab.project, raw, "bad", "--sha256", "f".repeat(64));
    expect(refused.code).toBe(EXIT.usage);
    expect(refused.json.error).toMatchObject({ code: "invalid_input" });
    expect(await labImages()).toEqual(before);
    expect((await lab.bmi.listImages({ project: lab.project })).map((i) => i.name)).not.toContain("bad");
  });
});
