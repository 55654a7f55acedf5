/**
 * The README's quick starts run as written (issue 21.5): its CLI block and its SDK block are
 * copied out of README.md and run, in that order, against a real lab (shared Ceph, tgtd, the
 * HIL-compatible server, qemu nodes powered through HIL) on a fresh database. Only the README's
 * documented placeholders are replaced: the config path, the RBD image `debian12` (here the
 * lab's Debian image, which boots to its OS's own iSCSI login) and the file `./my-image.qcow2`.
 * A missing block, a missing placeholder or any command that fails fails the test.
 */
import { readFile, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { EXIT, run } from "@bmi/cli";
import { loadConfig } from "@bmi/core";
import { textSink } from "@bmi/core/testing";
import { type BmiLab, buildBootImage, buildDebianImage, makeTempDir, startBmiLab } from "@bmi/lab";
import { createBmiFromConfig } from "@bmi/wiring";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";

const root = fileURLToPath(new URL("../../", import.meta.url));
const README_CONFIG = "/etc/bmi/bmiconfig.cfg";
const README_IMAGE = "debian12";
const README_FILE = "./my-image.qcow2";
/** TCG on a shared 2-core host: the Debian image takes ~100 s to its OS login when idle. */
const BOOT_TEST_MS = 900_000;

/** The fenced blocks under the README heading `heading`, in order; throws if it is absent. */
function readmeBlocks(readme: string, heading: string): { language: string; body: string }[] {
  const start = readme.indexOf(`\n${heading}\n`);
  if (start < 0) throw new Error(`README.md has no heading "${heading}"`);
  const next = readme.indexOf("\n## ", start + heading.length + 1);
  const lines = readme.slice(start, next < 0 ? undefined : next).split("\n");
  const blocks: { language: string; body: string }[] = [];
  let open: { language: string; lines: string[] } | undefined;
  for (const line of lines) {
    if (!line.startsWith("```")) open?.lines.push(line);
    else if (open) {
      blocks.push({ language: open.language, body: open.lines.join("\n") });
      open = undefined;
    } else open = { language: line.slice(3).trim(), lines: [] };
  }
  return blocks;
}

/** The first block of `language` under `heading`; throws if there is none. */
function readmeBlock(readme: string, heading: string, language: string): string {
  const block = readmeBlocks(readme, heading).find((b) => b.language === language);
  if (!block) throw new Error(`README.md's "${heading}" has no \`\`\`${language} block`);
  return block.body;
}

/** Replaces every placeholder in `text`; throws for one the README no longer shows. */
function substitute(text: string, replacements: Record<string, string>): string {
  let out = text;
  for (const [placeholder, value] of Object.entries(replacements)) {
    if (!out.includes(placeholder)) throw new Error(`README block lacks the placeholder ${placeholder}`);
    out = out.split(placeholder).join(value);
  }
  return out;
}

/** A shell block's commands as argument arrays (comments and blank lines dropped). */
function commandLines(block: string): string[][] {
  return block
    .split("\n")
    .map((line) => line.replace(/(^|\s)#.*$/, "").trim())
    .filter((line) => line !== "")
    .map((line) => {
      // The README shows plain commands: anything a shell would interpret is out of scope here.
      if (/["'`$|;&<>\\]/.test(line)) throw new Error(`README command needs a shell: ${line}`);
      return line.split(/\s+/);
    });
}

let lab: BmiLab;
let scratch: { path: string; remove: () => Promise<void> };
let configPath: string;
let restPort: number;
const sources: string[] = [];
const env: Record<string, string> = {};

async function bmi(
  args: readonly string[],
  options: { signal?: AbortSignal; onListening?: (url: string) => void } = {},
) {
  const out = textSink();
  const err = textSink();
  const code = await run(args, { stdout: out.stream, stderr: err.stream, env: { ...env }, ...options });
  return { code, stdout: out.text(), stderr: err.text() };
}

/** `bmi serve` until it answers /health and /v1/openapi.json, then stopped as SIGTERM would. */
async function serveBriefly(args: readonly string[]) {
  const stop = new AbortController();
  let checked: Promise<{ health: number; openapi: number }> | undefined;
  const served = bmi(args, {
    signal: stop.signal,
    onListening: (url) => {
      checked = (async () => {
        try {
          const health = (await fetch(`${url}/health`)).status;
          const openapi = (await fetch(`${url}/v1/openapi.json`)).status;
          return { health, openapi };
        } finally {
          stop.abort();
        }
      })();
    },
  });
  const result = await served;
  return { ...result, checked: await checked };
}

beforeAll(async () => {
  scratch = await makeTempDir("docs");
  const image = await buildDebianImage({
    cacheDir: process.env.BMI_DEBIAN_IMAGE_CACHE ?? join(scratch.path, "image-cache"),
  });
  lab = await startBmiLab({
    ceph: inject("ceph"),
    nodes: 2,
    project: "tenant-a",
    dir: join(scratch.path, "lab"),
  });
  for (const node of lab.nodes) lab.configureNode(node.name, { memoryMb: 1024 });
  // The README's RBD images: the Debian image (the CLI block boots it) and a small one (the SDK's).
  const debian = `lab${lab.settings.uid}-docs-debian12`;
  const small = `lab${lab.settings.uid}-docs-small`;
  sources.push(debian, small);
  await lab.drivers.storage.importFile?.(image.path, debian);
  await lab.drivers.storage.create(small, 8 * 1024 * 1024);
  // A fresh database (the README starts with `bmi db init`) and a [rest_api] for `bmi serve`.
  restPort = 20_000 + Math.floor(Math.random() * 40_000);
  configPath = join(scratch.path, "bmi_config.cfg");
  const text = (await readFile(lab.configPath, "utf8")).replace(
    /^path = .*bmi\.db$/m,
    `path = ${join(scratch.path, "docs.db")}`,
  );
  await writeFile(configPath, `${text}\n[rest_api]\nip = 127.0.0.1\nport = ${restPort}\n`, { mode: 0o600 });
  // The README's file: a small qcow2 image.
  await buildBootImage(join(scratch.path, "my-image.raw"), { marker: "docs" });
  await execa("qemu-img", ["convert", "-f", "raw", "-O", "qcow2", "my-image.raw", "my-image.qcow2"], {
    cwd: scratch.path,
  });
}, 3_000_000);

afterAll(async () => {
  try {
    if (lab && configPath) await removeEverything(configPath, lab.project);
    if (lab) expect(await lab.leftovers()).toEqual({ images: [], targets: [], bootFiles: [] });
  } finally {
    for (const name of sources) {
      if (await lab?.drivers.storage.exists(name).catch(() => false)) await lab.drivers.storage.remove(name);
    }
    await lab?.stop();
    await scratch?.remove();
  }
}, 300_000);

/** What the blocks made, through a BMI on their database: nodes, disks, snapshots, images. */
async function removeEverything(path: string, project: string) {
  const { bmi, close } = createBmiFromConfig(loadConfig({ path }).config, { env: {} });
  try {
    const each = async <T>(items: T[] | Promise<T[]>, fn: (item: T) => Promise<unknown>) => {
      for (const item of await items) await fn(item).catch(() => undefined);
    };
    await each(await bmi.listProvisionings({ project }), (p) =>
      bmi.deprovision({ project, node: p.node, deleteDisk: true, powerOff: true }),
    );
    await each(await bmi.listDisks({ project }), (d) =>
      bmi.deleteDisk({ project, disk: d.name, force: true }),
    );
    await each(await bmi.listSnapshots({ project }), (s) =>
      bmi.removeImage({ project, image: s.image.name }),
    );
    await each(await bmi.listImages({ project }), (i) => bmi.removeImage({ project, image: i.name }));
  } finally {
    await close();
  }
}

describe("the README's quick starts, as written, on a lab", () => {
  let readme: string;
  beforeAll(async () => {
    readme = await readFile(join(root, "README.md"), "utf8");
  });

  it(
    "the CLI block: db init, project, import, upload, provision and boot, list, power, snapshot, deprovision, doctor, serve",
    async () => {
      const block = substitute(readmeBlock(readme, "## Command line and REST server", "sh"), {
        [README_CONFIG]: configPath,
        [README_IMAGE]: sources[0] as string,
        [README_FILE]: join(scratch.path, "my-image.qcow2"),
      });
      const expectedTable = readmeBlock(readme, "## Command line and REST server", "");
      const ran: string[] = [];
      for (const argv of commandLines(block)) {
        const [command, ...args] = argv;
        if (command === "export") {
          const [name, value] = (args[0] ?? "").split("=");
          env[name as string] = value as string;
          ran.push(`export ${name}`);
          continue;
        }
        expect(command, `README line ${argv.join(" ")}`).toBe("bmi");
        ran.push(args[0] as string);
        if (args[0] === "serve") {
          const served = await serveBriefly(args);
          expect(served.code, served.stderr).toBe(EXIT.ok);
          expect(served.stdout).toContain(`listening on http://127.0.0.1:${restPort}`);
          expect(served.checked).toEqual({ health: 200, openapi: 200 });
          continue;
        }
        const result = await bmi(args);
        expect(result.code, `bmi ${args.join(" ")}: ${result.stderr}`).toBe(EXIT.ok);
        if (args[0] === "pro") expect(result.stdout).toMatch(/booted in [\d.]+ s: powered_on .*os_login/);
        if (args[0] === "power") expect(result.stdout).toMatch(/\bon\b/);
        if (args[0] === "nodes") {
          // In the CI log: the table an operator sees, for the closing note of issue 21.
          process.stderr.write(`$ bmi ${args.join(" ")}\n${result.stdout}\n`);
          expect(result.stdout).toMatch(/│ node-01 +│ tenant-a +│ node-01-disk +│ eth0 +│/);
          // The README's example output: the same command gives the same table (its target aside).
          const shown = expectedTable.split("\n");
          const again = await bmi((shown[0] ?? "").replace(/^\$ bmi /, "").split(/\s+/));
          expect(again.code).toBe(EXIT.ok);
          const rows = again.stdout.split("\n");
          const cells = (line = "") =>
            line
              .split("│")
              .slice(1, -1)
              .map((c) => c.trim());
          expect(cells(rows[1])).toEqual(cells(shown[2])); // the header row
          expect(cells(rows[3]).slice(0, 3)).toEqual(cells(shown[4]).slice(0, 3));
          expect(cells(rows[3])[3]).toMatch(
            new RegExp(`^iqn\\.2026-11\\.org\\.bmi:${lab.settings.uid}img\\d+$`),
          );
        }
      }
      expect(ran).toEqual([
        "export BMI_CONFIG",
        "db",
        "project",
        "import",
        "image",
        "pro",
        "nodes",
        "power",
        "snap",
        "dpro",
        "doctor",
        "serve",
      ]);
      expect((await lab.leftovers()).bootFiles).toEqual([]);
    },
    BOOT_TEST_MS,
  );

  it("the SDK block, as a script of its own, against the database the CLI block made", async () => {
    const code = substitute(readmeBlock(readme, "## Quick start (SDK)", "ts"), {
      [`"${README_IMAGE}"`]: JSON.stringify(sources[1]),
    });
    // An ES module (.mts: top-level await), resolving @bmi/* from node_modules next to it.
    const script = join(scratch.path, "quick-start.mts");
    await writeFile(script, code);
    await symlink(join(root, "test", "node_modules"), join(scratch.path, "node_modules"));
    const ran = await execa("node", ["--import", "tsx", script], {
      cwd: root,
      env: { BMI_CONFIG: configPath },
      reject: false,
    });
    expect(ran.exitCode, ran.stderr).toBe(0);
    const target = JSON.parse(ran.stdout.trim());
    expect(target).toMatchObject({ name: expect.stringMatching(/^iqn\.2026-11\.org\.bmi:/), lun: 1 });
    expect((await lab.drivers.export.list()).map((t) => t.target)).toContain(target.name);
    expect(await lab.drivers.boot.read("node-02")).toMatchObject({ target });
  }, 300_000);
});
