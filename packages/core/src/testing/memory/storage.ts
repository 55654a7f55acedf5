import { readFile, writeFile } from "node:fs/promises";
import { BmiError } from "../../errors/index.js";
import type { CallOptions } from "../../ports/common.js";
import type {
  Backing,
  ImageDetails,
  SnapshotDetails,
  SnapshotRef,
  StorageCapabilities,
  StorageDriver,
} from "../../ports/storage.js";
import { createFaultGate } from "./fault-gate.js";

export interface MemoryStorageOptions {
  name?: string;
  /** RBD clone v2 semantics: unprotected snapshots may be cloned, and removed while they have children. */
  cloneUnprotected?: boolean;
}

/** The driver methods a failure can be injected into. */
export type StorageMethod = Exclude<keyof StorageDriver, "name" | "capabilities">;

/** Called before every driver call; throw from it to make the call fail. */
export type StorageCallHook = (method: StorageMethod, args: readonly unknown[]) => void | Promise<void>;

/** The in-memory driver plus hooks for tests. */
export interface MemoryStorage extends StorageDriver {
  importFile(path: string, image: string, options?: CallOptions): Promise<void>;
  exportFile(image: string, path: string, options?: CallOptions): Promise<void>;
  /** The next call of `method` fails with `error` (once), before changing anything. */
  failNext(method: StorageMethod, error?: Error): void;
  /** A hook run before every call (after `failNext`); `undefined` removes it. */
  onCall(hook: StorageCallHook | undefined): void;
  /** Every call made so far, in order (method and arguments, without the options). */
  readonly calls: ReadonlyArray<{ method: StorageMethod; args: readonly unknown[] }>;
  /** Simulates a watcher (e.g. tgtd serving the image): `remove` fails with `busy` until released. */
  addWatcher(image: string): () => void;
  /** The image's content (zero-filled to its size), for tests that check what a copy holds. */
  read(image: string): Buffer;
}

interface Snapshot {
  protected: boolean;
  /** Removed while it still had clone-v2 children: hidden, but the image keeps it until they go. */
  trashed: boolean;
  sizeBytes: number;
  data: Buffer;
}

interface Image {
  sizeBytes: number;
  parent: SnapshotRef | null;
  /** Own data; a clone reads through to `parent` until written or flattened. */
  data: Buffer | null;
  snapshots: Map<string, Snapshot>;
  watchers: number;
}

const fail = (code: ConstructorParameters<typeof BmiError>[0], message: string, details = {}) =>
  new BmiError(code, message, { subsystem: "storage", details });

type Enter = (method: StorageMethod, args: readonly unknown[], callOptions?: CallOptions) => Promise<void>;

/** The pool: images by name, and the RBD rules every method needs. */
function createPool(cloneUnprotected: boolean) {
  const images = new Map<string, Image>();

  function image(name: string): Image {
    const found = images.get(name);
    if (!found) throw fail("not_found", `image ${name} does not exist`, { image: name });
    return found;
  }

  function snapshot(ref: SnapshotRef): Snapshot {
    const found = image(ref.image).snapshots.get(ref.snapshot);
    if (!found || found.trashed) {
      throw fail("not_found", `snapshot ${ref.image}@${ref.snapshot} does not exist`, { ...ref });
    }
    return found;
  }

  function childrenOf(ref: SnapshotRef): string[] {
    const names: string[] = [];
    for (const [name, img] of images) {
      if (img.parent?.image === ref.image && img.parent.snapshot === ref.snapshot) names.push(name);
    }
    return names.sort();
  }

  /** The bytes an image shows: its own, or its parent snapshot's, zero-filled to its size. */
  function contentOf(img: Image): Buffer {
    let source: Buffer = img.data ?? Buffer.alloc(0);
    if (!img.data && img.parent) {
      source = images.get(img.parent.image)?.snapshots.get(img.parent.snapshot)?.data ?? Buffer.alloc(0);
    }
    const out = Buffer.alloc(img.sizeBytes);
    source.copy(out, 0, 0, Math.min(source.length, img.sizeBytes));
    return out;
  }

  function mustBeNew(name: string) {
    if (images.has(name)) throw fail("already_exists", `image ${name} already exists`, { image: name });
  }

  /** Drops trashed snapshots nobody clones any more (what RBD does when the last child goes). */
  function collectTrash(name: string) {
    const img = images.get(name);
    if (!img) return;
    for (const [snap, s] of img.snapshots) {
      if (s.trashed && childrenOf({ image: name, snapshot: snap }).length === 0) img.snapshots.delete(snap);
    }
  }

  return { images, cloneUnprotected, image, snapshot, childrenOf, contentOf, mustBeNew, collectTrash };
}
type Pool = ReturnType<typeof createPool>;

