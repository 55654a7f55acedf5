import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

const child = fileURLToPath(new URL("./child.ts", import.meta.url));
const tsconfig = fileURLToPath(new URL("./tsconfig.child.json", import.meta.url));

export interface Child {
  process: ChildProcess;
  /** JSON lines printed so far. */
  lines: Record<string, unknown>[];
  /** Resolves when a printed line satisfies `check` (rejects if the child exits first). */
  until(check: (line: Record<string, unknown>) => boolean): Promise<void>;
  exited: Promise<number | null>;
  /** SIGKILL by PID, as a crash; resolves once it is gone. */
  kill(): Promise<void>;
}

/** Starts test/reliability/child.ts in its own node process on the workspace's sources. */
export function spawnChild(args: string[]): Child {
  const proc = spawn(process.execPath, ["--import", "tsx", child, ...args], {
    env: { ...process.env, TSX_TSCONFIG_PATH: tsconfig },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const lines: Record<string, unknown>[] = [];
  const waiters: { check: (l: Record<string, unknown>) => boolean; resolve: () => void }[] = [];
  let stderr = "";
  let buffer = "";
  proc.stderr?.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  proc.stdout?.on("data", (d: Buffer) => {
    buffer += d.toString();
    for (let at = buffer.indexOf("\n"); at >= 0; at = buffer.indexOf("\n")) {
      const text = buffer.slice(0, at);
      buffer = buffer.slice(at + 1);
      if (!text.trim()) continue;
      const line = JSON.parse(text) as Record<string, unknown>;
      lines.push(line);
      for (const w of [...waiters]) {
        if (w.check(line)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve();
        }
      }
    }
  });
  const exited = new Promise<number | null>((resolve) => proc.once("exit", (code) => resolve(code)));
  return {
    process: proc,
    lines,
    until(check) {
      if (lines.some(check)) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        waiters.push({ check, resolve });
        exited.then((code) =>
          reject(
            new Error(
              `child exited (${code}) before the expected line; last: ${JSON.stringify(lines.at(-1))}; stderr: ${stderr.slice(-2000)}`,
            ),
          ),
        );
      });
    },
    exited,
    async kill() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
      await exited;
    },
  };
}
