/** What the original create_disk route answers, by target naming (issue 21.4). */
import { createMemoryBmi } from "@bmi/core/testing";
import { describe, expect, it } from "vitest";
import { ROUTES } from "../src/index.js";

const createDisk = ROUTES.find((r) => r.path === "/create_disk");

async function answer(naming: "bare" | { iqnPrefix: string }) {
  const { bmi, storage } = createMemoryBmi({
    isolation: { nodes: [] },
    settings: {
      iscsi: { portal: "127.0.0.1", port: 3260, lun: 1, naming, access: { initiators: "ALL" } },
    },
  });
  await bmi.createProject({ name: "p1" });
  await storage.create("centos7", 4 * 1024 * 1024);
  await bmi.importImage({ project: "p1", source: "centos7", name: "golden" });
  const value = await createDisk?.handle(
    bmi,
    "p1",
    { disk_name: "d1", img: "golden" },
    {
      signal: new AbortController().signal,
    },
  );
  const disk = (await bmi.listDisks({ project: "p1" }))[0];
  return { value, disk };
}

describe("PUT /create_disk", () => {
  it("answers the iSCSI target's name with [iscsi] bare_target_names (the clone's RBD name, as the original)", async () => {
    const { value, disk } = await answer("bare");
    expect(value).toBe(disk?.target?.name);
    expect(value).toBe(disk?.cephName);
  });

  it("answers the clone's RBD name with IQN target names; the target is <prefix>:<that name>", async () => {
    const { value, disk } = await answer({ iqnPrefix: "iqn.2026-11.org.bmi" });
    expect(value).toBe(disk?.cephName);
    expect(disk?.target?.name).toBe(`iqn.2026-11.org.bmi:${value}`);
  });
});
