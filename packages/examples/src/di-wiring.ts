// Example: wire BMI with tsyringe, and swap one driver for your own.
// Each driver package registers itself under core's TOKENS; a child container overrides one
// registration (here the boot driver, wrapped with an audit trail) without touching the others.
import {
  type Bmi,
  type BootDriver,
  type BootEntry,
  type BootSpec,
  type DependencyContainer,
  loadConfig,
  openSqliteStore,
  resolveBmi,
  settingsFromConfig,
  TOKENS,
} from "@bmi/core";
import { container as rootContainer } from "@bmi/core/di";
import { cephOptionsFromConfig, registerCephStorage } from "@bmi/driver-ceph";
import { hilOptionsFromConfig, registerHilIsolation } from "@bmi/driver-hil";
import { pxeOptionsFromConfig, registerPxeBoot } from "@bmi/driver-pxe";
import { registerTgtExport, tgtOptionsFromConfig } from "@bmi/driver-tgt";

/** Registers the four stock drivers, the store and the settings from a config file. */
export function registerFromConfig(container: DependencyContainer, configPath?: string): () => void {
  const { config } = loadConfig({ path: configPath });
  const settings = settingsFromConfig(config);
  const store = openSqliteStore({
    path: config.db.path,
    uid: settings.uid,
    snapshotName: settings.snapshotName,
  });
  registerCephStorage(container, cephOptionsFromConfig(config));
  registerTgtExport(container, tgtOptionsFromConfig(config));
  registerPxeBoot(container, pxeOptionsFromConfig(config));
  registerHilIsolation(container, hilOptionsFromConfig(config));
  container.registerInstance(TOKENS.store, store);
  container.registerInstance(TOKENS.settings, settings);
  return () => store.close();
}

export interface AuditRecord {
  action: "write" | "remove";
  node: string;
  at: string;
}

/**
 * A custom BootDriver: delegates to another one and keeps an audit trail. Any object with the
 * port's methods and capabilities is a driver; run `testBootDriver` from @bmi/core/testing/contracts on it.
 */
export function createAuditedBoot(inner: BootDriver, audit: AuditRecord[]): BootDriver {
  const record = (action: AuditRecord["action"], node: string) =>
    audit.push({ action, node, at: new Date().toISOString() });
  return {
    name: `audited(${inner.name})`,
    capabilities: inner.capabilities,
    async write(spec: BootSpec, options): Promise<BootEntry> {
      const entry = await inner.write(spec, options);
      record("write", spec.node);
      return entry;
    },
    async remove(node, options) {
      await inner.remove(node, options);
      record("remove", node);
    },
    read: (node, options) => inner.read(node, options),
    list: (options) => inner.list(options),
  };
}

/** A BMI whose boot driver is audited: a child container overrides just that registration. */
export function auditedBmi(parent: DependencyContainer, audit: AuditRecord[]): Bmi {
  const child = parent.createChildContainer();
  child.registerInstance(TOKENS.boot, createAuditedBoot(parent.resolve<BootDriver>(TOKENS.boot), audit));
  return resolveBmi(child);
}

/** Wiring as an application would do it at start-up. */
export function main(configPath?: string): { bmi: Bmi; audit: AuditRecord[]; close: () => void } {
  const container = rootContainer.createChildContainer();
  const close = registerFromConfig(container, configPath);
  const audit: AuditRecord[] = [];
  return { bmi: auditedBmi(container, audit), audit, close };
}
