// Example: provision one node from an orchestration script.
//   BMI_CONFIG=/etc/bmi/bmi_config.cfg node dist/provision-one.js <project> <node> <image>
import { isBmiError, type Provisioning } from "@bmi/core";
import { runAsScript } from "./script.js";
import { bmiFromConfig } from "./wiring.js";

export async function provisionOne(args: {
  configPath?: string;
  project: string;
  node: string;
  image: string;
}): Promise<Provisioning> {
  const { bmi, close } = bmiFromConfig(args.configPath);
  try {
    // One call: clone the image, export the clone, write the node's boot files, attach its NIC to
    // the provisioning network. Retrying after a failure is safe: a failed call left nothing behind,
    // and a repeated call for an already provisioned node with the same disk changes nothing.
    return await bmi.provision({
      project: args.project,
      node: args.node,
      disk: `${args.node}-disk`,
      image: args.image,
    });
  } catch (error) {
    if (isBmiError(error, "forbidden"))
      throw new Error(`${args.node} does not belong to ${args.project} in HIL`);
    throw error;
  } finally {
    await close();
  }
}

runAsScript(import.meta.url, async ([project, node, image]) => {
  if (!project || !node || !image) return "usage: provision-one <project> <node> <image>";
  const p = await provisionOne({ project, node, image });
  return `${p.node} boots ${p.target.name} from ${p.target.portal}:${p.target.port} (LUN ${p.target.lun})`;
});
