// The README's first command, end to end: the built demo with --json (it starts its own lab,
// boots two VMs, and checks it left nothing behind). Needs the build that `npm test` runs first.
// The Debian image comes from BMI_DEBIAN_IMAGE_CACHE (scripts/test.sh points it at the run's own
// temp dir, shared with the e2e Debian test), else it is built here in a scratch dir.
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { makeTempDir } from "@bmi/lab";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const demo = fileURLToPath(new URL("../../packages/examples/dist/demo.js", import.meta.url));

interface Summary {
  ok: boolean;
  error?: { message: string };
  image: { kind: string; key?: string; cacheHit?: boolean };
  steps: { step: string; ms: number; detail: string }[];
  boots: (Record<string, unknown> & {
    node: string;
    from: string;
    stages: { stage: string; atMs: number }[];
  })[];
  network: string | null;
  lab: unknown;
}

let scratch: { path: string; remove: () => Promise<void> };
beforeAll(async () => {
  scratch = await makeTempDir("demo-test");
});
afterAll(async () => {
  await scratch?.remove();
});

/** Runs the demo with `args` and --json; its summary, after checking the exit code and that no secret shows. */
async function runDemo(args: string[], timeout: number): Promise<Summary> {
  const run = await execa("node", [demo, "--json", ...args], { reject: false, timeout });
  expect(run.exitCode, `${run.stderr}\n${run.stdout}`).toBe(0);
  // No secret in the machine output: the lab's HIL password, a cephx key (base64 "AQ..."), CHAP.
  for (const output of [run.stdout, run.stderr]) {
    expect(output).not.toContain("lab-hil-password");
    expect(output).not.toMatch(/AQ[A-Za-z0-9+/]{30,}={0,2}/);
    expect(output).not.toMatch(/chap_secret|password\s*=/i);
  }
  const summary = JSON.parse(run.stdout) as Summary;
  expect(summary.ok, summary.error?.message).toBe(true);
  expect(summary.lab).toBeNull();
  // CI runs as root: the demo's lab (network: auto) is on its own namespace, bridges and dnsmasq.
  expect(summary.network).toBe("netns");
  return summary;
}

/** Each node powered through HIL -> obmd -> QMP, its boot stages seen in order by the waiter. */
function expectStagesInOrder(boot: Summary["boots"][number], stages: string[]) {
  expect(boot.stages.map((s) => s.stage)).toEqual(stages);
  const times = boot.stages.map((s) => s.atMs);
  expect(times).toEqual([...times].sort((a, b) => a - b));
  expect(new Set(times).size).toBe(times.length);
}

describe("npm run demo", () => {
  it("boots Debian from its iSCSI clone (BIOS), snapshots it, and a second node (UEFI) reads the file it wrote", async () => {
    const cacheDir = process.env.BMI_DEBIAN_IMAGE_CACHE ?? join(scratch.path, "image-cache");
    const summary = await runDemo(["--image-cache", cacheDir], 1_740_000);
    expect(summary.image).toMatchObject({ kind: "debian", key: expect.stringMatching(/^[0-9a-f]{16}$/) });
    expect(summary.steps.map((s) => s.step)).toEqual([
      "image",
      "lab",
      "golden image",
      "provision",
      "boot node (BIOS)",
      "snapshot",
      "boot snapshot (UEFI)",
      "deprovision + check",
      "teardown",
    ]);
    const [first, second] = summary.boots;
    expect(summary.boots).toHaveLength(2);
    // What each OS said inside itself: its name, its root device, the target of its own session.
    const debian = "Debian GNU/Linux 12 (bookworm)";
    expect(first).toMatchObject({ node: "node-01", from: "power", firmware: "bios", os: debian });
    expect(second).toMatchObject({ node: "node-02", from: "provision", firmware: "uefi", os: debian });
    expect(second?.sawSnapshotFile).toBe(true);
    expect(first).not.toHaveProperty("sawSnapshotFile");
    for (const boot of [first, second]) {
      if (!boot) continue;
      expect(boot.root).toMatch(/^\/dev\/sd[a-z]+\d$/);
      expect(boot.rootTarget).toMatch(/^iqn\.\d{4}-\d{2}\.[a-z.]+:\S+$/);
      expect(boot.rootTarget).toBe(boot.target);
      expectStagesInOrder(boot, ["powered_on", "firmware_login", "os_login"]);
    }
    expect(first?.rootTarget).not.toBe(second?.rootTarget); // each node on its own clone
  }, 1_800_000);

  it("--image tiny: provisions two nodes, boots one from the golden image and one from a snapshot, and cleans up", async () => {
    const summary = await runDemo(["--image", "tiny", "--nodes", "2"], 600_000);
    expect(summary.image).toEqual({ kind: "tiny" });
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
    expect(summary.boots.map((b) => [b.node, b.from, b.marker])).toEqual([
      ["node-01", "power", "BMI-BOOT-OK"],
      ["node-03", "provision", "BMI-SNAPSHOT-OK"],
    ]);
    for (const boot of summary.boots) expectStagesInOrder(boot, ["powered_on", "firmware_login"]);
  }, 660_000);

  it("rejects bad options with a clear message and exit code 2, before anything runs", async () => {
    const notADir = join(scratch.path, "a-file");
    await writeFile(notADir, "");
    const cases: [string[], string][] = [
      [["--nodes", "0"], "--nodes must be at least 1"],
      [["--image", "ubuntu"], "--image must be debian or tiny"],
      [["--image-cache", notADir], `--image-cache "${notADir}": ${notADir} is not a directory`],
      [["--image-cache", join(notADir, "x")], "is below something that is not a directory"],
      [["--image", "tiny", "--image-cache", scratch.path], "--image-cache is for --image debian"],
    ];
    for (const [args, message] of cases) {
      const run = await execa("node", [demo, ...args], { reject: false });
      expect(run.exitCode, args.join(" ")).toBe(2);
      expect(run.stderr).toContain(message);
      expect(run.stdout).toBe("");
    }
    const fromEnv = await execa("node", [demo], { reject: false, env: { BMI_DEBIAN_IMAGE_CACHE: notADir } });
    expect(fromEnv.exitCode).toBe(2);
    expect(fromEnv.stderr).toContain(`BMI_DEBIAN_IMAGE_CACHE "${notADir}": ${notADir} is not a directory`);
  });
});
