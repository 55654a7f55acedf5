import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loggerFromConfig } from "../src/index.js";

// Issue 22 point 11: `[logs] path/debug/verbose` were parsed and never used.

const temp = mkdtempSync(join(tmpdir(), "bmi-logs-test-"));
afterAll(() => rmSync(temp, { recursive: true, force: true }));

const lines = (file: string) =>
  readFileSync(file, "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as { level: number; msg: string; password?: string });

describe("loggerFromConfig: [logs] honoured", () => {
  it("appends to <path>ims.log (creating the directory) at info, or debug with debug = true", () => {
    for (const debug of [false, true]) {
      const path = join(temp, `logs-${debug}`, "nested/");
      const { logger, file, close } = loggerFromConfig({ path, debug, verbose: false });
      expect(file).toBe(join(path, "ims.log"));
      logger.debug("a debug line");
      logger.info({ password: "hunter2-secret" }, "an info line");
      close();
      const written = lines(join(path, "ims.log"));
      expect(written.map((l) => l.msg)).toEqual(debug ? ["a debug line", "an info line"] : ["an info line"]);
      expect(JSON.stringify(written)).not.toContain("hunter2-secret");
    }
  });

  it("echoes to the console with verbose = true (or --verbose), and is silent with nothing to write to", () => {
    const echoed: string[] = [];
    const console = { write: (line: string) => echoed.push(line) };
    const verbose = loggerFromConfig({ path: null, debug: false, verbose: true }, { console });
    verbose.logger.info("to the console");
    expect(echoed.join("")).toContain("to the console");
    const quiet = loggerFromConfig({ path: null, debug: false, verbose: false }, { console });
    quiet.logger.info("nowhere");
    expect(echoed.join("")).not.toContain("nowhere");
    const forced = loggerFromConfig(
      { path: null, debug: false, verbose: false },
      { console, forceConsole: true },
    );
    forced.logger.debug("debug by --verbose");
    expect(echoed.join("")).toContain("debug by --verbose");
  });
});
