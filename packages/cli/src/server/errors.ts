import { BmiError, isBmiError, type Logger, toBmiError } from "@bmi/core";
import type { FastifyError, FastifyReply, FastifyRequest } from "fastify";
import { hasZodFastifySchemaValidationErrors } from "fastify-type-provider-zod";
import { httpStatusFor } from "../exit-codes.js";
import { HttpError } from "./credentials.js";
import { clientWentAway, tenantView } from "./tenant-view.js";

/** Error bodies of the original routes are plain text: they may quote what the caller sent (a field name, a NIC). */
const TEXT = "text/plain; charset=utf-8";
/** The envelope code of an HTTP-level refusal (not a BmiError). */
const HTTP_CODES: Record<number, string> = {
  308: "invalid_input", // the route needs its trailing slash
  400: "invalid_input",
  401: "unauthenticated",
  404: "not_found",
  405: "unsupported",
  408: "timeout",
  413: "invalid_input",
  415: "invalid_input",
  503: "unavailable",
};

/** JSON for /v1 always; for the original routes only when the caller asks for it. */
export const wantsJson = (request: FastifyRequest) =>
  request.url.startsWith("/v1/") || /application\/json/i.test(request.headers.accept ?? "");

/** Fastify's own refusals (a body too large, a bad content type, a schema) as our HTTP errors. */
function fromFastify(error: FastifyError): HttpError | BmiError | undefined {
  if (hasZodFastifySchemaValidationErrors(error)) {
    const issues = error.validation.map(
      (v) => `${error.validationContext ?? "request"}${v.instancePath.replaceAll("/", ".")}: ${v.message}`,
    );
    return new BmiError("invalid_input", issues.join("; "), {
      details: { field: error.validationContext ?? "request" },
    });
  }
  if (error.code === "FST_ERR_CTP_BODY_TOO_LARGE") return new HttpError(413, "request body too large");
  if (error.code === "FST_ERR_CTP_INVALID_MEDIA_TYPE") return new HttpError(415, error.message);
  if (error.code === "FST_ERR_CTP_EMPTY_JSON_BODY") return new HttpError(400, "the JSON body is empty");
  if (error.code?.startsWith("FST_") && typeof error.statusCode === "number" && error.statusCode < 500) {
    return new HttpError(error.statusCode, error.message);
  }
  if (error instanceof SyntaxError && (error as FastifyError).statusCode === 400) {
    return new HttpError(400, "the body is not valid JSON");
  }
  return undefined;
}

/** Answers a failed request; the log gets what the caller is not shown. */
export function sendError(
  thrown: unknown,
  request: FastifyRequest,
  reply: FastifyReply,
  context: { logger: Logger; draining: boolean },
): void {
  const { logger, draining } = context;
  if (clientWentAway(request.raw, thrown)) {
    logger.info(
      { method: request.method, path: request.url },
      "client closed the connection before the answer",
    );
    reply.hijack();
    request.raw.socket.destroy();
    return;
  }
  if (reply.sent || reply.raw.headersSent) {
    request.raw.socket.destroy();
    return;
  }
  // Answered before its body was read (a refused caller): close rather than wait for the rest.
  if (!request.raw.complete) reply.header("Connection", "close");
  const known =
    thrown instanceof HttpError || isBmiError(thrown) ? thrown : fromFastify(thrown as FastifyError);
  if (known instanceof HttpError) {
    for (const [k, v] of Object.entries(known.headers)) reply.header(k, v);
    reply.code(known.status);
    if (wantsJson(request)) {
      const code = HTTP_CODES[known.status] ?? "invalid_input";
      reply.type("application/json").send(JSON.stringify({ error: { code, message: known.message } }));
    } else reply.type(TEXT).send(known.message);
    return;
  }
  const base = known ?? toBmiError(thrown);
  const error = draining ? stoppedBy(base) : base;
  const shown = tenantView(error);
  // The whole error (command lines, paths, the cause's text) stays in the server log: always
  // for server faults, and for the caller's errors whenever the tenant was shown less.
  const full = { err: error.toJSON(), cause: causeText(error) };
  if (error.fault === "server") logger.warn(full, "request failed");
  else if (
    shown.message !== error.message ||
    Object.keys(shown.details).length < Object.keys(error.details).length
  ) {
    logger.info(full, "request refused");
  }
  const status = error.code === "cancelled" && draining ? 503 : httpStatusFor(error);
  if (status === 401) reply.header("WWW-Authenticate", 'Basic realm="bmi"');
  reply.code(status);
  if (wantsJson(request)) reply.type("application/json").send(JSON.stringify({ error: shown }));
  else reply.type(TEXT).send(shown.message);
}

/** An operation cancelled by a drain says so: the caller may retry once the server is back. */
function stoppedBy(error: BmiError): BmiError {
  if (error.code !== "cancelled") return error;
  return new BmiError("cancelled", "bmi serve was stopping: the operation was cancelled and undone; retry", {
    subsystem: error.subsystem,
    cause: error,
    retryable: true,
  });
}

/** The cause's text for the server log (a command's stderr, HIL's answer); secrets were redacted at the source. */
function causeText(error: BmiError): string | undefined {
  const cause = error.cause;
  return cause instanceof Error ? cause.message : cause === undefined ? undefined : String(cause);
}
