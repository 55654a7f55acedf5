import { readFile } from "node:fs/promises";
import type { Writable } from "node:stream";
import {
  type BmiConfig,
  BmiError,
  type ConfigLogger,
  type Image,
  type Logger,
  loadConfig,
  loggerFromConfig,
  type Provisioning,
  redactedConfig,
  toBmiError,
} from "@bmi/core";
import { Command, CommanderError, InvalidArgumentError, Option } from "commander";
import { Listr, ListrLogger, ProcessOutput } from "listr2";
import { runDoctor } from "./doctor.js";
import { EXIT, exitCodeFor } from "./exit-codes.js";
import { DEFAULT_DRAIN_MS, startRestServer } from "./server.js";
import { createBmiFromConfig, type WiredBmi } from "./wiring.js";

export interface RunOptions {
  stdout?: Writable;
  stderr?: Writable;
  /** Environment for `BMI_CONFIG`, `HIL_USERNAME`, `HIL_PASSWORD`; default `process.env`. */
  env?: Record<string, string | undefined>;
  /**
   * Stops the command (default: the first SIGINT or SIGTERM): a running operation is cancelled
   * and undone, `bmi serve` drains (see `--drain`); then the database is closed.
   */
  signal?: AbortSignal;
  /** Called once `bmi serve` listens (tests use it to learn the port). */
  onListening?: (url: string) => void;
}

/** What a command produced: the machine value (`--json`) and the lines for people. */
interface Output {
  value: unknown;
  human: string[];
  /** Exit code when the command itself decides (doctor, reconcile with drift, batches). */
  exitCode?: number;
}

interface Globals {
  config?: string;
  json?: boolean;
  verbose?: boolean;
}

const EXAMPLES = `
Examples:
  $ export BMI_CONFIG=/etc/bmi/bmiconfig.cfg
  $ bmi db init                                  # create the database and the admin project
  $ bmi project create tenant-a
  $ bmi import tenant-a centos7                  # adopt the RBD image centos7 as a golden image
  $ bmi disk create tenant-a centos7 web-01-disk # clone + iSCSI target
  $ bmi pro tenant-a web-01 web-01-disk eth0     # boot files for the node (checked in HIL)
  $ bmi snap create tenant-a web-01-disk web-golden --force
  $ bmi dpro tenant-a web-01 --delete-disk
  $ bmi ls tenant-a --json
  $ bmi doctor
  $ bmi serve                                    # the original REST routes on [rest_api] ip:port

Exit codes: 0 ok, 1 server fault, 2 usage or invalid input, 3 not found,
4 conflict / busy / already exists (and drift left by reconcile), 5 unauthenticated or forbidden.
`;

/**
 * Runs the `bmi` command line in-process and resolves with its exit code. Nothing calls
 * `process.exit`, so tests and other tools can embed it.
 */
