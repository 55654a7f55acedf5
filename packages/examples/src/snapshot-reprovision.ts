// Example: save a node's disk as a new golden image, and re-provision a node from it.
//   BMI_CONFIG=... node dist/snapshot-reprovision.js <project> <node> <new image> [<target node>]
import type { Bmi, Image, Provisioning } from "@bmi/core";
import { runAsScript } from "./script.js";
import { bmiFromConfig } from "./wiring.js";

export async function snapshotAndReprovision(
  bmi: Bmi,
  args: { project: string; node: string; snapshot: string; targetNode?: string },
): Promise<{ image: Image; provisioned: Provisioning }> {
  const current = (await bmi.listProvisionings({ project: args.project })).find((p) => p.node === args.node);
  if (!current) throw new Error(`${args.node} is not provisioned in ${args.project}`);
  // Power the node off first in real life: a snapshot of a disk in use may be inconsistent, which
  // is why snapshotDisk refuses an in-use disk unless forced. Here the node is deprovisioned first.
  await bmi.deprovision({ project: args.project, node: args.node });
  const image = await bmi.snapshotDisk({
    project: args.project,
    disk: current.disk,
    snapshot: args.snapshot,
  });
  const targetNode = args.targetNode ?? args.node;
  if (targetNode === args.node) await bmi.deleteDisk({ project: args.project, disk: current.disk });
  const provisioned = await bmi.provision({
    project: args.project,
    node: targetNode,
    disk: `${targetNode}-${args.snapshot}`,
    image: image.name,
  });
  return { image, provisioned };
}

runAsScript(import.meta.url, async ([project, node, snapshot, targetNode]) => {
  if (!project || !node || !snapshot)
    return "usage: snapshot-reprovision <project> <node> <new image> [<target node>]";
  const { bmi, close } = bmiFromConfig();
  try {
    const { image, provisioned } = await snapshotAndReprovision(bmi, { project, node, snapshot, targetNode });
    return `${image.name} (rbd ${image.cephName}) now boots ${provisioned.node} via ${provisioned.target.name}`;
  } finally {
    await close();
  }
});
