import { open } from "node:fs/promises";
import { z } from "zod";

export const DEFAULT_BOOT_MARKER = "BMI-BOOT-OK";
export const DEFAULT_BOOT_IMAGE_BYTES = 32 * 1024 * 1024;

const Marker = z.string().regex(/^[\x20-\x7e]{1,200}$/, {
  error: "marker must be 1-200 printable ASCII characters",
});

/**
 * A tiny x86 real-mode assembler: enough for one boot sector, with 8-bit relative jumps
 * resolved after all labels are known.
 */
class Asm {
  readonly bytes: number[] = [];
  private readonly labels = new Map<string, number>();
  private readonly fixups: { at: number; label: string }[] = [];
  private readonly absFixups: { at: number; label: string; base: number }[] = [];

  emit(...bytes: number[]): this {
    this.bytes.push(...bytes);
    return this;
  }
  label(name: string): this {
    this.labels.set(name, this.bytes.length);
    return this;
  }
  /** A short jump (`opcode rel8`) to `label`. */
  jump8(opcode: number, label: string): this {
    this.emit(opcode, 0);
    this.fixups.push({ at: this.bytes.length - 1, label });
    return this;
  }
  /** `mov si, imm16` with the absolute address of `label` (the sector is loaded at `base`). */
  movSiLabel(label: string, base: number): this {
    this.emit(0xbe, 0, 0);
    this.absFixups.push({ at: this.bytes.length - 2, label, base });
    return this;
  }
  resolve(): Uint8Array {
    const where = (label: string) => {
      const offset = this.labels.get(label);
      if (offset === undefined) throw new Error(`unknown label ${label}`);
      return offset;
    };
    for (const { at, label } of this.fixups) {
      const rel = where(label) - (at + 1);
      if (rel < -128 || rel > 127) throw new Error(`jump to ${label} out of range`);
      this.bytes[at] = rel & 0xff;
    }
    for (const { at, label, base } of this.absFixups) {
      const address = base + where(label);
      this.bytes[at] = address & 0xff;
      this.bytes[at + 1] = address >> 8;
    }
    return Uint8Array.from(this.bytes);
  }
}

/**
 * A 512-byte MBR boot sector that prints `marker` on the screen (BIOS int 10h) and then on COM1
 * (port 0x3F8, 115200 8N1, written directly so it shows even without a BIOS serial console),
 * and halts. Two passes, not interleaved, so a BIOS that mirrors the screen to the serial port
 * cannot mix the two copies. iPXE's `sanboot` loads it from the SAN disk at 0x7C00 like a BIOS.
 */
export function bootSector(marker: string = DEFAULT_BOOT_MARKER): Uint8Array {
  const text = Marker.parse(marker);
  const base = 0x7c00;
  const a = new Asm();
  // Segments at 0, stack below the sector.
  a.emit(0xfa, 0x31, 0xc0, 0x8e, 0xd8, 0x8e, 0xc0, 0x8e, 0xd0, 0xbc, 0x00, 0x7c, 0xfb, 0xfc); // cli; xor ax,ax; mov ds/es/ss,ax; mov sp,7c00; sti; cld
  // COM1: DLAB on, divisor 1 (115200), DLAB off with 8N1.
  a.emit(0xba, 0xfb, 0x03, 0xb0, 0x80, 0xee); // mov dx,3fb; mov al,80; out dx,al
  a.emit(0xba, 0xf8, 0x03, 0xb0, 0x01, 0xee); // mov dx,3f8; mov al,1; out dx,al
  a.emit(0x42, 0x30, 0xc0, 0xee); // inc dx; xor al,al; out dx,al
  a.emit(0xba, 0xfb, 0x03, 0xb0, 0x03, 0xee); // mov dx,3fb; mov al,3; out dx,al
  // Pass 1: screen, teletype output.
  a.movSiLabel("msg", base);
  a.label("screen").emit(0xac, 0x84, 0xc0); // lodsb; test al,al
  a.jump8(0x74, "serial_start"); // jz
  a.emit(0xb4, 0x0e, 0xbb, 0x07, 0x00, 0xcd, 0x10); // mov ah,0e; mov bx,7; int 10h
  a.jump8(0xeb, "screen");
  // Pass 2: serial, polling the line status register until the transmitter is empty.
  a.label("serial_start");
  a.movSiLabel("msg", base);
  a.label("serial").emit(0xac, 0x84, 0xc0); // lodsb; test al,al
  a.jump8(0x74, "halt");
  a.emit(0x88, 0xc3, 0xba, 0xfd, 0x03); // mov bl,al; mov dx,3fd
  a.label("wait").emit(0xec, 0xa8, 0x20); // in al,dx; test al,20h
  a.jump8(0x74, "wait");
  a.emit(0x88, 0xd8, 0xba, 0xf8, 0x03, 0xee); // mov al,bl; mov dx,3f8; out dx,al
  a.jump8(0xeb, "serial");
  a.label("halt").emit(0xfa, 0xf4); // cli; hlt
  a.jump8(0xeb, "halt");
  a.label("msg").emit(...Buffer.from(`\r\n${text}\r\n`, "ascii"), 0);
  const code = a.resolve();
  if (code.length > 446) throw new Error("boot sector code does not fit before the partition table");
  const sector = new Uint8Array(512);
  sector.set(code, 0);
  sector[510] = 0x55;
  sector[511] = 0xaa;
  return sector;
}

export interface BuildBootImageOptions {
  /** What the image prints when it boots (default `BMI-BOOT-OK`). */
  marker?: string;
  /**
   * Image size, a multiple of 512 (default 32 MiB, sparse). iPXE's int 13h emulation assumes 255
   * heads x 63 sectors when there is no partition table; a disk under one such cylinder (7.8 MiB)
   * gets 0 cylinders and its boot sector read fails ("Input/output error", ipxe.org/1d852039).
   */
  sizeBytes?: number;
}

export interface BootImage {
  path: string;
  marker: string;
  sizeBytes: number;
}

/** Writes a raw disk image at `path` whose first sector is {@link bootSector}; the rest is zeros (sparse). */
export async function buildBootImage(path: string, options: BuildBootImageOptions = {}): Promise<BootImage> {
  const marker = options.marker ?? DEFAULT_BOOT_MARKER;
  const sizeBytes = options.sizeBytes ?? DEFAULT_BOOT_IMAGE_BYTES;
  if (!Number.isInteger(sizeBytes) || sizeBytes < 512 || sizeBytes % 512 !== 0) {
    throw new Error("sizeBytes must be a positive multiple of 512");
  }
  const sector = bootSector(marker);
  const handle = await open(path, "w", 0o644);
  try {
    await handle.write(sector, 0, sector.length, 0);
    await handle.truncate(sizeBytes);
  } finally {
    await handle.close();
  }
  return { path, marker, sizeBytes };
}
