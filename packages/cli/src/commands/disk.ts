import type { Command } from "commander";
import { done, list, show } from "../output.js";
import { DISK_COLUMNS, found, withParent, withParents } from "./columns.js";
import type { CliContext } from "./context.js";
import { columnsCommand } from "./options.js";
import { withProgress } from "./progress.js";

/** `bmi disk create|delete|ls|show` and the original's `showdisks`: CoW clones exported over iSCSI. */
export function registerDisks(program: Command, ctx: CliContext): void {
  const disk = program.command("disk").description("disks: copy-on-write clones exported over iSCSI");
  disk
    .command("create")
    .description("clone an image and export the clone as an iSCSI target (create_disk)")
    .argument("<project>")
    .argument("<image>")
    .argument("<disk>")
    .action(
      ctx.action(async (g, project: string, image: string, name: string) => {
        const { bmi } = ctx.connect(g);
        const created = await withProgress(ctx, g, bmi, `create disk ${name} from ${image}`, () =>
          bmi.createDisk({ project, image, disk: name }, ctx.call),
        );
        const target = created.target?.name ?? "-";
        return done(created, [`disk ${created.name} created: RBD ${created.cephName}, target ${target}`]);
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
      ctx.action(async (g, project: string, name: string, o: { force?: boolean }) => {
        const input = { project, disk: name, ...(o.force ? { force: true } : {}) };
        const { bmi } = ctx.connect(g);
        await withProgress(ctx, g, bmi, `delete disk ${name}`, () => bmi.deleteDisk(input, ctx.call));
        return done({ project, disk: name, removed: true }, [`disk ${name} deleted`]);
      }),
    );
  const listDisks = ctx.action(async (g, project: string) => {
    const { bmi } = ctx.connect(g);
    return list(withParents(await bmi.listDisks({ project }), await bmi.listAllImages()), DISK_COLUMNS);
  });
  const listCommand = (command: Command) => columnsCommand(command, ["<project>"], listDisks);
  listCommand(disk.command("ls").description("list a project's disks: name, source image, target, node"));
  listCommand(program.command("showdisks").description("list a project's disks (list_disks)"));
  const showDisk = ctx.action(async (g, project: string, name: string) => {
    const { bmi } = ctx.connect(g);
    const row = (await bmi.listDisks({ project })).find((d) => d.name === name);
    const named = withParent(found(row, `disk ${name} in project ${project}`), await bmi.listAllImages());
    return show(named, DISK_COLUMNS);
  });
  columnsCommand(disk.command("show").description("show one disk"), ["<project>", "<disk>"], showDisk);
}
