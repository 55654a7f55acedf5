import { realpathSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { toBmiError } from "@bmi/core";

/**
 * Runs `main` when the module is the process's entry point (not when a test imports it): prints
 * its result, or the error's message and code, and exits 0 or 1.
 */
export function runAsScript(moduleUrl: string, main: (args: string[]) => Promise<string>): void {
  const entry = process.argv[1];
  if (!entry || realpathSync(entry) !== realpathSync(fileURLToPath(moduleUrl))) return;
  main(process.argv.slice(2)).then(
    (out) => {
      console.log(out);
    },
    (error: unknown) => {
      const bmi = toBmiError(error);
      console.error(`${bmi.code}: ${bmi.message}`);
      process.exitCode = 1;
    },
  );
}