export async function run(argv: readonly string[], options: RunOptions = {}): Promise<number> {
  const stdout = options.stdout ?? process.stdout;
  const stderr = options.stderr ?? process.stderr;
  const env = options.env ?? process.env;
  let exitCode: number = EXIT.ok;
  const opened: WiredBmi[] = [];
  // Every operation carries the stop signal: SIGTERM cancels it between steps or during one, and
  // it ends undone before the database is closed below.
  const stopping = stopSignal(options.signal, stderr);
  const withStop = { signal: stopping.signal };

  const program = new Command("bmi")
    .description("Bare Metal Imaging: boot bare-metal nodes from copy-on-write Ceph clones over iSCSI")
    .option("--config <file>", "bmi_config.cfg (default: $BMI_CONFIG, else /etc/bmi/bmiconfig.cfg)")
    .option("--json", "machine output: the result, or {error} with a stable code")
    .option("-v, --verbose", "log every step (JSON lines) to stderr")
    .addHelpText("after", EXAMPLES)
    .showHelpAfterError("(run with --help for usage)")
    .exitOverride()
    .configureOutput({
      writeOut: (s) => stdout.write(s),
      writeErr: (s) => stderr.write(s),
    });

  const globals = (command: Command): Globals => command.optsWithGlobals<Globals>();
  const logFiles: ConfigLogger[] = [];
  /** `[logs]` (file `<path>ims.log`, level, console echo); `--verbose` adds debug lines on stderr. */
  const loggerFor = (g: Globals, loaded: BmiConfig): Logger => {
    const configured = loggerFromConfig(loaded.logs, { console: stderr, forceConsole: g.verbose === true });
    logFiles.push(configured);
    return configured.logger;
  };
  const config = (g: Globals): BmiConfig => {
    const { config: loaded, warnings } = loadConfig({ ...(g.config ? { path: g.config } : {}), env });
    if (!g.json) for (const w of warnings) stderr.write(`bmi: warning: ${w}\n`);
    return loaded;
  };
  const wire = (g: Globals, createStore = false): WiredBmi => {
    const loaded = config(g);
    const wired = createBmiFromConfig(loaded, { logger: loggerFor(g, loaded), env, createStore });
    opened.push(wired);
    return wired;
  };

  /** Wraps a command body: wiring, output in both forms, and the exit code. */
  const action =
    <A extends unknown[]>(body: (g: Globals, ...args: A) => Promise<Output> | Output) =>
    async (...args: unknown[]) => {
      const command = args[args.length - 1] as Command;
      const g = globals(command);
      const out = await body(g, ...(args.slice(0, -1) as A));
      if (g.json) stdout.write(`${JSON.stringify(out.value, null, 2)}\n`);
      else for (const line of out.human) stdout.write(`${line}\n`);
      exitCode = out.exitCode ?? EXIT.ok;
    };

  // --- images -------------------------------------------------------------------------------
  program
    .command("import")
    .description("adopt an RBD image (or one of its snapshots) as a golden image (import_ceph_image)")
    .argument("<project>")
    .argument("<image>", "the RBD image; also the BMI name unless --name")
    .option("--snap <snapshot>", "import from this existing snapshot (import_ceph_snapshot)")
    .option("--protect", "protect the source snapshot and leave it protected")
    .option("--name <name>", "the BMI name (default: the RBD name)")
    .option("--public", "mark the image public")
    .action(
      action(
        async (
          g,
          project: string,
          source: string,
          o: { snap?: string; protect?: boolean; name?: string; public?: boolean },
        ) => {
          const image = await wire(g).bmi.importImage(
            {
              project,
              source,
              ...(o.name ? { name: o.name } : {}),
              ...(o.snap ? { snapshot: o.snap } : {}),
              ...(o.protect ? { protect: true } : {}),
              ...(o.public ? { isPublic: true } : {}),
            },
            withStop,
          );
          return { value: image, human: [`imported ${source} as ${image.name} (RBD ${image.cephName})`] };
        },
      ),
    );

  program
    .command("export")
    .description("copy an image out of BMI to a free RBD name, flattened (export_ceph_image)")
    .argument("<project>")
    .argument("<image>")
    .argument("<rbd-name>")
    .action(
      action(async (g, project: string, image: string, rbdName: string) => {
        await wire(g).bmi.exportImage({ project, image, rbdName }, withStop);
        return { value: { project, image, rbdName }, human: [`exported ${image} to RBD image ${rbdName}`] };
      }),
    );

  const copyOrMove = (verb: "cp" | "mv") =>
    program
      .command(verb)
      .description(
        verb === "cp"
          ? "copy an image to a project (same or another), as an independent image (copy_image)"
          : "move (and optionally rename) an image to another project; the RBD name stays (move_image)",
      )
      .argument("<src-project>")
      .argument("<image>")
      .argument("<dest-project>")
      .argument("[dest-name]", "default: the same name")
      .action(
        action(async (g, project: string, image: string, destProject: string, destName?: string) => {
          const { bmi } = wire(g);
          const input = { project, image, destProject, ...(destName ? { destName } : {}) };
          const result =
            verb === "cp" ? await bmi.copyImage(input, withStop) : await bmi.moveImage(input, withStop);
          return {
            value: result,
            human: [
              `${verb === "cp" ? "copied" : "moved"} ${project}/${image} to ${destProject}/${result.name}`,
            ],
          };
        }),
      );
  copyOrMove("cp");
  copyOrMove("mv");

  const listImages = action((g, project: string) => {
    const images = wire(g).bmi.listImages({ project });
    return { value: images, human: images.map((i) => i.name) };
  });
  program
    .command("ls")
    .description("list a project's golden images (list_images; also: bmi image ls)")
    .argument("<project>")
    .action(listImages);
  const removeImage = action(async (g, project: string, image: string) => {
    await wire(g).bmi.removeImage({ project, image }, withStop);
    return { value: { project, image, removed: true }, human: [`removed ${image}`] };
  });
  program
    .command("rm")
    .description("remove a golden or snapshot image (remove_image)")
    .argument("<project>")
    .argument("<image>")
    .action(removeImage);
  const image = program.command("image").description("images (also: bmi ls, bmi rm)");
  image.command("ls").description("list a project's golden images").argument("<project>").action(listImages);
  image
    .command("rm")
    .description("remove a golden or snapshot image")
    .argument("<project>")
    .argument("<image>")
    .action(removeImage);

  // --- projects -----------------------------------------------------------------------------
  const project = program.command("project").description("projects (tenants)");
  project
    .command("create")
    .description("create a project (add_project)")
    .argument("<name>")
    .option("--id <n>", "explicit id, to restore an old deployment", (v) => Number.parseInt(v, 10))
    .action(
      action(async (g, name: string, o: { id?: number }) => {
        const created = await wire(g).bmi.createProject(
          {
            name,
            ...(o.id !== undefined ? { id: o.id } : {}),
          },
          withStop,
        );
        return { value: created, human: [`project ${created.name} created (id ${created.id})`] };
      }),
    );
  project
    .command("rm")
    .description("delete an empty project (delete_project; refused while it has images or nodes)")
    .argument("<name>")
    .action(
      action(async (g, name: string) => {
        await wire(g).bmi.deleteProject({ name }, withStop);
        return { value: { name, removed: true }, human: [`project ${name} removed`] };
      }),
    );
  project
    .command("ls")
    .description("list projects (list_projects)")
    .action(
      action((g) => {
        const projects = wire(g).bmi.listProjects();
        return { value: projects, human: projects.map((p) => `${p.id}\t${p.name}`) };
      }),
    );

  // --- disks --------------------------------------------------------------------------------
  const disk = program.command("disk").description("disks: copy-on-write clones exported over iSCSI");
  disk
    .command("create")
    .description("clone an image and export the clone as an iSCSI target (create_disk)")
    .argument("<project>")
    .argument("<image>")
    .argument("<disk>")
    .action(
      action(async (g, project: string, image: string, diskName: string) => {
        const created = await wire(g).bmi.createDisk({ project, image, disk: diskName }, withStop);
        return {
          value: created,
          human: [
            `disk ${created.name} created: RBD ${created.cephName}, target ${created.target?.name ?? "-"}`,
          ],
        };
      }),
    );
  disk
    .command("delete")
    .alias("rm")
    .description("remove a disk's target and clone (delete_disk)")
    .argument("<project>")
    .argument("<disk>")
    .option("--force", "remove the target even with initiators logged in")
    .action(
      action(async (g, project: string, diskName: string, o: { force?: boolean }) => {
        await wire(g).bmi.deleteDisk(
          { project, disk: diskName, ...(o.force ? { force: true } : {}) },
          withStop,
        );
        return { value: { project, disk: diskName, removed: true }, human: [`disk ${diskName} deleted`] };
      }),
    );
  const listDisks = action((g, project: string) => {
    const disks = wire(g).bmi.listDisks({ project });
    const { store } = opened[opened.length - 1] as WiredBmi;
    const parent = (id: number | null) => (id === null ? "" : (store.getImageById(id)?.name ?? ""));
    return {
      value: disks.map((d) => ({ ...d, parent: parent(d.parentId) })),
      human: disks.map((d) => `${d.name}\t${parent(d.parentId)}\t${d.target?.name ?? "-"}\t${d.node ?? "-"}`),
    };
  });
  disk
    .command("ls")
    .description("list a project's disks: name, source image, target, node")
    .argument("<project>")
    .action(listDisks);
  program
    .command("showdisks")
    .description("list a project's disks (list_disks)")
    .argument("<project>")
    .action(listDisks);

  // --- nodes --------------------------------------------------------------------------------
  const provisionAction = action(
    async (
      g,
      projectName: string,
      node: string,
      diskName: string,
      nic: string | undefined,
      o: { image?: string; firmware?: "bios" | "uefi" },
    ) => {
      const record = await wire(g).bmi.provision(
        {
          project: projectName,
          node,
          disk: diskName,
          ...(nic ? { nic } : {}),
          ...(o.image ? { image: o.image } : {}),
          ...(o.firmware ? { firmware: o.firmware } : {}),
        },
        withStop,
      );
      return { value: record, human: [provisionedLine(record)] };
    },
  );
  program
    .command("provision")
    .alias("pro")
    .description(
      "make a node boot from a disk: checks the node is the project's in HIL, writes its boot files (provision)",
    )
    .argument("<project>")
    .argument("<node>")
    .argument("<disk>")
    .argument("[nic]", "the booting NIC's label (default: the node's first NIC)")
    .option("--image <image>", "create the disk from this image first")
    .addOption(new Option("--firmware <firmware>").choices(["bios", "uefi"]))
    .action(provisionAction);
  program
    .command("provision-many")
    .description("provision many nodes with progress; each line of <file>: node disk [nic]")
    .argument("<project>")
    .argument(
      "<file>",
      "one node per line: `node disk [nic]` (# comments), or a JSON array of {node, disk, nic?}",
    )
    .option("--image <image>", "create each missing disk from this image")
    .option("--concurrency <n>", "nodes at once", (v) => Number.parseInt(v, 10), 4)
    .action(
      action(async (g, projectName: string, file: string, o: { image?: string; concurrency: number }) => {
        const entries = parseBatch(await readFile(file, "utf8"));
        const { bmi } = wire(g);
        const results: (
          | { ok: true; node: string; value: Provisioning }
          | { ok: false; node: string; error: BmiError }
        )[] = [];
        const tasks = new Listr(
          entries.map((entry) => ({
            title: `${entry.node} ← ${entry.disk}`,
            task: async (_ctx: unknown, task: { title: string }) => {
              try {
                const value = await bmi.provision(
                  {
                    project: projectName,
                    ...entry,
                    ...(o.image ? { image: o.image } : {}),
                  },
                  withStop,
                );
                results.push({ ok: true, node: entry.node, value });
                task.title = provisionedLine(value);
              } catch (error) {
                const e = toBmiError(error);
                results.push({ ok: false, node: entry.node, error: e });
                throw e;
              }
            },
          })),
          {
            concurrent: Math.max(1, o.concurrency),
            exitOnError: false,
            renderer: g.json ? "silent" : "simple",
            // Progress goes to stderr so stdout stays the result.
            rendererOptions: {
              logger: new ListrLogger({
                processOutput: new ProcessOutput(stderr as NodeJS.WriteStream, stderr as NodeJS.WriteStream),
              }),
            },
          },
        );
        await tasks.run().catch(() => {});
        const ordered = entries.map((e) => results.find((r) => r.node === e.node));
        const failed = ordered.filter((r) => r && !r.ok) as { ok: false; node: string; error: BmiError }[];
        return {
          value: ordered.map((r) =>
            r?.ok
              ? { node: r.node, ok: true, provisioning: r.value }
              : { node: r?.node, ok: false, error: r?.ok === false ? r.error.toJSON() : null },
          ),
          human: [
            `${ordered.length - failed.length} of ${ordered.length} node(s) provisioned`,
            ...failed.map((f) => `FAILED ${f.node}: ${f.error.message} (${f.error.code})`),
          ],
          exitCode: failed[0] ? exitCodeFor(failed[0].error) : EXIT.ok,
        };
      }),
    );
  const deprovisionAction = action(
    async (
      g,
      projectName: string,
      node: string,
      nic: string | undefined,
      o: { deleteDisk?: boolean; force?: boolean },
    ) => {
      const wired = wire(g);
      const record = wired.bmi.listProvisionings({ project: projectName }).find((p) => p.node === node);
      if (record && nic && record.nic !== nic) {
        throw new BmiError(
          "invalid_input",
          `node ${node} is provisioned through NIC ${record.nic}, not ${nic}`,
        );
      }
      await wired.bmi.deprovision(
        {
          project: projectName,
          node,
          ...(o.deleteDisk ? { deleteDisk: true } : {}),
          ...(o.force ? { force: true } : {}),
        },
        withStop,
      );
      return {
        value: { project: projectName, node, deprovisioned: true, diskDeleted: o.deleteDisk === true },
        human: [`node ${node} deprovisioned${o.deleteDisk ? ` and disk ${record?.disk ?? ""} deleted` : ""}`],
      };
    },
  );
  program
    .command("deprovision")
    .alias("dpro")
    .description("remove a node's boot files and provisioning record (deprovision)")
    .argument("<project>")
    .argument("<node>")
    .argument("[nic]", "accepted for compatibility; must match the provisioned NIC")
    .option("--delete-disk", "also delete the node's disk")
    .option(
      "--force",
      "administrator: release a node that HIL has since given to another project (no ownership check)",
    )
    .action(deprovisionAction);
  program
    .command("nodes")
    .description("list provisioned nodes: node, disk, NIC, MAC, target")
    .argument("[project]")
    .action(
      action((g, projectName?: string) => {
        const records = wire(g).bmi.listProvisionings(projectName ? { project: projectName } : {});
        return {
          value: records,
          human: records.map(
            (r) => `${r.node}\t${r.project}\t${r.disk}\t${r.nic}\t${r.mac}\t${r.target.name}`,
          ),
        };
      }),
    );

  // --- snapshots ----------------------------------------------------------------------------
  const snap = program.command("snap").description("snapshots: a disk's content saved as a new image");
  snap
    .command("create")
    .description("save a disk as a new image marked as snapshot (create_snapshot)")
    .argument("<project>")
    .argument("<disk>")
    .argument("<snapshot>")
    .option("--force", "snapshot a disk that boots a node (power it off first)")
    .action(
      action(async (g, projectName: string, diskName: string, snapshot: string, o: { force?: boolean }) => {
        const created = await wire(g).bmi.snapshotDisk(
          {
            project: projectName,
            disk: diskName,
            snapshot,
            ...(o.force ? { force: true } : {}),
          },
          withStop,
        );
        return {
          value: created,
          human: [`snapshot ${created.name} of ${diskName} created (RBD ${created.cephName})`],
        };
      }),
    );
  snap
    .command("ls")
    .description("list a project's snapshots with their source image (list_snapshots)")
    .argument("<project>")
    .action(
      action((g, projectName: string) => {
        const snaps = wire(g).bmi.listSnapshots({ project: projectName });
        return {
          value: snaps.map((s) => ({ ...s.image, parent: s.parent })),
          human: snaps.map((s) => `${s.image.name}\t${s.parent ?? ""}`),
        };
      }),
    );
  snap
    .command("rm")
    .description("remove a snapshot (remove_image)")
    .argument("<project>")
    .argument("<snapshot>")
    .action(removeImage);

  // --- iSCSI --------------------------------------------------------------------------------
  const iscsi = program.command("iscsi").description("mount images as iSCSI targets");
  iscsi
    .command("create")
    .description("export an image as an iSCSI target (mount_image)")
    .argument("<project>")
    .argument("<image>")
    .action(
      action(async (g, projectName: string, imageName: string) => {
        const target = await wire(g).bmi.mountImage({ project: projectName, image: imageName }, withStop);
        return {
          value: target,
          human: [
            `${imageName} mounted: ${target.name} at ${target.portal}:${target.port} LUN ${target.lun}`,
          ],
        };
      }),
    );
  iscsi
    .command("rm")
    .description("remove an image's iSCSI target (umount_image)")
    .argument("<project>")
    .argument("<image>")
    .option("--force", "even with initiators logged in")
    .action(
      action(async (g, projectName: string, imageName: string, o: { force?: boolean }) => {
        await wire(g).bmi.unmountImage(
          {
            project: projectName,
            image: imageName,
            ...(o.force ? { force: true } : {}),
          },
          withStop,
        );
        return {
          value: { project: projectName, image: imageName, unmounted: true },
          human: [`${imageName} unmounted`],
        };
      }),
    );
  iscsi
    .command("ls")
    .description("list a project's mounted images and disks with their targets (show_mounted)")
    .argument("<project>")
    .action(
      action((g, projectName: string) => {
        const mounts = wire(g).bmi.listMounts({ project: projectName });
        return {
          value: mounts,
          human: mounts.map(
            (m) => `${m.image}\t${m.target.name}\t${m.target.portal}:${m.target.port}\t${m.target.lun}`,
          ),
        };
      }),
    );

  // --- administration -----------------------------------------------------------------------
  const db = program.command("db").description("the database");
  db.command("init")
    .description("create (or migrate) the database and the admin project ([bmi] admin_project, bmi_infra)")
    .action(
      action(async (g) => {
        const wired = wire(g, true);
        const admin = wired.settings.adminProject;
        const existing = wired.bmi.listProjects().find((p) => p.name === admin);
        const created = existing ?? (await wired.bmi.createProject({ name: admin }, withStop));
        return {
          value: {
            path: wired.config.db.path,
            adminProject: created,
            created: !existing,
            warnings: wired.store.warnings,
          },
          human: [
            `database ${wired.config.db.path} ready`,
            `admin project ${admin} (id ${created.id}) ${existing ? "already existed" : "created"}`,
            ...wired.store.warnings.map((w) => `warning: ${w}`),
          ],
        };
      }),
    );
  db.command("ls")
    .description(
      "list every image row (list_all_images): id, name, project, RBD name, public, snapshot, parent",
    )
    .option("-s, --snapshots", "only snapshots")
    .option("-c, --clones", "only disks (clones)")
    .option("-p, --public", "only public images")
    .option("--project <project>")
    .option("--name <name>")
    .option("--ceph <rbd-name>")
    .action(
      action(
        (
          g,
          o: {
            snapshots?: boolean;
            clones?: boolean;
            public?: boolean;
            project?: string;
            name?: string;
            ceph?: string;
          },
        ) => {
          const { bmi } = wire(g);
          const projects = new Map(bmi.listProjects().map((p) => [p.id, p.name]));
          const all = bmi.listAllImages();
          const byId = new Map(all.map((i) => [i.id, i]));
          // The original's precedence: -s, else -c, else -p; then every given filter must match.
          const kind = (i: Image) =>
            o.snapshots ? i.isSnapshot : o.clones ? i.kind === "disk" : o.public ? i.isPublic : true;
          const rows = all
            .filter(kind)
            .filter((i) => o.project === undefined || projects.get(i.projectId) === o.project)
            .filter((i) => o.name === undefined || i.name === o.name)
            .filter((i) => o.ceph === undefined || i.cephName === o.ceph)
            .map((i) => ({
              id: i.id,
              name: i.name,
              project: projects.get(i.projectId) ?? "",
              cephName: i.cephName,
              isPublic: i.isPublic,
              isSnapshot: i.isSnapshot,
              parent: i.parentId === null ? "" : (byId.get(i.parentId)?.name ?? ""),
            }));
          return {
            value: rows,
            human: rows.map((r) =>
              [r.id, r.name, r.project, r.cephName, r.isPublic, r.isSnapshot, r.parent].join("\t"),
            ),
          };
        },
      ),
    );

  program
    .command("reconcile")
    .description(
      "compare database, RBD images, targets and boot files; report drift (exit 4 while drift remains)",
    )
    .option("--repair", "repair what this database proves an unfinished operation of ours left behind")
    .option(
      "--remove <subject...>",
      "with --repair: also remove these `unknown` objects (images, targets, boot files) by name",
    )
    .action(
      action(async (g, o: { repair?: boolean; remove?: string[] }) => {
        const report = await wire(g).bmi.reconcile(
          {
            repair: o.repair === true,
            ...(o.remove ? { remove: o.remove } : {}),
          },
          withStop,
        );
        const repairedKeys = new Set(report.repaired.map((d) => `${d.kind}:${d.subject}`));
        const remaining = report.drift.filter((d) => !repairedKeys.has(`${d.kind}:${d.subject}`));
        return {
          value: report,
          human: [
            report.drift.length === 0 ? "no drift" : `${report.drift.length} drift(s):`,
            ...report.drift.map(
              (d) =>
                `${repairedKeys.has(`${d.kind}:${d.subject}`) ? "repaired" : "found"}\t${d.kind}\t${d.subject}\t${d.detail}${d.repair && !o.repair ? ` (repair: ${d.repair})` : ""}`,
            ),
            ...report.failed.map((f) => `FAILED\t${f.drift.kind}\t${f.drift.subject}\t${f.error}`),
          ],
          exitCode: remaining.length > 0 ? EXIT.conflict : EXIT.ok,
        };
      }),
    );

  program
    .command("doctor")
    .description(
      "check that the config loads and Ceph, tgtd, the TFTP root and HIL work; says how to fix what does not",
    )
    .action(
      action(async (g) => {
        const checks = await runDoctor({ ...(g.config ? { path: g.config } : {}), env });
        const ok = checks.every((c) => c.ok);
        return {
          value: { ok, checks },
          human: checks.map(
            (c) =>
              `${c.ok ? "OK  " : "FAIL"} ${c.name.padEnd(8)} ${c.detail}${c.fix ? `\n     fix: ${c.fix}` : ""}`,
          ),
          exitCode: ok ? EXIT.ok : EXIT.serverFault,
        };
      }),
    );

  program
    .command("config")
    .description("print the loaded configuration with secrets redacted")
    .action(
      action((g) => {
        const loaded = loadConfig({ ...(g.config ? { path: g.config } : {}), env });
        if (!g.json) for (const w of loaded.warnings) stderr.write(`bmi: warning: ${w}\n`);
        // The effective values, and which of the original's older names were read as which.
        const shown = { ...redactedConfig(loaded.config), mapped: loaded.mapped };
        return {
          value: shown,
          human: [
            JSON.stringify(redactedConfig(loaded.config), null, 2),
            ...loaded.mapped.map((m) => `# ${m}`),
          ],
        };
      }),
    );

  program
    .command("serve")
    .description("serve the original BMI REST routes on [rest_api] ip:port (alias [http]), plus GET /health")
    .option("--ip <address>", "bind address (default [rest_api] ip)")
    .option("--port <port>", "port (default [rest_api] port; 0 = any free port)", (v) =>
      Number.parseInt(v, 10),
    )
    .option(
      "--drain <seconds>",
      "on SIGTERM/SIGINT, let running requests finish this long, then cancel and undo them",
      seconds,
      DEFAULT_DRAIN_MS / 1000,
    )
    .action(
      action(async (g, o: { ip?: string; port?: number; drain: number }) => {
        const wired = wire({ ...g, verbose: false });
        // The server logs to [logs] path at [logs] debug's level, and always to stderr, which is
        // what its operator (or systemd's journal) watches; --verbose adds the debug lines.
        const configured = loggerFromConfig(
          { ...wired.config.logs, verbose: true },
          { console: stderr, forceConsole: g.verbose === true },
        );
        logFiles.push(configured);
        const { logger } = configured;
        if (!wired.config.rest_api && o.port === undefined) {
          throw new BmiError(
            "invalid_input",
            "no [rest_api] section (ip, port) in the config and no --port given",
            {
              subsystem: "config",
            },
          );
        }
        const server = await startRestServer({
          bmi: wired.bmi,
          config: wired.config,
          drivers: wired.drivers,
          logger,
          ...(o.ip ? { host: o.ip } : {}),
          ...(o.port !== undefined ? { port: o.port } : {}),
        });
        if (!g.json) stdout.write(`bmi REST server listening on ${server.url}\n`);
        options.onListening?.(server.url);
        await untilAborted(stopping.signal);
        const drained = await server.close({ graceMs: o.drain * 1000 });
        logger.info(drained, "stopped");
        return { value: { url: server.url, stopped: true, ...drained }, human: ["stopped"] };
      }),
    );

  try {
    await program.parseAsync([...argv], { from: "user" });
  } catch (error) {
    if (error instanceof CommanderError) {
      // Help and version exit 0; anything else is a usage error.
      exitCode = error.exitCode === 0 ? EXIT.ok : EXIT.usage;
    } else {
      const e = toBmiError(error);
      exitCode = exitCodeFor(e);
      if (argv.includes("--json")) stdout.write(`${JSON.stringify({ error: e.toJSON() }, null, 2)}\n`);
      else stderr.write(`bmi: error: ${e.message} (${e.code})\n`);
    }
  } finally {
    stopping.dispose();
    for (const wired of opened) wired.close();
    for (const log of logFiles) log.close();
  }
  return exitCode;
}

