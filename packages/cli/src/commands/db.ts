import type { Image } from "@bmi/core";
import type { Command } from "commander";
import { type Column, done, list } from "../output.js";
import type { CliContext } from "./context.js";
import { withColumns } from "./options.js";

interface DbFilters {
  snapshots?: boolean;
  clones?: boolean;
  public?: boolean;
  project?: string;
  name?: string;
  ceph?: string;
}

interface DbRow {
  id: number;
  name: string;
  project: string;
  cephName: string;
  isPublic: boolean;
  isSnapshot: boolean;
  parent: string;
}

const DB_COLUMNS: Column<DbRow>[] = (
  ["id", "name", "project", "cephName", "isPublic", "isSnapshot", "parent"] as const
).map((name) => ({ name, get: (r: DbRow) => r[name] }));

/** `bmi db init|ls`: the database itself. */
export function registerDb(program: Command, ctx: CliContext): void {
  const db = program.command("db").description("the database");
  db.command("init")
    .description("create (or migrate) the database and the admin project ([bmi] admin_project, bmi_infra)")
    .action(
      ctx.action(async (g) => {
        const { bmi, config, warnings } = ctx.connect(g, { createStore: true });
        const admin = bmi.settings.adminProject;
        const existing = (await bmi.listProjects()).find((p) => p.name === admin);
        const created = existing ?? (await bmi.createProject({ name: admin }, ctx.call));
        const value = { path: config.db.path, adminProject: created, created: !existing, warnings };
        return done(value, [
          `database ${config.db.path} ready`,
          `admin project ${admin} (id ${created.id}) ${existing ? "already existed" : "created"}`,
          ...warnings.map((w) => `warning: ${w}`),
        ]);
      }),
    );
  // The original's `-c` means clones here, so the columns option is `--column` only.
  withColumns(
    db
      .command("ls")
      .description(
        "list every image row (list_all_images): id, name, project, RBD name, public, snapshot, parent",
      )
      .option("-s, --snapshots", "only snapshots")
      .option("-c, --clones", "only disks (clones)")
      .option("-p, --public", "only public images")
      .option("--project <project>")
      .option("--name <name>")
      .option("--ceph <rbd-name>"),
    false,
  ).action(ctx.action(async (g, o: DbFilters) => list(await dbRows(ctx, g, o), DB_COLUMNS)));
}

async function dbRows(
  ctx: CliContext,
  g: Parameters<CliContext["connect"]>[0],
  o: DbFilters,
): Promise<DbRow[]> {
  const { bmi } = ctx.connect(g);
  const projects = new Map((await bmi.listProjects()).map((p) => [p.id, p.name]));
  const all = await bmi.listAllImages();
  const byId = new Map(all.map((i) => [i.id, i]));
  // The original's precedence: -s, else -c, else -p; then every given filter must match.
  const kind = (i: Image) =>
    o.snapshots ? i.isSnapshot : o.clones ? i.kind === "disk" : o.public ? i.isPublic : true;
  return all
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
}
