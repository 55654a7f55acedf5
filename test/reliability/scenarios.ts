import type { Bmi } from "@bmi/core";
import type { BmiLab } from "@bmi/lab";

export const OTHER_PROJECT = "other";

/** One operation under test: `setup` brings the lab from the base state to its precondition. */
export interface Scenario {
  name: string;
  setup(bmi: Bmi, lab: BmiLab): Promise<unknown>;
  run(bmi: Bmi, lab: BmiLab): Promise<unknown>;
}

const node = (lab: BmiLab) => lab.nodes[0]?.name as string;

export const SCENARIOS: Scenario[] = [
  {
    name: "create disk",
    setup: async () => {},
    run: (bmi, lab) => bmi.createDisk({ project: lab.project, image: "golden", disk: "d1" }),
  },
  {
    name: "delete disk",
    setup: (bmi, lab) => bmi.createDisk({ project: lab.project, image: "golden", disk: "d1" }),
    run: (bmi, lab) => bmi.deleteDisk({ project: lab.project, disk: "d1" }),
  },
  {
    name: "provision from image",
    setup: async () => {},
    run: (bmi, lab) => bmi.provision({ project: lab.project, node: node(lab), disk: "d1", image: "golden" }),
  },
  {
    name: "provision existing disk",
    setup: (bmi, lab) => bmi.createDisk({ project: lab.project, image: "golden", disk: "d1" }),
    run: (bmi, lab) => bmi.provision({ project: lab.project, node: node(lab), disk: "d1" }),
  },
  {
    name: "deprovision",
    setup: (bmi, lab) =>
      bmi.provision({ project: lab.project, node: node(lab), disk: "d1", image: "golden" }),
    run: (bmi, lab) => bmi.deprovision({ project: lab.project, node: node(lab) }),
  },
  {
    name: "deprovision with deleteDisk",
    setup: (bmi, lab) =>
      bmi.provision({ project: lab.project, node: node(lab), disk: "d1", image: "golden" }),
    run: (bmi, lab) => bmi.deprovision({ project: lab.project, node: node(lab), deleteDisk: true }),
  },
  {
    name: "snapshot",
    setup: (bmi, lab) => bmi.createDisk({ project: lab.project, image: "golden", disk: "d1" }),
    run: (bmi, lab) => bmi.snapshotDisk({ project: lab.project, disk: "d1", snapshot: "s1" }),
  },
  {
    name: "copy",
    setup: async () => {},
    run: (bmi, lab) =>
      bmi.copyImage({ project: lab.project, image: "golden", destProject: OTHER_PROJECT, destName: "c1" }),
  },
  {
    name: "move",
    setup: (bmi, lab) =>
      bmi.copyImage({ project: lab.project, image: "golden", destProject: lab.project, destName: "m1" }),
    run: (bmi, lab) =>
      bmi.moveImage({ project: lab.project, image: "m1", destProject: OTHER_PROJECT, destName: "m1" }),
  },
];

/**
 * Brings the lab back to its base state (the golden image in the lab's project, nothing else)
 * through the lab's own fault-free BMI: nodes deprovisioned with their disks, disks deleted,
 * every other image removed.
 */
export async function resetLab(lab: BmiLab, keep: string[] = ["golden"]): Promise<void> {
  const { bmi } = lab;
  for (const p of bmi.listProvisionings())
    await bmi.deprovision({ project: p.project, node: p.node, deleteDisk: true });
  for (const project of bmi.listProjects()) {
    for (const disk of bmi.listDisks({ project: project.name }))
      await bmi.deleteDisk({ project: project.name, disk: disk.name, force: true });
  }
  // Snapshots and copies before the images they came from.
  const images = bmi
    .listAllImages()
    .filter((i) => !(i.projectId === projectId(bmi, lab.project) && keep.includes(i.name)))
    .sort((a, b) => b.id - a.id);
  for (const image of images) {
    const project = bmi.listProjects().find((p) => p.id === image.projectId)?.name as string;
    await bmi.removeImage({ project, image: image.name });
  }
}

const projectId = (bmi: Bmi, name: string) => bmi.listProjects().find((p) => p.name === name)?.id;
