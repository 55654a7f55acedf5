import { randomInt } from "node:crypto";
import {
  BmiError,
  type CallOptions,
  createExecaRunner,
  type ExportAccess,
  ExportAccessSchema,
  type ExportCapabilities,
  type ExportRequest,
  registrar,
  silentLogger,
  TOKENS,
  targetNameFor,
} from "@bmi/core";
import { createTgtAccess } from "./access.js";
import { createTargetMaker } from "./create-target.js";
import { createInventory } from "./inventory.js";
import { createKnownTargets } from "./known-targets.js";
import { createKeyedMutex } from "./mutex.js";
import { createTargetRemover } from "./remove-target.js";
import {
  kit,
  parseTgtOptions,
  SERVED_BACKINGS,
  type TgtExportDriver,
  type TgtExportOptions,
  validateRequest,
  validateTarget,
} from "./tgt-options.js";
import { createTgtadm } from "./tgtadm.js";

export type { TgtExportDriver, TgtExportOptions } from "./tgt-options.js";

/** tids are drawn from [1, 2^30): tgtd accepts any positive int, and a draw never repeats in practice. */
const TID_SPACE = 2 ** 30;

/**
 * tgt needs the caller to choose a tid. A random one from a large space, rather than max + 1:
 * another process sharing this tgtd may delete a target and make a new one, and with max + 1 it
 * could reuse a tid this process still remembers for the old target (unexport would then delete
 * the wrong one). A clash with a live target is answered "already exists" and retried.
 */
const randomTid = (): number => randomInt(1, TID_SPACE);

/**
 * An ExportDriver over `tgtadm`: one target per disk, the disk as LUN 1, access by initiator
 * address / name and optional CHAP. Each export is three to five small tgtadm calls whatever the
 * number of targets (never `tgt-admin --execute`, which re-applies every target: CON-3).
 */
export function createTgtExport(options: TgtExportOptions): TgtExportDriver {
  const config = parseTgtOptions(options);
  const runner =
    options.runner ?? createExecaRunner({ subsystem: kit.subsystem, timeoutMs: config.timeoutMs });
  const log = (options.logger ?? silentLogger).child({
    driver: "tgt",
    portal: `${config.portal}:${config.port}`,
  });
  const capabilities: ExportCapabilities = { backings: [...SERVED_BACKINGS], acl: true, chap: true };
  const tgtadm = createTgtadm(config, runner);
  const targets = createKnownTargets(tgtadm);
  const accessRules = createTgtAccess(tgtadm, targets, log);
  const maker = createTargetMaker({
    config,
    tgtadm,
    targets,
    access: accessRules,
    log,
    allocateTid: options.tids ?? randomTid,
  });
  const remover = createTargetRemover({ tgtadm, targets, access: accessRules, log });
  const inventory = createInventory(config, targets);
  // One name at a time (export's list-then-add, unexport), different names in parallel.
  const perTarget = createKeyedMutex();

  return {
    name: "tgt",
    capabilities,

    targetNameFor(rbdName: string): string {
      return targetNameFor(rbdName, config.naming);
    },

    async export(request: ExportRequest, call: CallOptions = {}) {
      kit.checkSignal(call, "export");
      const valid = validateRequest(request);
      return perTarget(valid.target, async () => {
        kit.checkSignal(call, "export");
        return maker.exportOne(valid, call.signal);
      });
    },

    async unexport(target: string, call: CallOptions & { force?: boolean } = {}) {
      kit.checkSignal(call, "unexport");
      const name = validateTarget(target);
      await perTarget(name, () => remover.unexport(name, call.force === true, call.signal));
    },

    async list(call: CallOptions = {}) {
      kit.checkSignal(call, "list");
      return inventory.list(call.signal);
    },

    async sessions(target: string, call: CallOptions = {}) {
      kit.checkSignal(call, "sessions");
      return inventory.sessions(validateTarget(target), call.signal);
    },

    async setInitiators(target: string, initiators: ExportAccess["initiators"], call: CallOptions = {}) {
      kit.checkSignal(call, "setInitiators");
      const name = validateTarget(target);
      const access = kit.input(ExportAccessSchema, { initiators }, "access") as ExportAccess;
      await perTarget(name, async () => {
        const found = (await targets.show(call.signal)).find((t) => t.name === name);
        if (!found) {
          throw new BmiError("not_found", `target ${name} does not exist`, {
            subsystem: kit.subsystem,
            details: { target: name },
          });
        }
        await accessRules.replaceInitiators(found, access.initiators, call.signal);
      });
    },

    async restore(requests: ExportRequest[], call: CallOptions = {}) {
      kit.checkSignal(call, "restore");
      const valid = requests.map(validateRequest);
      const present = new Set((await targets.show(call.signal)).map((t) => t.name));
      const created: string[] = [];
      for (const request of valid) {
        kit.checkSignal(call, "restore");
        if (present.has(request.target)) continue;
        await perTarget(request.target, () => maker.exportOne(request, call.signal));
        present.add(request.target);
        created.push(request.target);
      }
      log.info({ op: "restore", created: created.length, known: valid.length }, "targets restored");
      return created;
    },
  };
}

/** Registers a tgt ExportDriver in a container under `TOKENS.export`. */
export const registerTgtExport = registrar(TOKENS.export, createTgtExport);