/** Images: create, inspect, clone, flatten, copy, remove. */
function imageMethods(pool: Pool, enter: Enter) {
  const { images, cloneUnprotected, image, snapshot, contentOf, mustBeNew, collectTrash } = pool;
  return {
    async exists(name, o) {
      await enter("exists", [name], o);
      return images.has(name);
    },

    async list(o) {
      await enter("list", [], o);
      return [...images.keys()].sort();
    },

    async info(name, o): Promise<ImageDetails> {
      await enter("info", [name], o);
      const img = image(name);
      return { name, sizeBytes: img.sizeBytes, parent: img.parent ? { ...img.parent } : null };
    },

    async create(name, sizeBytes, o) {
      await enter("create", [name, sizeBytes], o);
      if (!Number.isSafeInteger(sizeBytes) || sizeBytes < 0) {
        throw fail("invalid_input", `image size must be a non-negative integer, got ${sizeBytes}`, {
          field: "sizeBytes",
        });
      }
      mustBeNew(name);
      images.set(name, { sizeBytes, parent: null, data: null, snapshots: new Map(), watchers: 0 });
    },

    async remove(name, o) {
      await enter("remove", [name], o);
      const img = image(name);
      if (img.watchers > 0) {
        throw fail("busy", `image ${name} is in use (it has watchers, e.g. an iSCSI export)`, {
          image: name,
          reason: "watchers",
        });
      }
      if (img.snapshots.size > 0) {
        throw fail("busy", `image ${name} has snapshots; remove them first`, {
          image: name,
          reason: "snapshots",
        });
      }
      images.delete(name);
      if (img.parent) collectTrash(img.parent.image);
    },

    async clone(parent, child, o) {
      await enter("clone", [parent, child], o);
      const snap = snapshot(parent);
      mustBeNew(child);
      if (!snap.protected && !cloneUnprotected) {
        throw new BmiError(
          "conflict",
          `snapshot ${parent.image}@${parent.snapshot} must be protected before it can be cloned`,
          { subsystem: "storage", retryable: false, details: { ...parent, reason: "unprotected" } },
        );
      }
      images.set(child, {
        sizeBytes: snap.sizeBytes,
        parent: { ...parent },
        data: null,
        snapshots: new Map(),
        watchers: 0,
      });
    },

    async flatten(name, o) {
      await enter("flatten", [name], o);
      const img = image(name);
      if (!img.parent) return;
      const parent = img.parent;
      img.data = contentOf(img);
      img.parent = null;
      collectTrash(parent.image);
    },

    async copy(source, target, o) {
      await enter("copy", [source, target], o);
      let sizeBytes: number;
      let data: Buffer;
      if (typeof source === "string") {
        const img = image(source);
        sizeBytes = img.sizeBytes;
        data = contentOf(img);
      } else {
        const snap = snapshot(source);
        sizeBytes = snap.sizeBytes;
        data = Buffer.from(snap.data);
      }
      mustBeNew(target);
      images.set(target, { sizeBytes, parent: null, data, snapshots: new Map(), watchers: 0 });
    },
  } satisfies Partial<MemoryStorage>;
}

