// Counts file-system calls: write/remove/read of one node must not grow with the number of nodes.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { createPxeBoot, type PxeBoot } from "../src/index.js";

const calls = vi.hoisted(() => ({ readdir: 0, readFile: 0 }));

vi.mock("node:fs/promises", async (importOriginal) => {
  const fs = await importOriginal<typeof import("node:fs/promises")>();
  return {
    ...fs,
    readdir: (...args: Parameters<typeof fs.readdir>) => {
      calls.readdir++;
      return fs.readdir(...args);
    },
    readFile: (...args: Parameters<typeof fs.readFile>) => {
      calls.readFile++;
      return fs.readFile(...args);
    },
  };
});

const macOf = (i: number) =>
  `52:54:00:00:${(i >> 8).toString(16).padStart(2, "0")}:${(i & 255).toString(16).padStart(2, "0")}`;
const specOf = (i: number) => ({
  node: `node-${i}`,
  macs: [macOf(i)],
  target: { name: `iqn.2026-11.org.bmi:1img${i}`, portal: "10.0.2.2", port: 3260, lun: 1 },
  firmware: "bios" as const,
  label: `disk-${i}`,
});

describe("createPxeBoot cost per node", () => {
  let root: string;
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), "bmi-pxe-scale-"));
  });
  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  /** File reads and directory listings of one write + read + remove among `others` nodes. */
  async function costAmong(others: number) {
    const driver: PxeBoot = createPxeBoot({ root: join(root, String(others)) });
    for (let i = 0; i < others; i++) await driver.write(specOf(i));
    calls.readdir = 0;
    calls.readFile = 0;
    await driver.write(specOf(others));
    expect((await driver.read(`node-${others}`))?.macs).toEqual([macOf(others)]);
    await driver.remove(`node-${others}`);
    expect(await driver.read(`node-${others}`)).toBeNull();
    return { ...calls };
  }

  it("write, read and remove read the same few files with 3 or 60 other nodes, and list nothing", async () => {
    const few = await costAmong(3);
    const many = await costAmong(60);
    expect(few.readFile).toBeGreaterThan(0);
    expect(many).toEqual(few);
    expect(many.readdir).toBe(0);
    expect(many.readFile).toBeLessThanOrEqual(20);
    // list() still scans: it sees every node.
    expect(await createPxeBoot({ root: join(root, "60") }).list()).toHaveLength(60);
  });
});
