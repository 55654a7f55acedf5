import { open as openFile, unlink } from "node:fs/promises";
import type { CallOptions } from "@bmi/core";
import { check } from "./librbd-connection.js";
import { type Rbd, withImage } from "./librbd-image.js";
import type { Librbd } from "./librbd-native.js";

const CHUNK = 4 * 1024 * 1024;

type FileHandle = Awaited<ReturnType<typeof openFile>>;
const isZero = (buf: Buffer) => buf.every((b) => b === 0);

/** A new image with the file's bytes; a failed import leaves no half-written image behind. */
export async function importFile(rbd: Rbd, file: string, name: string, call: CallOptions | undefined) {
  const what = `import ${file} to ${rbd.spec(name)}`;
  const handle = await openFile(file, "r");
  try {
    const { size } = await handle.stat();
    await rbd.runData(what, call, async (lib, io) => {
      check(await lib.rbd_create(io, name, size, [0]), "other", what, { image: name });
      try {
        await withImage(lib, io, what, name, null, (img) => copyIn(lib, img, handle, size, what), false);
      } catch (error) {
        await lib.rbd_remove(io, name);
        throw error;
      }
    });
  } finally {
    await handle.close();
  }
}

/** The image's bytes into a new file (never over an existing one); removed again on failure. */
export async function exportFile(rbd: Rbd, name: string, file: string, call: CallOptions | undefined) {
  const what = `export ${rbd.spec(name)} to ${file}`;
  await rbd.runData(what, call, (lib, io) =>
    withImage(lib, io, what, name, null, async (img) => {
      const size = [0];
      check(await lib.rbd_get_size(img, size), "other", what, { image: name });
      const handle = await openFile(file, "wx");
      try {
        await copyOut(lib, img, handle, Number(size[0]), what);
      } catch (error) {
        await handle.close();
        await unlink(file).catch(() => {});
        throw error;
      }
      await handle.close();
    }),
  );
}

/** File → image in 4 MiB chunks; all-zero chunks are skipped so the image stays sparse. */
async function copyIn(lib: Librbd, img: unknown, file: FileHandle, size: number, what: string) {
  const buf = Buffer.alloc(CHUNK);
  for (let offset = 0; offset < size; offset += CHUNK) {
    const { bytesRead } = await file.read(buf, 0, Math.min(CHUNK, size - offset), offset);
    const chunk = buf.subarray(0, bytesRead);
    if (isZero(chunk)) continue;
    check(await lib.rbd_write(img, offset, chunk.length, chunk), "other", what);
  }
}

/** Image → file in 4 MiB chunks; all-zero chunks become holes. */
async function copyOut(lib: Librbd, img: unknown, file: FileHandle, size: number, what: string) {
  const buf = Buffer.alloc(CHUNK);
  await file.truncate(size);
  for (let offset = 0; offset < size; offset += CHUNK) {
    const len = Math.min(CHUNK, size - offset);
    const read = check(await lib.rbd_read(img, offset, len, buf), "other", what);
    const chunk = buf.subarray(0, read);
    if (!isZero(chunk)) await file.write(chunk, 0, chunk.length, offset);
  }
}