/** Snapshots: create, list, protect, unprotect, remove (clone v2: trashed while cloned), children. */
function snapshotMethods(pool: Pool, enter: Enter) {
  const { cloneUnprotected, image, snapshot, childrenOf, contentOf } = pool;
  return {
    async createSnapshot(ref, o) {
      await enter("createSnapshot", [ref], o);
      const img = image(ref.image);
      if (img.snapshots.has(ref.snapshot)) {
        throw fail("already_exists", `snapshot ${ref.image}@${ref.snapshot} already exists`, { ...ref });
      }
      img.snapshots.set(ref.snapshot, {
        protected: false,
        trashed: false,
        sizeBytes: img.sizeBytes,
        data: contentOf(img),
      });
    },

    async listSnapshots(name, o): Promise<SnapshotDetails[]> {
      await enter("listSnapshots", [name], o);
      return [...image(name).snapshots]
        .filter(([, s]) => !s.trashed)
        .map(([snap, s]) => ({ name: snap, protected: s.protected }));
    },

    async removeSnapshot(ref, o) {
      await enter("removeSnapshot", [ref], o);
      const snap = snapshot(ref);
      if (snap.protected) {
        throw fail("busy", `snapshot ${ref.image}@${ref.snapshot} is protected; unprotect it first`, {
          ...ref,
          reason: "protected",
        });
      }
      if (childrenOf(ref).length > 0) snap.trashed = true;
      else image(ref.image).snapshots.delete(ref.snapshot);
    },

    async protectSnapshot(ref, o) {
      await enter("protectSnapshot", [ref], o);
      snapshot(ref).protected = true;
    },

    async unprotectSnapshot(ref, o) {
      await enter("unprotectSnapshot", [ref], o);
      const snap = snapshot(ref);
      if (!snap.protected) return;
      const children = childrenOf(ref);
      // Clone v2 children do not rely on the protect flag (RBD allows the unprotect).
      if (children.length > 0 && !cloneUnprotected) {
        throw fail(
          "busy",
          `snapshot ${ref.image}@${ref.snapshot} has ${children.length} clone(s); flatten or remove them first`,
          { ...ref, reason: "children", children },
        );
      }
      snap.protected = false;
    },

    async children(ref, o) {
      await enter("children", [ref], o);
      snapshot(ref);
      return childrenOf(ref);
    },
  } satisfies Partial<MemoryStorage>;
}

/** Files in and out: whole-image bytes. */
function fileMethods(pool: Pool, enter: Enter) {
  const { images, image, contentOf, mustBeNew } = pool;
  return {
    async importFile(path, name, o) {
      await enter("importFile", [path, name], o);
      mustBeNew(name);
      const data = await readFile(path);
      mustBeNew(name);
      images.set(name, { sizeBytes: data.length, parent: null, data, snapshots: new Map(), watchers: 0 });
    },

    async exportFile(name, path, o) {
      await enter("exportFile", [name, path], o);
      await writeFile(path, contentOf(image(name)));
    },
  } satisfies Partial<MemoryStorage>;
}

/**
 * An in-memory StorageDriver with RBD semantics: clones only from protected snapshots (unless
 * `cloneUnprotected`, i.e. clone v2), `busy` when removing an image with snapshots, children or
 * watchers, or unprotecting a snapshot with (clone v1) children. Errors match what the Ceph driver throws.
 */
export function createMemoryStorage(options: MemoryStorageOptions = {}): MemoryStorage {
  const cloneUnprotected = options.cloneUnprotected ?? false;
  const capabilities: StorageCapabilities = { cowClone: true, liveSnapshot: true, cloneUnprotected };
  const pool = createPool(cloneUnprotected);
  const calls: Array<{ method: StorageMethod; args: readonly unknown[] }> = [];
  const gate = createFaultGate<StorageMethod>("storage");
  let hook: StorageCallHook | undefined;

  async function enter(method: StorageMethod, args: readonly unknown[], callOptions?: CallOptions) {
    calls.push({ method, args });
    gate.enter(method, callOptions);
    await hook?.(method, args);
  }

  const driver: MemoryStorage = {
    name: options.name ?? "memory",
    capabilities,
    calls,
    ...imageMethods(pool, enter),
    ...snapshotMethods(pool, enter),
    ...fileMethods(pool, enter),
    backingFor(name): Backing {
      return { kind: "memory", image: name };
    },
    failNext: (method, error) => gate.failNext(method, error),

    onCall(next) {
      hook = next;
    },

    addWatcher(name) {
      const img = pool.image(name);
      img.watchers += 1;
      let released = false;
      return () => {
        if (released) return;
        released = true;
        img.watchers -= 1;
      };
    },

    read(name) {
      return pool.contentOf(pool.image(name));
    },
  };
  return driver;
}
