import { z } from "zod";

/** Resource shapes of /v1, as the OpenAPI document shows them (loose: a newer server may add fields). */
const name = (what: string) => z.string().min(1).max(128).describe(what);

export const Target = z.looseObject({
  name: z.string().describe("full IQN, or the bare RBD name with [iscsi] bare_target_names"),
  portal: z.string(),
  port: z.number().int(),
  lun: z.number().int(),
});
export const Project = z.looseObject({ id: z.number().int(), name: z.string() });
export const Image = z.looseObject({
  id: z.number().int(),
  name: z.string(),
  projectId: z.number().int(),
  parentId: z.number().int().nullable(),
  isPublic: z.boolean(),
  isSnapshot: z.boolean(),
  cephName: z.string().describe("the RBD image name"),
  kind: z.enum(["golden", "disk", "snapshot"]),
});
export const Disk = Image.extend({ target: Target.nullable(), node: z.string().nullable() });
export const Provisioning = z.looseObject({
  node: z.string(),
  project: z.string(),
  disk: z.string(),
  diskId: z.number().int(),
  nic: z.string(),
  mac: z.string(),
  firmware: z.enum(["bios", "uefi"]),
  target: Target,
  network: z.string().nullable(),
  createdAt: z.string(),
});
export const BootWait = z.looseObject({
  state: z.enum(["SUCCESS", "FAILURE", "TIMEOUT", "ABORTED"]),
  node: z.string(),
  stages: z.array(z.looseObject({ stage: z.string(), atMs: z.number() })),
  reason: z.string().optional(),
  durationMs: z.number(),
});
export const PowerState = z.object({ node: z.string(), state: z.enum(["on", "off", "unknown"]) });
export const Snapshot = z.object({ image: Image, parent: z.string().nullable() });
export const Mount = z.object({ image: z.string(), target: Target });
const DriftItem = z.looseObject({
  kind: z.string(),
  subject: z.string(),
  detail: z.string(),
  repair: z.string().nullable(),
});
export const Reconcile = z.object({
  drift: z.array(DriftItem),
  repaired: z.array(DriftItem),
  failed: z.array(
    z.object({
      drift: DriftItem,
      error: z.string(),
      code: z.string().describe("the error's stable code, e.g. busy"),
      retryable: z.boolean().describe("true when running reconcile again later may succeed"),
    }),
  ),
});
export const BmiErrorBody = z
  .object({
    error: z.looseObject({
      code: z
        .string()
        .describe(
          "stable code: invalid_input, not_found, already_exists, conflict, busy, unauthenticated, forbidden, ...",
        ),
      message: z.string(),
      fault: z.enum(["client", "server"]).optional(),
      retryable: z.boolean().optional(),
      subsystem: z.string().nullable().optional(),
      details: z.record(z.string(), z.unknown()).optional(),
    }),
  })
  .describe("a BmiError");

export const ProjectParams = z.object({ project: name("BMI project") });
export const NodeParams = ProjectParams.extend({ node: name("node name in HIL") });
export const ImageParams = ProjectParams.extend({ image: name("image name") });
export const DiskParams = ProjectParams.extend({ disk: name("disk name") });
export const Empty = z.object({});
/** `?flag=true` in a query string. */
export const flag = z
  .enum(["true", "false"])
  .optional()
  .transform((v) => (v === undefined ? undefined : v === "true"));
