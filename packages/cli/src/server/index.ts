import { readFileSync } from "node:fs";
import { createServer as createHttpServer, type Server } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { type Bmi, type BmiConfig, BmiError, type Logger, silentLogger } from "@bmi/core";
import type { FetchLike } from "@bmi/driver-hil";
import fastifySwagger from "@fastify/swagger";
import fastifySwaggerUi from "@fastify/swagger-ui";
import Fastify, { type FastifyInstance } from "fastify";
import { jsonSchemaTransform, serializerCompiler, validatorCompiler } from "fastify-type-provider-zod";
import { compatRoutes, ROUTES } from "./compat-routes.js";
import { createServerContext } from "./context.js";
import { createCredentialGate, HttpError } from "./credentials.js";
import { createRequestTracker, type RequestTracker } from "./drain.js";
import { sendError } from "./errors.js";
import { type HealthDrivers, healthRoute } from "./health.js";
import { createMetrics } from "./metrics.js";
import { v1Routes } from "./v1/index.js";

export type { RouteCall } from "./compat-routes.js";
export { ROUTES, type Route } from "./compat-routes.js";
export type { Credentials } from "./credentials.js";
export { basicCredentials } from "./credentials.js";
export type { HealthDrivers } from "./health.js";

export interface RestServerOptions {
  bmi: Bmi;
  /** `[net_isolator]` gives the HIL endpoint that checks each caller; `[rest_api]` the bind address and TLS. */
  config: Pick<BmiConfig, "net_isolator" | "rest_api">;
  /** Override `[rest_api] ip`; default 127.0.0.1 when the config has no `[rest_api]`. */
  host?: string;
  /** Override `[rest_api] port`; 0 picks a free port. */
  port?: number;
  logger?: Logger;
  /** The drivers `/health` checks besides the database (`bmi serve` passes all of them). */
  drivers?: HealthDrivers;
  /** For tests of the HIL client. */
  fetch?: FetchLike;
  /** Bounds on slow or idle clients; the defaults suit a LAN of a few dozen callers. */
  limits?: Partial<RestLimits>;
}

export interface RestLimits {
  /** Time to receive the request headers (also closes idle keep-alive sockets that start one). */
  headersTimeoutMs: number;
  /** Time to receive the whole request, body included. */
  requestTimeoutMs: number;
  /** Idle time of a kept-alive connection before it is closed. */
  keepAliveTimeoutMs: number;
  /** Open connections at once; more are refused at accept. */
  maxConnections: number;
}

export const DEFAULT_REST_LIMITS: RestLimits = {
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  keepAliveTimeoutMs: 5_000,
  maxConnections: 256,
};

/** How long `close()` lets running operations finish before it cancels them. */
export const DEFAULT_DRAIN_MS = 30_000;

export interface RestServer {
  url: string;
  host: string;
  port: number;
  /**
   * Drains, then closes: stops accepting at once (requests on kept-alive connections get 503),
   * lets running requests finish for `graceMs`, then cancels the rest through their
   * AbortSignal and waits until their undos are done. Resolves when nothing runs any more, so
   * the store can be closed after it.
   */
  close(options?: { graceMs?: number }): Promise<{ finished: number; cancelled: number }>;
}

/**
 * `bmi serve`: the original BMI REST API (picasso: same routes, methods, form fields and answers)
 * and the JSON API `/v1` with its OpenAPI document, an event stream, `/metrics` and `/health`,
 * on Fastify; each caller authenticated by HIL with their own credentials.
 */
