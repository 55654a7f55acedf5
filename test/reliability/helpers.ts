import type { BootDriver, ExportDriver, IsolationDriver, StorageDriver } from "@bmi/core";
import { captureState } from "@bmi/core/testing";
import type { BmiLab } from "@bmi/lab";

export { createFaultInjector, type FaultInjector, MUTATING_METHODS } from "@bmi/core/testing";

/** A storage driver that only sees this lab's RBD images (the pool is shared with other files). */
export function scopedStorage(lab: BmiLab): StorageDriver {
  const { uid } = lab.settings;
  const storage = lab.drivers.storage;
  const ours = (name: string) => name.startsWith(`${uid}img`) || name.startsWith(`lab${uid}-`);
  return { ...storage, list: async (o) => (await storage.list(o)).filter(ours) };
}

/** Everything BMI can change in this lab: RBD images and snapshots, targets, boot files, HIL attachments, DB rows. */
export function labState(lab: BmiLab) {
  return captureState({
    storage: scopedStorage(lab),
    export: lab.drivers.export,
    boot: lab.drivers.boot,
    isolation: lab.drivers.isolation,
    nodes: lab.nodes.map((n) => n.name),
    store: lab.store,
  });
}

export type Drivers = {
  storage: StorageDriver;
  export: ExportDriver;
  boot: BootDriver;
  isolation: IsolationDriver;
};
