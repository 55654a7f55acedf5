import type { Command } from "commander";
import { type Column, done, list } from "../output.js";
import { IMAGE_COLUMNS, type NamedImage } from "./columns.js";
import type { CliContext } from "./context.js";
import { withColumns } from "./options.js";
import { withProgress } from "./progress.js";

const SNAPSHOT_COLUMNS: Column<NamedImage>[] = IMAGE_COLUMNS.filter((c) => c.name !== "kind");

/** `bmi snap create|ls|rm|flatten`: a disk's content saved as a new image. */
export function registerSnapshots(program: Command, ctx: CliContext): void {
  const snap = program.command("snap").description("snapshots: a disk's content saved as a new image");
  snap
    .command("create")
    .description("save a disk as a new image marked as snapshot (create_snapshot)")
    .argument("<project>")
    .argument("<disk>")
    .argument("<snapshot>")
    .option("--force", "snapshot a disk that boots a running node (power it off first)")
    .action(
      ctx.action(async (g, project: string, disk: string, snapshot: string, o: { force?: boolean }) => {
        const { bmi } = ctx.connect(g);
        const input = { project, disk, snapshot, ...(o.force ? { force: true } : {}) };
        const created = await withProgress(ctx, g, bmi, `snapshot ${disk} as ${snapshot}`, () =>
          bmi.snapshotDisk(input, ctx.call),
        );
        return done(created, [`snapshot ${created.name} of ${disk} created (RBD ${created.cephName})`]);
      }),
    );
  withColumns(
    snap.command("ls").description("list a project's snapshots with their source image (list_snapshots)"),
  )
    .argument("<project>")
    .action(
      ctx.action(async (g, project: string) => {
        const rows = await ctx.connect(g).bmi.listSnapshots({ project });
        return list(
          rows.map((s) => ({ ...s.image, parent: s.parent })),
          SNAPSHOT_COLUMNS,
        );
      }),
    );
  snap
    .command("rm")
    .description("remove a snapshot (remove_image)")
    .argument("<project>")
    .argument("<snapshot>")
    .action(
      ctx.action(async (g, project: string, image: string) => {
        await ctx.connect(g).bmi.removeImage({ project, image }, ctx.call);
        return done({ project, image, removed: true }, [`removed ${image}`]);
      }),
    );
  snap
    .command("flatten")
    .description("copy the data of snapshots that still share it with their disks, so the disks can go")
    .action(
      ctx.action(async (g) => {
        const { bmi } = ctx.connect(g);
        const count = await withProgress(ctx, g, bmi, "flatten snapshots", () =>
          bmi.flattenPending(ctx.call),
        );
        return done({ flattened: count }, [`${count} snapshot(s) flattened`]);
      }),
    );
}
