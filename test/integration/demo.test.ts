// The README's first command, end to end: the built demo with --json (it starts its own lab,
// boots two VMs, and checks it left nothing behind). Needs the build that `npm test` runs first.
import { fileURLToPath } from "node:url";
import { execa } from "execa";
import { describe, expect, it } from "vitest";

const demo = fileURLToPath(new URL("../../packages/examples/dist/demo.js", import.meta.url));

describe("npm run demo", () => {
  it("provisions two nodes, boots one from the golden image and one from a snapshot, and cleans up", async () => {
    const run = await execa("node", [demo, "--json", "--nodes", "2"], { reject: false, timeout: 600_000 });
    expect(run.exitCode, run.stderr).toBe(0);
    const summary = JSON.parse(run.stdout) as {
      ok: boolean;
      steps: { step: string; ms: number }[];
      boots: { node: string; from: string; marker: string; stages: { stage: string; atMs: number }[] }[];
      network: string;
      lab: unknown;
    };
    expect(summary.ok).toBe(true);
    // CI runs as root: the demo's lab (network: auto) is on its own namespace, bridges and dnsmasq.
    expect(summary.network).toBe("netns");
    expect(summary.steps.map((s) => s.step)).toEqual([
      "lab",
      "golden image",
      "provision",
      "boot node",
      "snapshot + re-provision",
      "boot snapshot",
      "deprovision + check",
      "teardown",
    ]);
    // Each node powered through HIL -> obmd -> QMP, its boot stages seen in order by the waiter.
    expect(summary.boots.map((b) => [b.node, b.from, b.marker])).toEqual([
      ["node-01", "power", "BMI-BOOT-OK"],
      ["node-03", "provision", "BMI-SNAPSHOT-OK"],
    ]);
    for (const boot of summary.boots) {
      expect(boot.stages.map((s) => s.stage)).toEqual(["powered_on", "firmware_login"]);
      const [on, login] = boot.stages.map((s) => s.atMs);
      expect(login).toBeGreaterThan(on ?? Number.POSITIVE_INFINITY);
    }
    expect(summary.lab).toBeNull();
    // No secret in the machine output: the lab's HIL password, a cephx key (base64 "AQ..."), CHAP.
    for (const output of [run.stdout, run.stderr]) {
      expect(output).not.toContain("lab-hil-password");
      expect(output).not.toMatch(/AQ[A-Za-z0-9+/]{30,}={0,2}/);
      expect(output).not.toMatch(/chap_secret|password\s*=/i);
    }
  }, 660_000);

  it("rejects bad options with a clear message and exit code 2", async () => {
    const run = await execa("node", [demo, "--nodes", "0"], { reject: false });
    expect(run.exitCode).toBe(2);
    expect(run.stderr).toContain("--nodes must be at least 1");
  });
});
