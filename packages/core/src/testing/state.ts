import type { BootDriver, ExportDriver, IsolationDriver, StorageDriver } from "../ports/index.js";
import type { Store } from "../store/index.js";

export interface StateSources {
  storage: StorageDriver;
  export: ExportDriver;
  boot: BootDriver;
  isolation?: IsolationDriver;
  /** Nodes whose network attachments to capture. */
  nodes?: string[];
  store?: Store;
}

/**
 * Everything a BMI operation can change, as plain data: RBD images with their snapshots and
 * parents, targets, boot files, attachments and the store's rows. Take it before and after an
 * operation that failed and `expect(after).toEqual(before)`: "nothing left behind" (COR-1).
 * The journal is left out on purpose; a failed operation must journal its failure.
 */
export async function captureState(sources: StateSources) {
  const { storage, store } = sources;
  const images = await Promise.all(
    (await storage.list()).sort().map(async (name) => {
      const info = await storage.info(name);
      const snapshots = (await storage.listSnapshots(name)).sort((a, b) => a.name.localeCompare(b.name));
      return { name, parent: info.parent, sizeBytes: info.sizeBytes, snapshots };
    }),
  );
  const targets = (await sources.export.list())
    .map((t) => ({
      target: t.target,
      lun: t.lun,
      backing: t.backing,
      ...(t.initiators === undefined ? {} : { initiators: t.initiators }),
    }))
    .sort((a, b) => a.target.localeCompare(b.target));
  const boot = (await sources.boot.list())
    .map((e) => ({ ...e, files: [...e.files].sort() }))
    .sort((a, b) => a.node.localeCompare(b.node));
  const attachments = sources.isolation
    ? (await Promise.all((sources.nodes ?? []).map((n) => sources.isolation?.attachments(n) ?? []))).flat()
    : [];
  const db = store
    ? {
        projects: await store.projects.list(),
        images: await store.images.list(),
        exports: await store.exports.list(),
        provisionings: await store.provisionings.list(),
      }
    : null;
  return { images, targets, boot, attachments, db };
}

export type CapturedState = Awaited<ReturnType<typeof captureState>>;
