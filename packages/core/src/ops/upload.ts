import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdtemp, open, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { isAbsolute, join } from "node:path";
import { z } from "zod";
import type { Image } from "../domain/model.js";
import { cephNameOf, ImageName, ProjectName } from "../domain/names.js";
import { parseInput } from "../domain/validate.js";
import { BmiError } from "../errors/index.js";
import { createExecaRunner } from "../exec/index.js";
import { type BmiContext, operation, requireProject } from "./context.js";
import { imageLock } from "./locks.js";
import { cloneSourceSteps, insertImageStep } from "./steps/index.js";

const UploadImageInput = z.strictObject({
  project: ProjectName,
  /** The disk image file on this host: raw or qcow2. */
  file: z.string().refine(isAbsolute, { error: "must be an absolute path" }),
  name: ImageName,
  /** Default: read from the file (qcow2's magic, else raw). */
  format: z.enum(["raw", "qcow2"]).optional(),
  /** The file's expected SHA-256 (hex): a file that differs is refused before anything is made. */
  sha256: z
    .string()
    .regex(/^[0-9a-fA-F]{64}$/, { error: "must be 64 hex digits" })
    .optional(),
  isPublic: z.boolean().optional(),
});
export type UploadImageInput = z.input<typeof UploadImageInput>;

/** What an upload made: the golden image, the file's format and its SHA-256. */
export type UploadedImage = Image & { format: "raw" | "qcow2"; sha256: string };

/** qcow2 files start with "QFI\xfb". */
async function detectFormat(file: string): Promise<"raw" | "qcow2"> {
  const handle = await open(file, "r");
  try {
    const { buffer, bytesRead } = await handle.read(Buffer.alloc(4), 0, 4, 0);
    return bytesRead === 4 && buffer.readUInt32BE(0) === 0x514649fb ? "qcow2" : "raw";
  } finally {
    await handle.close();
  }
}

async function sha256Of(file: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

async function requireRegularFile(file: string): Promise<void> {
  const info = await stat(file).catch(() => null);
  if (!info) throw new BmiError("not_found", `file ${file} not found`, { subsystem: "storage" });
  if (!info.isFile())
    throw new BmiError("invalid_input", `${file} is not a regular file`, { subsystem: "storage" });
}

/** qemu-img converts a qcow2 file to a raw one beside nothing else, in BMI's own temp dir. */
async function toRaw(file: string, work: string): Promise<string> {
  const raw = join(work, "image.raw");
  const result = await createExecaRunner({ subsystem: "storage" })(
    "qemu-img",
    ["convert", "-f", "qcow2", "-O", "raw", file, raw],
    { timeoutMs: 3_600_000 },
  );
  if (result.exitCode !== 0)
    throw new BmiError("invalid_input", `qemu-img could not convert ${file} from qcow2`, {
      subsystem: "storage",
      details: { exitCode: result.exitCode },
    });
  return raw;
}

/**
 * Uploads a disk image file (raw, or qcow2 that qemu-img converts) as a new golden image in one
 * step: the file is checksummed (and checked against `sha256` if given), imported into RBD as
 * `<uid>img<id>` and given its protected clone-source snapshot. A failure at any step removes
 * what was made; the file itself is never changed.
 */
export function uploadImage(ctx: BmiContext, input: UploadImageInput): Promise<UploadedImage> {
  const args = parseInput(UploadImageInput, input, "input");
  const { storage } = ctx.drivers;
  return operation(
    ctx,
    "upload image",
    { project: args.project, image: args.name },
    [imageLock(args.project, args.name)],
    async (saga) => {
      const project = await requireProject(ctx, args.project);
      if (await ctx.store.images.get(project.id, args.name))
        throw new BmiError("already_exists", `image ${args.name} already exists in project ${project.name}`, {
          subsystem: "store",
        });
      const importFile = storage.importFile?.bind(storage);
      if (!importFile)
        throw new BmiError("unsupported", "the storage driver cannot import files", { subsystem: "storage" });
      await requireRegularFile(args.file);
      const format = args.format ?? (await detectFormat(args.file));
      const sha256 = await saga.step("checksum file", () => sha256Of(args.file));
      if (args.sha256 && args.sha256.toLowerCase() !== sha256)
        throw new BmiError(
          "invalid_input",
          `${args.file} has SHA-256 ${sha256}, not the expected ${args.sha256}`,
          {
            subsystem: "storage",
          },
        );
      const work = await mkdtemp(join(tmpdir(), "bmi-upload-"));
      try {
        const raw =
          format === "qcow2"
            ? await saga.step("convert qcow2 to raw", () => toRaw(args.file, work))
            : args.file;
        const image = await insertImageStep(ctx, saga, {
          name: args.name,
          projectId: project.id,
          parentId: null,
          isPublic: args.isPublic ?? false,
          isSnapshot: false,
          cephName: (id) => cephNameOf(ctx.settings.uid, id),
        });
        await saga.step(
          "import file",
          () => importFile(raw, image.cephName),
          () => storage.remove(image.cephName),
          { resources: [`image:${image.cephName}`] },
        );
        await cloneSourceSteps(ctx, saga, image);
        return { ...image, format, sha256 };
      } finally {
        await rm(work, { recursive: true, force: true });
      }
    },
  );
}
