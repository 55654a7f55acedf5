// Prints the closing line CI reads: `N passed, N failed, N skipped`. A test file that failed to
// load has no tests in the counts, so it counts as one failure of its own.
import { existsSync, readFileSync } from "node:fs";

const file = process.argv[2] ?? ".vitest-result.json";
if (!existsSync(file)) {
  console.log("0 passed, 1 failed");
  process.exit(1);
}
const r = JSON.parse(readFileSync(file, "utf8"));
const brokenFiles = r.testResults.filter(
  (f) => f.status === "failed" && f.assertionResults.length === 0,
).length;
const failed = r.numFailedTests + brokenFiles;
const skipped = r.numPendingTests + r.numTodoTests;
console.log(`${r.numPassedTests} passed, ${failed} failed, ${skipped} skipped`);
process.exit(failed > 0 || r.numPassedTests === 0 ? 1 : 0);
