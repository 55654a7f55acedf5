// Example: provision many nodes at once with a concurrency limit, and report each node.
//   BMI_CONFIG=... node dist/batch-provision.js <project> <image> <node>...
import type { Bmi, BmiEvent } from "@bmi/core";
import { runAsScript } from "./script.js";
import { bmiFromConfig } from "./wiring.js";

export interface BatchReport {
  provisioned: { node: string; target: string }[];
  failed: { node: string; code: string; message: string; retryable: boolean }[];
  steps: number;
}

export async function batchProvision(
  bmi: Bmi,
  args: { project: string; image: string; nodes: string[]; concurrency?: number },
): Promise<BatchReport> {
  let steps = 0;
  const off = bmi.on((event: BmiEvent) => {
    if (event.type === "step:finished") steps++;
  });
  try {
    const results = await bmi.provisionMany(
      args.nodes.map((node) => ({ project: args.project, node, disk: `${node}-disk`, image: args.image })),
      { concurrency: args.concurrency ?? 4 },
    );
    // Each node succeeds or fails on its own; a failed node was fully undone and can be retried.
    return {
      provisioned: results.flatMap((r) => (r.ok ? [{ node: r.node, target: r.value.target.name }] : [])),
      failed: results.flatMap((r) =>
        r.ok
          ? []
          : [{ node: r.node, code: r.error.code, message: r.error.message, retryable: r.error.retryable }],
      ),
      steps,
    };
  } finally {
    off();
  }
}

runAsScript(import.meta.url, async ([project, image, ...nodes]) => {
  if (!project || !image || nodes.length === 0) return "usage: batch-provision <project> <image> <node>...";
  const { bmi, close } = bmiFromConfig();
  try {
    return JSON.stringify(await batchProvision(bmi, { project, image, nodes }), null, 2);
  } finally {
    await close();
  }
});
