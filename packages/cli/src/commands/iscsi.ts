import type { Command } from "commander";
import { done, list } from "../output.js";
import { MOUNT_COLUMNS } from "./columns.js";
import type { CliContext } from "./context.js";
import { withColumns } from "./options.js";

/** `bmi iscsi create|rm|ls`: images mounted as iSCSI targets. */
export function registerIscsi(program: Command, ctx: CliContext): void {
  const iscsi = program.command("iscsi").description("mount images as iSCSI targets");
  iscsi
    .command("create")
    .description("export an image as an iSCSI target (mount_image)")
    .argument("<project>")
    .argument("<image>")
    .action(
      ctx.action(async (g, project: string, image: string) => {
        const target = await ctx.connect(g).bmi.mountImage({ project, image }, ctx.call);
        return done(target, [
          `${image} mounted: ${target.name} at ${target.portal}:${target.port} LUN ${target.lun}`,
        ]);
      }),
    );
  iscsi
    .command("rm")
    .description("remove an image's iSCSI target (umount_image)")
    .argument("<project>")
    .argument("<image>")
    .option("--force", "even with initiators logged in")
    .action(
      ctx.action(async (g, project: string, image: string, o: { force?: boolean }) => {
        await ctx
          .connect(g)
          .bmi.unmountImage({ project, image, ...(o.force ? { force: true } : {}) }, ctx.call);
        return done({ project, image, unmounted: true }, [`${image} unmounted`]);
      }),
    );
  withColumns(
    iscsi
      .command("ls")
      .description("list a project's mounted images and disks with their targets (show_mounted)"),
  )
    .argument("<project>")
    .action(
      ctx.action(async (g, project: string) =>
        list(await ctx.connect(g).bmi.listMounts({ project }), MOUNT_COLUMNS),
      ),
    );
}
