import { z } from "zod";

/** Response shapes of the HIL v0 endpoints the client uses (spec §5). Extra keys are tolerated. */
export const NodeDetails = z.object({
  name: z.string(),
  project: z.string().nullable(),
  nics: z.array(
    z.object({
      label: z.string(),
      macaddr: z.string(),
      /** channel → network; only applied (DONE) attachments. */
      networks: z.record(z.string(), z.string()),
      /** Admin-only keys. */
      port: z.string().nullable().optional(),
      switch: z.string().nullable().optional(),
    }),
  ),
  /** Values are JSON text (HIL encodes them twice). */
  metadata: z.record(z.string(), z.string()),
});
export type NodeDetails = z.output<typeof NodeDetails>;

export const NameList = z.array(z.string());

export const StatusId = z.object({ status_id: z.string().min(1) });

export const ActionStatus = z.enum(["PENDING", "DONE", "ERROR"]);
export type ActionStatus = z.output<typeof ActionStatus>;

export const NetworkingAction = z.object({
  status: ActionStatus,
  node: z.string(),
  nic: z.string(),
  type: z.enum(["modify_port", "revert_port"]),
  channel: z.string(),
  new_network: z.string().nullable(),
});
export type NetworkingAction = z.output<typeof NetworkingAction>;

export const NetworkDetails = z.object({
  name: z.string(),
  owner: z.string(),
  access: z.array(z.string()).nullable(),
  channels: z.array(z.string()),
  "connected-nodes": z.record(z.string(), z.array(z.string())),
});
export type NetworkDetails = z.output<typeof NetworkDetails>;

export const NetworkList = z.record(
  z.string(),
  z.object({ network_id: z.string(), projects: z.array(z.string()).nullable() }),
);
export type NetworkList = z.output<typeof NetworkList>;

export const NetworkAttachments = z.record(
  z.string(),
  z.object({ nic: z.string(), channel: z.string(), project: z.string().nullable() }),
);
export type NetworkAttachments = z.output<typeof NetworkAttachments>;