export async function startRestServer(options: RestServerOptions): Promise<RestServer> {
  const logger = (options.logger ?? silentLogger).child({ component: "rest" });
  const host = options.host ?? options.config.rest_api?.ip ?? "127.0.0.1";
  const port = options.port ?? options.config.rest_api?.port ?? 0;
  const requests = createRequestTracker(logger);
  const ctx = createServerContext({
    bmi: options.bmi,
    logger,
    hil: options.config.net_isolator,
    gate: createCredentialGate(),
    requests,
    fetch: options.fetch,
  });
  const metrics = createMetrics(options.bmi);
  const tls = tlsFiles(options.config.rest_api);
  const app = Fastify({
    logger: false,
    serverFactory: (handler) => nodeServer(handler, { ...DEFAULT_REST_LIMITS, ...options.limits }, tls),
  });
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  app.decorateRequest("seen", null as unknown as { user?: string; project?: string });
  app.decorateRequest("bmiCaller", null);
  app.decorateRequest("startedAt", 0);
  addHooks(app, logger, requests);
  app.setErrorHandler((error, request, reply) =>
    sendError(error, request, reply, { logger, draining: requests.draining }),
  );
  app.setNotFoundHandler((request) => {
    const url = new URL(request.url, "http://bmi.invalid");
    // Flask redirected a slashless request to the slashed route; 308 keeps the method and body.
    const slashed = ROUTES.find((r) => r.path.endsWith("/") && r.path === `${url.pathname}/`);
    if (slashed) throw new HttpError(308, "Permanent Redirect", { Location: `${slashed.path}${url.search}` });
    throw new HttpError(404, "Not Found");
  });

  await app.register(fastifySwagger, {
    openapi: {
      openapi: "3.0.3",
      info: {
        title: "BMI REST API",
        version: "1.0.0",
        description: "Bare-metal provisioning from Ceph RBD clones over iSCSI",
      },
      components: {
        securitySchemes: {
          hil: { type: "http", scheme: "basic", description: "your HIL username and password" },
        },
      },
      security: [{ hil: [] }],
    },
    transform: jsonSchemaTransform,
    hideUntagged: true,
  });
  await app.register(fastifySwaggerUi, { routePrefix: "/v1/docs" });
  app.get("/v1/openapi.json", { schema: { hide: true } }, async () => app.swagger());
  app.get("/metrics", async (_request, reply) => reply.type(metrics.contentType).send(await metrics.text()));
  healthRoute(app, options.bmi, options.drivers ?? {});
  await app.register(async (scope) => compatRoutes(scope, ctx));
  await app.register(async (scope) => v1Routes(scope, ctx), { prefix: "/v1" });

  await app.listen({ host, port });
  const server = app.server as Server;
  const address = server.address() as AddressInfo;
  const shownHost = address.family === "IPv6" ? `[${address.address}]` : address.address;

  async function close(closing: { graceMs?: number } = {}) {
    // Stop accepting first; requests on kept-alive connections are refused while draining.
    const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeIdleConnections();
    const drained = await requests.drain(closing.graceMs ?? DEFAULT_DRAIN_MS);
    server.closeAllConnections();
    await stopped;
    metrics.stop();
    await app.close().catch(() => {});
    return drained;
  }

  const scheme = tls ? "https" : "http";
  return {
    url: `${scheme}://${shownHost}:${address.port}`,
    host: address.address,
    port: address.port,
    close,
  };
}

/** Request bookkeeping: refuse while draining, one log line per request, nosniff on every answer. */
function addHooks(app: FastifyInstance, logger: Logger, requests: RequestTracker): void {
  const line = (request: import("fastify").FastifyRequest, status: number) => ({
    method: request.method,
    path: request.url,
    status,
    ...request.seen,
    ms: Math.round(performance.now() - request.startedAt),
  });
  app.addHook("onRequest", async (request, reply) => {
    const tracked = requests.begin();
    reply.raw.once("close", tracked.end);
    request.startedAt = performance.now();
    request.seen = {};
    if (requests.draining) {
      throw new HttpError(503, "bmi serve is shutting down; retry shortly", { Connection: "close" });
    }
  });
  app.addHook("onSend", async (_request, reply) => {
    reply.header("X-Content-Type-Options", "nosniff");
  });
  app.addHook("onResponse", async (request, reply) => {
    logger.info(line(request, reply.statusCode), "request");
  });
  app.addHook("onRequestAbort", async (request) => {
    logger.info(
      { method: request.method, path: request.url },
      "client closed the connection before the answer",
    );
    logger.info(line(request, 499), "request");
  });
}

interface TlsFiles {
  cert: Buffer;
  key: Buffer;
}

/** `[rest_api] tls_cert` / `tls_key` (both or neither, checked by the config schema), read once at start. */
function tlsFiles(rest: BmiConfig["rest_api"] | undefined): TlsFiles | null {
  if (!rest?.tls_cert || !rest.tls_key) return null;
  try {
    return { cert: readFileSync(rest.tls_cert), key: readFileSync(rest.tls_key) };
  } catch (error) {
    throw new BmiError(
      "invalid_input",
      `cannot read [rest_api] tls_cert or tls_key: ${(error as Error).message}`,
      {
        subsystem: "config",
        cause: error,
      },
    );
  }
}

/** Node's server with our bounds on slow clients (Fastify's options do not cover all of them). */
function nodeServer(
  handler: (req: import("node:http").IncomingMessage, res: import("node:http").ServerResponse) => void,
  limits: RestLimits,
  tls: TlsFiles | null,
): Server {
  const settings = {
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    // Node checks the two timeouts above only this often (default 30 s): check at their scale.
    connectionsCheckingInterval: Math.max(
      50,
      Math.min(1_000, limits.headersTimeoutMs / 4, limits.requestTimeoutMs / 4),
    ),
  };
  const server = tls
    ? createHttpsServer({ ...settings, ...tls }, handler)
    : createHttpServer(settings, handler);
  server.maxConnections = limits.maxConnections;
  return server as Server;
}
