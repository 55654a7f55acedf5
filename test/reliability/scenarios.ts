import type { Bmi } from "@bmi/core";
import type { ScenarioWorld } from "@bmi/core/testing";
import type { BmiLab } from "@bmi/lab";

export const OTHER_PROJECT = "other";

/**
 * The lab as a world for the shared operation scenarios of `@bmi/core/testing`: the lab's
 * project with its golden image, its first node, and the RBD image the golden was imported from.
 */
export function labWorld(lab: BmiLab, source: string): ScenarioWorld {
  return {
    project: lab.project,
    otherProject: OTHER_PROJECT,
    node: lab.nodes[0]?.name as string,
    source,
    exportName: exportNameOf(lab),
  };
}

const exportNameOf = (lab: BmiLab) => `lab${lab.settings.uid}-exported`;

/**
 * Brings the lab back to its base state (the golden image in the lab's project, nothing else)
 * through the lab's own fault-free BMI: nodes deprovisioned with their disks, disks deleted,
 * images unmounted, every other image removed, and what scenarios leave outside BMI's books.
 */
export async function resetLab(lab: BmiLab, keep: string[] = ["golden"]): Promise<void> {
  const { bmi } = lab;
  for (const p of await bmi.listProvisionings())
    await bmi.deprovision({ project: p.project, node: p.node, deleteDisk: true });
  for (const project of await bmi.listProjects()) {
    for (const disk of await bmi.listDisks({ project: project.name }))
      await bmi.deleteDisk({ project: project.name, disk: disk.name, force: true });
  }
  // Mounted images (`mount image` scenarios) are unmounted before anything is removed.
  for (const project of await bmi.listProjects()) {
    for (const mount of await bmi.listMounts({ project: project.name }))
      await bmi.unmountImage({ project: project.name, image: mount.image, force: true });
  }
  // Snapshots and copies before the images they came from.
  const labProjectId = await projectId(bmi, lab.project);
  const images = (await bmi.listAllImages())
    .filter((i) => !(i.projectId === labProjectId && keep.includes(i.name)))
    .sort((a, b) => b.id - a.id);
  for (const image of images) {
    const project = (await bmi.listProjects()).find((p) => p.id === image.projectId)?.name as string;
    await bmi.removeImage({ project, image: image.name });
  }
  // `exportImage` leaves a plain RBD image, outside BMI's books.
  const exported = exportNameOf(lab);
  if (await lab.drivers.storage.exists(exported)) await lab.drivers.storage.remove(exported);
  // `create project` scenarios leave their project.
  for (const project of (await bmi.listProjects()).filter((p) => p.name.startsWith("scenario-")))
    await bmi.deleteProject({ name: project.name });
}

const projectId = async (bmi: Bmi, name: string) =>
  (await bmi.listProjects()).find((p) => p.name === name)?.id;
