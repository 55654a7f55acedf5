import {
  type Backing,
  type BackingKind,
  BmiError,
  type CallOptions,
  type CommandRunner,
  DEFAULT_IQN_PREFIX,
  driverKit,
  type ExportAccess,
  ExportAccessSchema,
  type ExportDriver,
  type ExportRequest,
  Host,
  IqnPrefix,
  type Logger,
  Port,
  TargetName,
} from "@bmi/core";
import { z } from "zod";

/** Validation, signal checks and error labels shared by every part of the tgt driver. */
export const kit = driverKit("export");

/** BMI serves the disk as LUN 1; LUN 0 is tgt's controller. */
export const LUN = 1;

/** The backing kinds tgtd serves (a `memory` backing passes the schema, then is `unsupported`). */
export const SERVED_BACKINGS: readonly BackingKind[] = ["rbd", "file"];

export interface TgtExportOptions {
  /** The address initiators connect to (reported in results and written into boot scripts). */
  portal: string;
  /** The iSCSI port tgtd listens on. Default 3260. */
  port?: number;
  /** tgtd's control port (`tgtadm -C`), for a tgtd started with `-C`. Default: tgtadm's own (0). */
  controlPort?: number;
  /** Per tgtadm call. Default 10 s. */
  timeoutMs?: number;
  /** The tgtadm executable. Default `tgtadm` on PATH. */
  tgtadm?: string;
  /**
   * Target naming for `targetNameFor()`: `{ iqnPrefix }` gives `<prefix>:<rbd name>`; `"bare"` keeps
   * the original BMI's bare `<uid>img<id>` names so nodes booted by an existing BMI keep booting.
   */
  naming?: { iqnPrefix: string } | "bare";
  /** Defaults for rbd backings that carry no `conf` / `clientId` (tgt's `--bsopts conf=...;id=...`). */
  rbd?: { conf?: string; clientId?: string };
  /** Runs tgtadm; default an execa runner. Tests pass a recording runner, a remote host a remote one. */
  runner?: CommandRunner;
  logger?: Logger;
  /** Chooses target ids (default: random in [1, 2^30), see `allocateTid`). Tests pass a counter. */
  tids?: () => number;
}

/** The tgt ExportDriver plus what callers of this driver in particular need. */
export interface TgtExportDriver extends ExportDriver {
  /** The target name for an RBD image under the configured naming. */
  targetNameFor(rbdName: string): string;
  setInitiators(target: string, initiators: ExportAccess["initiators"], options?: CallOptions): Promise<void>;
}

const SafePath = z
  .string()
  .regex(/^\/[A-Za-z0-9_./-]*$/, { error: "must be an absolute path of letters, digits, '_', '.', '/', '-'" })
  .refine((p) => !p.split("/").includes(".."), { error: "must not contain '..'" });
const ClientId = z
  .string()
  .regex(/^[A-Za-z0-9_.-]{1,64}$/, { error: "must be letters, digits, '_', '.', '-'" });
const CephName = z.string().regex(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$/, {
  error: "must be letters, digits, '_', '.', '-'",
});

const OptionsSchema = z.object({
  portal: Host,
  port: Port.default(3260),
  controlPort: z.number().int().min(0).max(32767).optional(),
  timeoutMs: z.number().int().positive().default(10_000),
  tgtadm: z.string().min(1).default("tgtadm"),
  naming: z
    .union([z.literal("bare"), z.object({ iqnPrefix: IqnPrefix })])
    .default({ iqnPrefix: DEFAULT_IQN_PREFIX }),
  rbd: z.object({ conf: SafePath.optional(), clientId: ClientId.optional() }).optional(),
});

/** The validated options, defaults filled in. */
export type TgtConfig = z.output<typeof OptionsSchema>;

const BackingSchema = z.discriminatedUnion("kind", [
  z.object({
    kind: z.literal("rbd"),
    pool: CephName,
    image: CephName,
    conf: SafePath.optional(),
    clientId: ClientId.optional(),
  }),
  z.object({ kind: z.literal("file"), path: SafePath }),
  z.object({ kind: z.literal("memory"), image: z.string() }),
]);

/** The options checked before anything runs: `invalid_input` naming the bad field. */
export function parseTgtOptions(options: TgtExportOptions): TgtConfig {
  const config = kit.input(OptionsSchema, options, "options");
  if (options.runner !== undefined && typeof options.runner !== "function") {
    throw new BmiError("invalid_input", "invalid options.runner: must be a CommandRunner function", {
      subsystem: kit.subsystem,
      details: { field: "options.runner" },
    });
  }
  return config;
}

/** A request checked field by field, and refused `unsupported` for a backing tgtd cannot serve. */
export function validateRequest(request: ExportRequest): ExportRequest {
  const target = kit.input(TargetName, request?.target, "target");
  const backing = kit.input(BackingSchema, request?.backing, "backing") as Backing;
  if (!SERVED_BACKINGS.includes(backing.kind)) {
    throw new BmiError("unsupported", `tgt cannot serve ${backing.kind} backings`, {
      subsystem: kit.subsystem,
      details: { field: "backing.kind", kind: backing.kind },
    });
  }
  const access = kit.input(ExportAccessSchema, request?.access, "access") as ExportAccess;
  return { target, backing, access };
}

/** A target name checked like `request.target`. */
export const validateTarget = (target: string): string => kit.input(TargetName, target, "target");
