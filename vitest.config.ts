import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

const src = (path: string) => fileURLToPath(new URL(`./packages/${path}`, import.meta.url));

// Tests run on the workspace's sources (no build step): each @bmi/<pkg>[/testing] import
// resolves to packages/<pkg>/src/index.ts or packages/<pkg>/src/testing/index.ts.
export default defineConfig({
  oxc: { decorator: { legacy: true, emitDecoratorMetadata: true } },
  resolve: {
    alias: [
      { find: /^@bmi\/([a-z-]+)\/testing$/, replacement: src("$1/src/testing/index.ts") },
      { find: /^@bmi\/([a-z-]+)$/, replacement: src("$1/src/index.ts") },
    ],
  },
  test: {
    include: ["packages/*/test/**/*.test.ts", "test/**/*.test.ts"],
    // Real daemons (Ceph, tgtd, qemu) make integration files slow; unit files finish far below this.
    testTimeout: 60_000,
    hookTimeout: 180_000,
    pool: "forks",
    maxWorkers: 2,
  },
});