function provisionedLine(r: Provisioning): string {
  return `node ${r.node} boots disk ${r.disk} through ${r.nic} (${r.mac}) from ${r.target.name}`;
}

/** A batch file: JSON array of {node, disk, nic?}, or lines `node disk [nic]`. */
function parseBatch(text: string): { node: string; disk: string; nic?: string }[] {
  const trimmed = text.trim();
  if (trimmed.startsWith("[")) {
    let value: unknown;
    try {
      value = JSON.parse(trimmed);
    } catch (cause) {
      throw new BmiError("invalid_input", "the batch file is not valid JSON", { cause });
    }
    if (!Array.isArray(value)) throw new BmiError("invalid_input", "the batch file must be a JSON array");
    return value.map((entry, i) => {
      const e = entry as Record<string, unknown>;
      if (
        typeof e?.node !== "string" ||
        typeof e.disk !== "string" ||
        (e.nic !== undefined && typeof e.nic !== "string")
      ) {
        throw new BmiError(
          "invalid_input",
          `batch entry ${i + 1} needs string node and disk (and optional nic)`,
        );
      }
      return { node: e.node, disk: e.disk, ...(typeof e.nic === "string" ? { nic: e.nic } : {}) };
    });
  }
  const entries: { node: string; disk: string; nic?: string }[] = [];
  for (const [i, raw] of text.split("\n").entries()) {
    const line = raw.replace(/#.*/, "").trim();
    if (!line) continue;
    const [node, diskName, nic, extra] = line.split(/\s+/);
    if (!node || !diskName || extra !== undefined) {
      throw new BmiError("invalid_input", `batch line ${i + 1}: expected \`node disk [nic]\``);
    }
    entries.push({ node, disk: diskName, ...(nic ? { nic } : {}) });
  }
  if (entries.length === 0) throw new BmiError("invalid_input", "the batch file names no nodes");
  const seen = new Set<string>();
  for (const e of entries) {
    if (seen.has(e.node))
      throw new BmiError("invalid_input", `node ${e.node} appears twice in the batch file`);
    seen.add(e.node);
  }
  return entries;
}

/** A duration option: a finite number of seconds, 0 or more. */
function seconds(value: string): number {
  const parsed = Number(value);
  if (value.trim() === "" || !Number.isFinite(parsed) || parsed < 0) {
    throw new InvalidArgumentError("must be a number of seconds, 0 or more");
  }
  return parsed;
}

/**
 * The signal that stops the running command: the caller's, else the first SIGINT or SIGTERM.
 * After that first signal the handlers are removed, so a second one ends the process at once
 * (what reconcile is for); the first lets running operations finish or undo themselves.
 */
function stopSignal(
  given: AbortSignal | undefined,
  stderr: Writable,
): { signal: AbortSignal; dispose(): void } {
  if (given) return { signal: given, dispose: () => {} };
  const controller = new AbortController();
  const dispose = () => {
    process.off("SIGINT", stop);
    process.off("SIGTERM", stop);
  };
  const stop = (name: NodeJS.Signals) => {
    dispose();
    stderr.write(`bmi: ${name}: stopping once running operations end (send it again to stop at once)\n`);
    controller.abort();
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
  return { signal: controller.signal, dispose };
}

function untilAborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => signal.addEventListener("abort", () => resolve(), { once: true }));
}
