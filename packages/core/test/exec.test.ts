import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import {
  type CommandRunner,
  createCommandLimit,
  createExecaRunner,
  isBmiError,
  lastErrorLine,
  limitRunner,
} from "../src/index.js";

describe("createExecaRunner", () => {
  const run = createExecaRunner({ subsystem: "storage", timeoutMs: 10_000 });

  it("runs without a shell and resolves with any exit code", async () => {
    const result = await run("sh", ["-c", 'echo "$1"; echo oops >&2; exit 3', "sh", "a;b $(x)"]);
    expect(result.exitCode).toBe(3);
    expect(result.stdout).toBe("a;b $(x)\n");
    expect(lastErrorLine(result.stderr)).toBe("oops");
  });

  it("passes arguments through literally (no shell expansion)", async () => {
    const result = await run("echo", ["$HOME", "*", "a;rm -rf /"]);
    expect(result.stdout).toBe("$HOME * a;rm -rf /\n");
  });

  it("gives a retryable timeout error naming the command", async () => {
    const error = await run("sleep", ["5"], { timeoutMs: 100 }).catch((e: unknown) => e);
    expect(isBmiError(error, "timeout")).toBe(true);
    expect(isBmiError(error) && error.retryable && error.subsystem).toBe("storage");
    expect(String((error as Error).message)).toContain("sleep 5");
  });

  it("does not call a command that finished a timeout because the event loop was blocked (issue 22.6)", async () => {
    const pending = run("true", [], { timeoutMs: 200 });
    // A synchronous wait (as better-sqlite3's busy wait was) holds the loop well past the
    // timeout while the child exits; the exit is collected before the timer may kill it.
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1500);
    expect((await pending).exitCode).toBe(0);
  });

  it("says clearly when the program is missing", async () => {
    const error = await run("no-such-program-bmi", []).catch((e: unknown) => e);
    expect(isBmiError(error, "unavailable")).toBe(true);
    expect((error as Error).message).toContain("no-such-program-bmi is not installed");
  });

  it("cancels on an abort signal", async () => {
    const controller = new AbortController();
    const pending = run("sleep", ["5"], { signal: controller.signal }).catch((e: unknown) => e);
    controller.abort();
    expect(isBmiError(await pending, "cancelled")).toBe(true);
  });

  it("redacts secrets from the command line and output it reports", async () => {
    const result = await run("echo", ["key=hunter2-secret"], { secrets: ["hunter2-secret"] });
    expect(result.command).not.toContain("hunter2-secret");
    expect(result.stdout).toBe("key=[REDACTED]\n");
  });
});

describe("limitRunner", () => {
  it("bounds the commands of several runners together", async () => {
    let running = 0;
    let peak = 0;
    const slow: CommandRunner = async (file, args) => {
      running++;
      peak = Math.max(peak, running);
      await sleep(5);
      running--;
      return { command: [file, ...args].join(" "), exitCode: 0, stdout: "", stderr: "", durationMs: 5 };
    };
    const limit = createCommandLimit(2);
    const a = limitRunner(slow, limit);
    const b = limitRunner(slow, limit);
    await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? a : b)("x", [String(i)])));
    expect(peak).toBe(2);
  });
});
