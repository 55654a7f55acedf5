import type { Bmi, BootDriver, ExportDriver, StorageDriver } from "@bmi/core";
import { toBmiError } from "@bmi/core";
import type { HilClient } from "@bmi/driver-hil";
import type { FastifyInstance } from "fastify";
import { z } from "zod";

/** The drivers `/health` asks, each with one cheap read. */
export interface HealthDrivers {
  storage?: Pick<StorageDriver, "list">;
  export?: Pick<ExportDriver, "list">;
  boot?: Pick<BootDriver, "list">;
  /** HIL through BMI's own service account (the `isolation` driver of the wiring carries it). */
  isolation?: { client: Pick<HilClient, "listNodes"> };
}

const Check = z.object({ ok: z.boolean(), ms: z.number(), error: z.string().optional() });
const Health = z.object({ status: z.enum(["ok", "degraded"]), checks: z.record(z.string(), Check) });

const CHECK_TIMEOUT_MS = 5_000;

/**
 * `GET /health`: the database and every configured subsystem (Ceph, tgtd, the TFTP root, HIL),
 * 200 when all answer, 503 with the failing ones named. No credentials: it shows no data, only
 * whether each part answers (error codes, never messages that could name paths or hosts).
 */
export function healthRoute(app: FastifyInstance, bmi: Bmi, drivers: HealthDrivers): void {
  const checks: Record<string, (signal: AbortSignal) => Promise<unknown>> = {
    store: async () => bmi.listProjects(),
    ...(drivers.storage
      ? { storage: (signal) => drivers.storage?.list({ signal }) as Promise<unknown> }
      : {}),
    ...(drivers.export ? { export: (signal) => drivers.export?.list({ signal }) as Promise<unknown> } : {}),
    ...(drivers.boot ? { boot: (signal) => drivers.boot?.list({ signal }) as Promise<unknown> } : {}),
    ...(drivers.isolation
      ? { isolation: (signal) => drivers.isolation?.client.listNodes("free", { signal }) as Promise<unknown> }
      : {}),
  };
  for (const url of ["/health", "/health/"]) {
    app.route({
      method: ["GET", "HEAD"],
      url,
      schema: {
        tags: ["health"],
        summary: "Whether the database and every subsystem answer",
        security: [],
        response: { 200: Health, 503: Health },
      },
      handler: async (_request, reply) => {
        const results = await Promise.all(
          Object.entries(checks).map(async ([name, check]) => {
            const started = performance.now();
            try {
              await check(AbortSignal.timeout(CHECK_TIMEOUT_MS));
              return [name, { ok: true, ms: Math.round(performance.now() - started) }] as const;
            } catch (error) {
              const ms = Math.round(performance.now() - started);
              return [name, { ok: false, ms, error: toBmiError(error).code }] as const;
            }
          }),
        );
        const ok = results.every(([, r]) => r.ok);
        return reply
          .code(ok ? 200 : 503)
          .send({ status: ok ? "ok" : "degraded", checks: Object.fromEntries(results) });
      },
    });
  }
}
