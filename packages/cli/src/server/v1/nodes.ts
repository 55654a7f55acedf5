import type { FastifyInstance } from "fastify";
import { z } from "zod";
import type { ServerContext } from "../context.js";
import { projectListRoute, v1Route } from "./route.js";
import { BootWait, flag, NodeParams, PowerState, Provisioning } from "./schemas.js";

const tag = "nodes";

/** Nodes: provisioning (boot files, network, record), power through the BMC, and waiting for a boot. */
export function nodeRoutes(app: FastifyInstance, ctx: ServerContext): void {
  provisioningRoutes(app, ctx);
  powerRoutes(app, ctx);
}

/** Listing, provisioning and deprovisioning a project's nodes. */
function provisioningRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const { bmi } = ctx;
  projectListRoute(app, ctx, {
    resource: "nodes",
    tag,
    summary: "List the project's provisioned nodes",
    row: Provisioning,
    run: (project) => bmi.listProvisionings({ project }),
  });
  v1Route(app, ctx, {
    method: "PUT",
    url: "/projects/:project/nodes/:node",
    tag,
    summary:
      "Provision a node from a disk (created from image when given). Again with the same disk: no change. With another disk: refused unless switchDisk=true",
    access: "node",
    params: NodeParams,
    body: z.object({
      disk: z.string(),
      image: z.string().optional(),
      nic: z.string().optional(),
      firmware: z.enum(["bios", "uefi"]).optional(),
      switchDisk: z.boolean().optional().describe("switch a node provisioned with another disk to this one"),
      power: z.enum(["cycle", "on", "none"]).optional(),
      wait: z.boolean().optional(),
      timeoutMs: z.number().int().optional(),
    }),
    response: Provisioning.extend({ boot: BootWait.optional() }),
    run: ({ params, body }, { signal }) => bmi.provision({ ...params, ...body }, { signal }),
  });
  v1Route(app, ctx, {
    method: "DELETE",
    url: "/projects/:project/nodes/:node",
    tag,
    summary:
      "Deprovision a node. Not provisioned: 404 unless missingOk=true. deleteDisk=true also deletes its disk; powerOff=true powers it off first",
    access: "node",
    params: NodeParams,
    query: z.object({ deleteDisk: flag, powerOff: flag, missingOk: flag }),
    status: 204,
    run: ({ params, query }, { signal }) => {
      const options = Object.fromEntries(Object.entries(query).filter(([, v]) => v === true));
      return bmi.deprovision({ ...params, ...options }, { signal });
    },
  });
}

/** A node's power through its BMC, and waiting until it has booted. */
function powerRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const { bmi } = ctx;
  v1Route(app, ctx, {
    method: "GET",
    url: "/projects/:project/nodes/:node/power",
    tag,
    summary: "The node's power state, from its BMC",
    access: "node",
    params: NodeParams,
    response: PowerState,
    run: async ({ params }, { signal }) => ({
      node: params.node,
      state: await bmi.powerStatus(params, { signal }),
    }),
  });
  v1Route(app, ctx, {
    method: "POST",
    url: "/projects/:project/nodes/:node/power",
    tag,
    summary: "Power a node on, off or cycle it (optionally setting the boot device first)",
    access: "node",
    params: NodeParams,
    body: z.object({
      action: z.enum(["on", "off", "cycle"]),
      force: z.boolean().optional(),
      bootDevice: z.enum(["pxe", "disk"]).optional(),
    }),
    response: PowerState,
    run: async ({ params, body }, { signal }) => ({
      node: params.node,
      state: await bmi.power({ ...params, ...body }, { signal }),
    }),
  });
  v1Route(app, ctx, {
    method: "POST",
    url: "/projects/:project/nodes/:node/wait-for-boot",
    tag,
    summary: "Wait until a provisioned node has booted from its disk; answers the waiter's state",
    access: "node",
    params: NodeParams,
    body: z.object({
      until: z.enum(["firmware_login", "os_login"]).optional(),
      timeoutMs: z.number().int().min(1).max(3_600_000).optional(),
    }),
    response: BootWait,
    run: ({ params, body }, { signal }) => {
      const { until, timeoutMs } = body;
      return bmi.waitForBoot(
        { ...params, ...(until ? { until } : {}) },
        { signal, ...(timeoutMs ? { timeoutMs } : {}) },
      );
    },
  });
}
