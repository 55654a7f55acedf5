import { resolve } from "node:path";
import { type Command, Option } from "commander";
import { done, list, show } from "../output.js";
import { found, IMAGE_COLUMNS, withParent, withParents } from "./columns.js";
import type { CliContext, Globals } from "./context.js";
import { columnsCommand } from "./options.js";
import { withProgress } from "./progress.js";

/** Images: `import`, `export`, `cp`, `mv`, `ls`, `rm` (the original's names) and `image ls|rm|show`. */
export function registerImages(program: Command, ctx: CliContext): void {
  registerImport(program, ctx);
  program
    .command("export")
    .description("copy an image out of BMI to a free RBD name, flattened (export_ceph_image)")
    .argument("<project>")
    .argument("<image>")
    .argument("<rbd-name>")
    .action(
      ctx.action(async (g, project: string, image: string, rbdName: string) => {
        const { bmi } = ctx.connect(g);
        const work = () => bmi.exportImage({ project, image, rbdName }, ctx.call);
        await withProgress(ctx, g, bmi, `export ${project}/${image} to ${rbdName}`, work);
        return done({ project, image, rbdName }, [`exported ${image} to RBD image ${rbdName}`]);
      }),
    );
  for (const verb of ["cp", "mv"] as const) registerCopy(program, ctx, verb);

  const listImages = ctx.action(async (g, project: string) => {
    const { bmi } = ctx.connect(g);
    return list(withParents(await bmi.listImages({ project }), await bmi.listAllImages()), IMAGE_COLUMNS);
  });
  const removeImage = ctx.action(async (g, project: string, image: string) => {
    const { bmi } = ctx.connect(g);
    await withProgress(ctx, g, bmi, `remove ${image}`, () => bmi.removeImage({ project, image }, ctx.call));
    return done({ project, image, removed: true }, [`removed ${image}`]);
  });
  const showImage = ctx.action(async (g, project: string, image: string) => {
    const { bmi } = ctx.connect(g);
    const projectId = (await bmi.listProjects()).find((p) => p.name === project)?.id;
    const all = await bmi.listAllImages();
    const row = all.find((i) => i.projectId === projectId && i.name === image && i.kind !== "disk");
    return show(withParent(found(row, `image ${image} in project ${project}`), all), IMAGE_COLUMNS);
  });
  const ls = (c: Command) => columnsCommand(c, ["<project>"], listImages);
  const rm = (c: Command) => c.argument("<project>").argument("<image>").action(removeImage);
  ls(program.command("ls").description("list a project's golden images (list_images; also: bmi image ls)"));
  rm(program.command("rm").description("remove a golden or snapshot image (remove_image)"));
  const image = program.command("image").description("images (also: bmi ls, bmi rm)");
  ls(image.command("ls").description("list a project's golden images"));
  rm(image.command("rm").description("remove a golden or snapshot image"));
  registerUpload(image, ctx);
  const showCommand = image.command("show").description("show one golden or snapshot image");
  columnsCommand(showCommand, ["<project>", "<image>"], showImage);
}

/** `bmi image upload <project> <file> <name>`: a raw or qcow2 file of this host becomes a golden image. */
function registerUpload(image: Command, ctx: CliContext): void {
  image
    .command("upload")
    .description("upload a raw or qcow2 disk image file as a new golden image (checksummed; qcow2 converted)")
    .argument("<project>")
    .argument("<file>", "the image file (relative paths are from the current directory)")
    .argument("<name>", "the golden image's name")
    .addOption(
      new Option("--format <format>", "the file's format (default: read from the file)").choices([
        "raw",
        "qcow2",
      ]),
    )
    .option("--sha256 <hex>", "refuse the file unless its SHA-256 is this")
    .option("--public", "mark the image public")
    .action(
      ctx.action(async (g: Globals, project: string, file: string, name: string, o: UploadFlags) => {
        const { bmi } = ctx.connect(g);
        const input = {
          project,
          file: resolve(file),
          name,
          ...(o.format ? { format: o.format } : {}),
          ...(o.sha256 ? { sha256: o.sha256 } : {}),
          ...(o.public ? { isPublic: true } : {}),
        };
        const uploaded = await withProgress(ctx, g, bmi, `upload ${file}`, () =>
          bmi.uploadImage(input, ctx.call),
        );
        return done(uploaded, [
          `uploaded ${file} (${uploaded.format}, sha256 ${uploaded.sha256}) as ${uploaded.name} (RBD ${uploaded.cephName})`,
        ]);
      }),
    );
}

interface UploadFlags {
  format?: "raw" | "qcow2";
  sha256?: string;
  public?: boolean;
}

function registerImport(program: Command, ctx: CliContext): void {
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
      ctx.action(async (g: Globals, project: string, source: string, o: ImportFlags) => {
        const { bmi } = ctx.connect(g);
        const input = {
          project,
          source,
          ...(o.name ? { name: o.name } : {}),
          ...(o.snap ? { snapshot: o.snap } : {}),
          ...(o.protect ? { protect: true } : {}),
          ...(o.public ? { isPublic: true } : {}),
        };
        const image = await withProgress(ctx, g, bmi, `import ${source}`, () =>
          bmi.importImage(input, ctx.call),
        );
        return done(image, [`imported ${source} as ${image.name} (RBD ${image.cephName})`]);
      }),
    );
}

interface ImportFlags {
  snap?: string;
  protect?: boolean;
  name?: string;
  public?: boolean;
}

function registerCopy(program: Command, ctx: CliContext, verb: "cp" | "mv"): void {
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
      ctx.action(async (g, project: string, image: string, destProject: string, destName?: string) => {
        const { bmi } = ctx.connect(g);
        const input = { project, image, destProject, ...(destName ? { destName } : {}) };
        const run = () => (verb === "cp" ? bmi.copyImage(input, ctx.call) : bmi.moveImage(input, ctx.call));
        const result = await withProgress(ctx, g, bmi, `${verb} ${project}/${image} to ${destProject}`, run);
        const past = verb === "cp" ? "copied" : "moved";
        return done(result, [`${past} ${project}/${image} to ${destProject}/${result.name}`]);
      }),
    );
}
