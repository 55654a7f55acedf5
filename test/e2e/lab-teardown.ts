import type { BmiLab } from "@bmi/lab";
import { expect } from "vitest";

/**
 * What an e2e file's afterAll does with its lab: undo whatever a failed case left (every node
 * deprovisioned and powered off with its disk deleted, snapshots, disks, then the golden images),
 * check that nothing BMI made is left, and stop the lab even when that check fails.
 */
export async function tearDownLab(lab: BmiLab | undefined, goldenImages: readonly string[]): Promise<void> {
  if (!lab) return;
  const { bmi, project } = lab;
  try {
    for (const node of lab.nodes) {
      await bmi
        .deprovision({ project, node: node.name, deleteDisk: true, powerOff: true })
        .catch(() => undefined);
    }
    for (const snapshot of await bmi.listSnapshots({ project }))
      await bmi.removeImage({ project, image: snapshot.image.name }).catch(() => undefined);
    for (const disk of await bmi.listDisks({ project }))
      await bmi.deleteDisk({ project, disk: disk.name, force: true }).catch(() => undefined);
    for (const image of goldenImages) await bmi.removeImage({ project, image }).catch(() => undefined);
    expect(await lab.leftovers()).toEqual({ images: [], targets: [], bootFiles: [] });
  } finally {
    await lab.stop();
  }
}
