import type { Command } from "commander";
import { done, list, show } from "../output.js";
import { found, PROJECT_COLUMNS } from "./columns.js";
import type { CliContext } from "./context.js";
import { integer, withColumns } from "./options.js";

/** `bmi project create|rm|ls|show`: projects (tenants). */
export function registerProjects(program: Command, ctx: CliContext): void {
  const project = program.command("project").description("projects (tenants)");
  project
    .command("create")
    .description("create a project (add_project)")
    .argument("<name>")
    .option("--id <n>", "explicit id, to restore an old deployment", integer(1, Number.MAX_SAFE_INTEGER))
    .action(
      ctx.action(async (g, name: string, o: { id?: number }) => {
        const input = { name, ...(o.id !== undefined ? { id: o.id } : {}) };
        const created = await ctx.connect(g).bmi.createProject(input, ctx.call);
        return done(created, [`project ${created.name} created (id ${created.id})`]);
      }),
    );
  project
    .command("rm")
    .description("delete an empty project (delete_project; refused while it has images or nodes)")
    .argument("<name>")
    .action(
      ctx.action(async (g, name: string) => {
        await ctx.connect(g).bmi.deleteProject({ name }, ctx.call);
        return done({ name, removed: true }, [`project ${name} removed`]);
      }),
    );
  withColumns(project.command("ls").description("list projects (list_projects)")).action(
    ctx.action(async (g) => list(await ctx.connect(g).bmi.listProjects(), PROJECT_COLUMNS)),
  );
  withColumns(project.command("show").description("show one project").argument("<name>")).action(
    ctx.action(async (g, name: string) => {
      const row = (await ctx.connect(g).bmi.listProjects()).find((p) => p.name === name);
      return show(found(row, `project ${name}`), PROJECT_COLUMNS);
    }),
  );
}
