import { fileURLToPath } from "node:url";
import { configDefaults, defineConfig } from "vitest/config";

const src = (path: string) => fileURLToPath(new URL(`./packages/${path}`, import.meta.url));

// Tests run on the workspace's sources (no build step): each @bmi/<pkg>[/testing] import
// resolves to packages/<pkg>/src/index.ts or packages/<pkg>/src/testing/index.ts (and
// @bmi/examples/<name> to packages/examples/src/<name>.ts).
export default defineConfig({
  oxc: { decorator: { legacy: true, emitDecoratorMetadata: true } },
  resolve: {
    alias: [
      { find: /^@bmi\/core\/di$/, replacement: src("core/src/di/container.ts") },
      {
        find: /^@bmi\/([a-z-]+)\/testing\/contracts$/,
        replacement: src("$1/src/testing/contracts/index.ts"),
      },
      { find: /^@bmi\/([a-z-]+)\/testing$/, replacement: src("$1/src/testing/index.ts") },
      { find: /^@bmi\/examples\/([a-z-]+)$/, replacement: src("examples/src/$1.ts") },
      { find: /^@bmi\/([a-z-]+)$/, replacement: src("$1/src/index.ts") },
    ],
  },
  test: {
    projects: [
      // Unit tests: in-memory drivers, recording runners, the HIL-compatible server. No daemons.
      { extends: true, test: { name: "unit", include: ["packages/*/test/**/*.test.ts"] } },
      // Real daemons: one Ceph cluster for the whole run (started by the global setup), tgtd and
      // the HIL-compatible server per file, qemu for end-to-end boots.
      {
        extends: true,
        test: {
          name: "integration",
          include: ["test/**/*.test.ts"],
          // Keep vitest's defaults (node_modules!): test/ is a workspace package with its own.
          exclude: [...configDefaults.exclude, "test/consumer/**"],
          globalSetup: ["test/setup/global-lab.ts"],
        },
      },
      // A project outside the workspace installs the packed tarballs (no daemons, no aliases used).
      { extends: true, test: { name: "consumer", include: ["test/consumer/*.test.ts"] } },
    ],
    // Real daemons (Ceph, tgtd, qemu) make integration files slow; unit files finish far below this.
    testTimeout: 60_000,
    hookTimeout: 180_000,
    pool: "forks",
    maxWorkers: 2,
  },
});
