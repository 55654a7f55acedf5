import { TargetName } from "../../domain/names.js";
import { ExportAccessSchema } from "../../domain/schemas.js";
import { BmiError } from "../../errors/index.js";
import type { CallOptions } from "../../ports/common.js";
import { driverKit } from "../../ports/driver-kit.js";
import type {
  ExportAccess,
  ExportCapabilities,
  ExportDriver,
  ExportedTarget,
  ExportRequest,
  InitiatorSession,
} from "../../ports/export.js";
import type { Backing, BackingKind } from "../../ports/storage.js";
import { createFaultGate, type FaultGate } from "./fault-gate.js";

export type MemoryExportOperation = "export" | "unexport" | "list" | "restore" | "setInitiators";

export interface MemoryExportOptions {
  portal?: string;
  port?: number;
  /** Defaults: every backing kind, ACL and CHAP supported. */
  capabilities?: Partial<ExportCapabilities>;
}

/** What the in-memory target server holds for one target. */
interface MemoryTarget {
  request: ExportRequest;
  sessions: InitiatorSession[];
}

/** The in-memory ExportDriver plus the knobs unit tests turn. */
export interface MemoryExportDriver extends ExportDriver {
  /** Pretends `count` initiators are logged in to `target` (throws `not_found` if absent). */
  setSessions(target: string, count: number): void;
  /** An initiator logs in to `target` (a new session, with the next id); returns the session id. */
  login(target: string, initiator: string, address?: string): number;
  /** Ends one session (or every session of the target when `id` is absent). */
  logout(target: string, id?: number): void;
  /** Whether an initiator would be let in, by the target's ACL and CHAP rules. */
  canLogin(
    target: string,
    initiator: { name?: string; address?: string; chap?: { user: string; secret: string } },
  ): boolean;
  /** Like a target daemon restart: every target is gone; call `restore()` to bring them back. */
  simulateRestart(): void;
  /**
   * The next `times` calls of `operation` fail with `error` (default: an injected `unavailable`)
   * before changing anything; failures asked for again queue behind the ones still pending.
   */
  failNext(operation: MemoryExportOperation, error?: Error, times?: number): void;
}

const kit = driverKit("export");
const subsystem = kit.subsystem;

/** True when two requests ask for the same target (backing and access alike). */
export function sameExportRequest(a: ExportRequest, b: ExportRequest): boolean {
  return a.target === b.target && sameBacking(a.backing, b.backing) && sameAccess(a.access, b.access);
}

export function sameBacking(a: Backing, b: Backing): boolean {
  if (a.kind === "rbd" && b.kind === "rbd") {
    return a.pool === b.pool && a.image === b.image;
  }
  if (a.kind === "file" && b.kind === "file") return a.path === b.path;
  if (a.kind === "memory" && b.kind === "memory") return a.image === b.image;
  return false;
}

function sameAccess(a: ExportAccess, b: ExportAccess): boolean {
  const norm = (x: ExportAccess) =>
    JSON.stringify({
      i:
        x.initiators === "ALL"
          ? "ALL"
          : { a: [...(x.initiators.addresses ?? [])].sort(), n: [...(x.initiators.names ?? [])].sort() },
      c: x.chap ? [x.chap.user, x.chap.secret] : null,
    });
  return norm(a) === norm(b);
}

/** `unsupported` naming the field a driver without that capability cannot honour. */
const unsupported = (message: string, details: Record<string, unknown>) =>
  new BmiError("unsupported", message, { subsystem, details });

/** Validates a request against the port's rules and a driver's capabilities (names the bad field). */
export function validateExportRequest(
  request: ExportRequest,
  capabilities: ExportCapabilities,
): ExportRequest {
  const target = kit.input(TargetName, request?.target, "target");
  const access = kit.input(ExportAccessSchema, request?.access, "access");
  const backing = request?.backing;
  if (typeof backing !== "object" || backing === null || typeof backing.kind !== "string") {
    throw new BmiError("invalid_input", "invalid backing: must be an object with a kind", {
      subsystem,
      details: { field: "backing" },
    });
  }
  if (!capabilities.backings.includes(backing.kind as BackingKind)) {
    throw unsupported(`this export driver cannot serve ${backing.kind} backings`, {
      field: "backing.kind",
      kind: backing.kind,
    });
  }
  if (access.initiators !== "ALL" && !capabilities.acl) {
    throw unsupported("this export driver cannot restrict initiators (no ACL support)", {
      field: "access.initiators",
    });
  }
  if (access.chap && !capabilities.chap) {
    throw unsupported("this export driver does not support CHAP", { field: "access.chap" });
  }
  return { target, backing, access: access as ExportAccess };
}

function matchesAddress(rule: string, address: string): boolean {
  if (!rule.includes("/")) return rule === address;
  const [net, bitsText] = rule.split("/");
  const bits = Number(bitsText);
  const toInt = (ip: string) => ip.split(".").reduce((n, part) => (n << 8) + Number(part), 0) >>> 0;
  const mask = bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0;
  return (toInt(net ?? "") & mask) >>> 0 === (toInt(address) & mask) >>> 0;
}

type LoginAttempt = Parameters<MemoryExportDriver["canLogin"]>[1];

/** Whether `access` lets `initiator` in, by its ACL and CHAP rules. */
function admits(access: ExportAccess, initiator: LoginAttempt): boolean {
  if (access.initiators !== "ALL") {
    // Like tgt: one list of rules; an initiator is admitted when its name OR its address matches one.
    const byName = initiator.name !== undefined && (access.initiators.names ?? []).includes(initiator.name);
    const address = initiator.address;
    const byAddress =
      address !== undefined &&
      (access.initiators.addresses ?? []).some((rule) => matchesAddress(rule, address));
    if (!byName && !byAddress) return false;
  }
  if (access.chap) {
    return initiator.chap?.user === access.chap.user && initiator.chap.secret === access.chap.secret;
  }
  return true;
}

