import { createMemoryBmi, type MemoryBmi, textSink } from "@bmi/core/testing";
import { type RunOptions, run } from "../src/index.js";

export const SAMPLE_CONFIG = new URL("../../../docs/samples/bmi_config.cfg", import.meta.url).pathname;

/**
 * A BMI on in-memory drivers with projects p1 (nodes n1, n2, free node free1 and a foreign n3)
 * and an empty p2; p1 has a golden image, a disk d1 booting n1, a snapshot s1 and a mounted image.
 */
export async function memoryDeployment(): Promise<MemoryBmi> {
  const memory = createMemoryBmi({
    isolation: {
      nodes: [
        { name: "n1", project: "p1", nics: [{ label: "eth0", mac: "52:54:00:00:00:01" }] },
        { name: "n2", project: "p1", nics: [{ label: "eth0", mac: "52:54:00:00:00:02" }] },
        { name: "n3", project: "p2", nics: [{ label: "eth0", mac: "52:54:00:00:00:03" }] },
        { name: "free1", project: null, nics: [{ label: "eth0", mac: "52:54:00:00:00:04" }] },
      ],
    },
  });
  const { bmi } = memory;
  await bmi.createProject({ name: "p1" });
  await bmi.createProject({ name: "p2" });
  await memory.storage.create("src", 1024 * 1024);
  await bmi.importImage({ project: "p1", source: "src", name: "golden" });
  await memory.storage.create("src2", 1024 * 1024);
  await bmi.importImage({ project: "p1", source: "src2", name: "other" });
  await bmi.createDisk({ project: "p1", image: "golden", disk: "d1" });
  await bmi.provision({ project: "p1", node: "n1", disk: "d1" });
  await bmi.snapshotDisk({ project: "p1", disk: "d1", snapshot: "s1", force: true });
  await bmi.mountImage({ project: "p1", image: "other" });
  return memory;
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `bmi` in-process on a memory deployment (the sample config is loaded, its drivers are not built). */
export function cliOn(memory: MemoryBmi, options: { tty?: boolean } = {}) {
  return async (...argv: string[]): Promise<CliResult> => {
    const out = textSink();
    const err = textSink({ tty: options.tty ?? false });
    const runOptions: RunOptions = {
      stdout: out.stream,
      stderr: err.stream,
      env: {},
      connect: (config) => ({ bmi: memory.bmi, config, warnings: [], close: () => {} }),
    };
    const code = await run(["--config", SAMPLE_CONFIG, ...argv], runOptions);
    return { code, stdout: out.text(), stderr: err.text() };
  };
}
