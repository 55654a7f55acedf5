// Example: wire BMI with tsyringe, and swap one driver for your own.
// `registerFromConfig` (@bmi/wiring) registers the stock drivers, the store and the settings under
// core's TOKENS, wired as the CLI wires them; a child container overrides one registration (here
// the boot driver, wrapped with an audit trail) without touching the others.
import {
  type Bmi,
  type BootDriver,
  type BootEntry,
  type BootSpec,
  type DependencyContainer,
  loadConfig,
  resolveBmi,
  TOKENS,
} from "@bmi/core";
import { container as rootContainer } from "@bmi/core/di";
import { registerFromConfig } from "@bmi/wiring";

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

/** Wiring as an application would do it at start-up. `close()` closes the drivers and the store. */
export function main(configPath?: string): { bmi: Bmi; audit: AuditRecord[]; close: () => Promise<void> } {
  const container = rootContainer.createChildContainer();
  const { config } = loadConfig(configPath === undefined ? {} : { path: configPath });
  registerFromConfig(container, config);
  const audit: AuditRecord[] = [];
  const bmi = auditedBmi(container, audit);
  return { bmi, audit, close: () => bmi.close() };
}