/** The targets the in-memory server holds, and how it reports them. */
function createTargetTable(portal: string, port: number) {
  const targets = new Map<string, MemoryTarget>();
  return {
    targets,
    view: (target: MemoryTarget): ExportedTarget => ({
      target: target.request.target,
      portal,
      port,
      lun: 1,
      backing: structuredClone(target.request.backing),
      sessions: target.sessions.length,
      initiators: structuredClone(target.request.access.initiators),
    }),
    mustGet(target: string): MemoryTarget {
      const found = targets.get(target);
      if (!found)
        throw new BmiError("not_found", `target ${target} does not exist`, {
          subsystem,
          details: { target },
        });
      return found;
    },
    add(request: ExportRequest): MemoryTarget {
      const created: MemoryTarget = { request: structuredClone(request), sessions: [] };
      targets.set(request.target, created);
      return created;
    },
  };
}
type TargetTable = ReturnType<typeof createTargetTable>;

/**
 * The port's methods: each validates its input, then passes the gate (cancelled, or an injected
 * failure) before changing anything.
 */
function portMethods(
  table: TargetTable,
  capabilities: ExportCapabilities,
  gate: FaultGate<MemoryExportOperation>,
) {
  const { targets, view, mustGet } = table;
  return {
    async export(request: ExportRequest, call: CallOptions = {}) {
      kit.checkSignal(call, "export");
      const valid = validateExportRequest(request, capabilities);
      gate.enter("export", call);
      const existing = targets.get(valid.target);
      if (!existing) return view(table.add(valid));
      if (sameExportRequest(existing.request, valid)) return view(existing);
      throw new BmiError(
        "already_exists",
        `target ${valid.target} already exists with a different backing or access`,
        {
          subsystem,
          details: { target: valid.target },
        },
      );
    },

    async unexport(target: string, call: CallOptions & { force?: boolean } = {}) {
      kit.checkSignal(call, "unexport");
      const name = kit.input(TargetName, target, "target");
      gate.enter("unexport", call);
      const found = mustGet(name);
      if (found.sessions.length > 0 && !call.force) {
        throw new BmiError(
          "busy",
          `target ${name} has ${found.sessions.length} initiator session(s) logged in`,
          {
            subsystem,
            details: { target: name, sessions: found.sessions.length },
          },
        );
      }
      targets.delete(name);
    },

    async list(call: CallOptions = {}) {
      gate.enter("list", call);
      return [...targets.values()].map(view);
    },

    async setInitiators(target: string, initiators: ExportAccess["initiators"], call: CallOptions = {}) {
      kit.checkSignal(call, "setInitiators");
      const found = mustGet(kit.input(TargetName, target, "target"));
      const { access } = validateExportRequest({ ...found.request, access: { initiators } }, capabilities);
      gate.enter("setInitiators", call);
      found.request = {
        ...found.request,
        access: { ...found.request.access, initiators: access.initiators },
      };
    },

    async restore(requests: ExportRequest[], call: CallOptions = {}) {
      kit.checkSignal(call, "restore");
      const valid = requests.map((r) => validateExportRequest(r, capabilities));
      gate.enter("restore", call);
      const created: string[] = [];
      for (const request of valid) {
        if (targets.has(request.target)) continue;
        table.add(request);
        created.push(request.target);
      }
      return created;
    },

    async sessions(target: string, call: CallOptions = {}) {
      kit.checkSignal(call, "sessions");
      return mustGet(target).sessions.map((session) => ({ ...session, addresses: [...session.addresses] }));
    },
  };
}

/** The knobs unit tests turn: who is logged in, and who would be let in. */
function sessionKnobs(table: TargetTable) {
  const { targets, mustGet } = table;
  let lastSession = 0;
  return {
    setSessions(target: string, count: number) {
      const found = mustGet(target);
      found.sessions = [];
      for (let i = 0; i < count; i++)
        found.sessions.push({ id: ++lastSession, initiator: `iqn.test:${i}`, addresses: [] });
    },

    login(target: string, initiator: string, address?: string) {
      const id = ++lastSession;
      mustGet(target).sessions.push({ id, initiator, addresses: address ? [address] : [] });
      return id;
    },

    logout(target: string, id?: number) {
      const found = mustGet(target);
      found.sessions = id === undefined ? [] : found.sessions.filter((s) => s.id !== id);
    },

    canLogin(target: string, initiator: LoginAttempt) {
      const found = targets.get(target);
      return found !== undefined && admits(found.request.access, initiator);
    },
  };
}

/**
 * An in-memory target server: targets by name, LUN 1, a session counter tests set, `busy` on
 * unexport with sessions (unless forced), restarts and failures on demand.
 */
export function createMemoryExport(options: MemoryExportOptions = {}): MemoryExportDriver {
  const capabilities: ExportCapabilities = {
    backings: options.capabilities?.backings ?? ["memory", "file", "rbd"],
    acl: options.capabilities?.acl ?? true,
    chap: options.capabilities?.chap ?? true,
  };
  const table = createTargetTable(options.portal ?? "127.0.0.1", options.port ?? 3260);
  const gate = createFaultGate<MemoryExportOperation>(subsystem);
  return {
    name: "memory",
    capabilities,
    ...portMethods(table, capabilities, gate),
    ...sessionKnobs(table),
    simulateRestart() {
      table.targets.clear();
    },
    failNext: (operation, error, times) => gate.failNext(operation, error, times),
  };
}
