import { BmiError, type Logger } from "@bmi/core";
import type { z } from "zod";
import { errorFromResponse, type HilErrorDetails } from "./errors.js";

/** The subset of `fetch` the client uses (Node 20's global fetch by default). */
export type FetchLike = (input: string, init: RequestInit) => Promise<Response>;

/** What every request needs: the endpoint, its credentials and how persistent to be. */
export interface Transport {
  /** The endpoint without a trailing slash. */
  base: string;
  username: string | undefined;
  /** The Basic header; only ever sent to HIL itself, never to an obmd redirect. */
  authorization: string | undefined;
  timeoutMs: number;
  retries: number;
  retryBaseMs: number;
  retryMaxMs: number;
  fetch: FetchLike;
  logger: Logger;
  /** Transport failures that certainly happened before sending (see `repeatable`). */
  notSent: WeakSet<BmiError>;
}

export interface RawResponse {
  status: number;
  text: string;
  location: string | null;
}

/** Where an obmd redirect points; sent without HIL's credentials. */
export interface RedirectTarget {
  url: string;
}

/** What a POST does where it lands: see `send`. */
type SideEffects = "hil" | "none" | "unknown";

export interface SendInit {
  body?: unknown;
  signal?: AbortSignal | undefined;
  accept?: (status: number) => boolean;
  target?: RedirectTarget;
  sideEffects?: SideEffects;
  mapError?: (status: number, text: string) => BmiError;
}

export const cancelled = (what: string, cause?: unknown) =>
  new BmiError("cancelled", `HIL ${what} was cancelled`, { subsystem: "isolation", cause });

/** Sleeps, or rejects with `cancelled` when the signal fires. */
export function sleep(ms: number, signal: AbortSignal | undefined, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(cancelled(what));
    const onAbort = () => {
      clearTimeout(timer);
      reject(cancelled(what));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** Exponential backoff with "equal jitter": half fixed, half random, so retries spread out. */
export function backoffDelay(attempt: number, baseMs: number, maxMs: number, random = Math.random): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** attempt);
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}

/** Transport errors raised before a request left this machine: repeating them cannot duplicate it. */
const NOT_SENT = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "UND_ERR_CONNECT_TIMEOUT",
]);

/** The errno of a fetch failure (undici puts it on `cause`). */
function errnoOf(error: unknown): string | undefined {
  const cause = error instanceof Error ? (error.cause ?? error) : error;
  const code = (cause as { code?: unknown } | undefined)?.code;
  return typeof code === "string" ? code : undefined;
}

interface Exchange {
  method: string;
  path: string;
  body: unknown;
  signal: AbortSignal | undefined;
  target: RedirectTarget | undefined;
}

/**
 * One HTTP exchange. `target` sends it to an absolute URL (an obmd redirect) without HIL's
 * credentials; `path` is then only the label used in messages (the URL's token stays out).
 */
async function attempt(t: Transport, x: Exchange): Promise<RawResponse> {
  const timeout = AbortSignal.timeout(t.timeoutMs);
  const headers: Record<string, string> = { Accept: "application/json" };
  if (x.body !== undefined) headers["Content-Type"] = "application/json";
  if (t.authorization && !x.target) headers.Authorization = t.authorization;
  try {
    const response = await t.fetch(x.target ? x.target.url : `${t.base}${x.path}`, {
      method: x.method,
      headers,
      ...(x.body === undefined ? {} : { body: JSON.stringify(x.body) }),
      redirect: "manual",
      signal: x.signal ? AbortSignal.any([x.signal, timeout]) : timeout,
    });
    // HIL labels JSON as text/html, so the content type is ignored (spec §1).
    const location = response.headers.get("location");
    return { status: response.status, text: await response.text(), location };
  } catch (error) {
    throw transportError(t, x, error, timeout);
  }
}

/** Why an exchange got no answer: cancelled, timed out, or the service was not reachable. */
function transportError(t: Transport, x: Exchange, error: unknown, timeout: AbortSignal): BmiError {
  const details: HilErrorDetails = { method: x.method, path: x.path };
  const service = x.target ? "obmd" : "HIL";
  if (x.signal?.aborted) {
    // Aborted in flight: a POST may already be with HIL (or obmd), which applies it anyway.
    const failure = cancelled(`${x.method} ${x.path}`, error);
    if (x.method === "POST") failure.details.outcome = "unknown";
    return failure;
  }
  if (timeout.aborted) {
    return new BmiError("timeout", `${service} ${x.method} ${x.path} timed out after ${t.timeoutMs} ms`, {
      subsystem: "isolation",
      details: { ...details },
    });
  }
  const reason =
    error instanceof Error ? (error.cause instanceof Error ? error.cause.message : error.message) : "";
  const failure = new BmiError(
    "unavailable",
    `${service} ${x.method} ${x.path}: cannot reach the service (${reason || "network error"})`,
    { subsystem: "isolation", details: { ...details } },
  );
  if (NOT_SENT.has(errnoOf(error) ?? "")) t.notSent.add(failure);
  return failure;
}

/**
 * Whether a failed attempt may be repeated. Reads and PUTs (idempotent) are repeated on any
 * retryable failure. A POST (connect/detach network, connect/detach node) is repeated only
 * when HIL certainly did not apply it: the connection was never made, HIL answered 409 busy
 * (it refused the action), or 500/503 (its transaction was rolled back). After a timeout, a
 * reset or a 502/504 the POST may have been applied, and a second one is how real HIL ends
 * up with duplicate attachment rows: the outcome is unknown and the caller must look.
 */
function repeatable(
  t: Transport,
  method: string,
  error: BmiError,
  status: number | undefined,
  sideEffects: SideEffects,
): boolean {
  if (!error.retryable) return false;
  if (method !== "POST" || sideEffects === "none") return true;
  if (status === undefined) return t.notSent.has(error);
  return sideEffects === "hil" && (status === 409 || status === 500 || status === 503);
}

/** A POST that may have reached HIL: never repeated, marked so callers look before acting. */
function unknownOutcome(error: BmiError, what: string, service: string): BmiError {
  return new BmiError(
    error.code,
    `${error.message}; ${service} may have applied ${what} anyway, so it was not repeated`,
    { subsystem: "isolation", retryable: false, details: { ...error.details, outcome: "unknown" } },
  );
}

/** One attempt: the accepted response, or the error it maps to (with its status, if answered). */
async function tryOnce(
  t: Transport,
  x: Exchange,
  init: SendInit,
): Promise<{ response: RawResponse } | { error: BmiError; status: number | undefined }> {
  const accept = init.accept ?? ((status: number) => status >= 200 && status < 300);
  try {
    const response = await attempt(t, x);
    if (accept(response.status)) return { response };
    const mapError = init.mapError ?? ((status, text) => hilError(t, x.method, x.path, status, text));
    return { error: mapError(response.status, response.text), status: response.status };
  } catch (thrown) {
    if (!(thrown instanceof BmiError)) throw thrown;
    return { error: thrown, status: undefined };
  }
}

/**
 * One request with bounded retries (see `repeatable`), resolving with the accepted response.
 * `sideEffects`: what a POST does where it lands: `hil` (a transaction), `none` (HIL's OBM calls
 * only answer a redirect), `unknown` (obmd: a power action, repeated only if never sent).
 */
export async function send(t: Transport, method: string, path: string, init: SendInit): Promise<RawResponse> {
  const what = `${method} ${path}`;
  const service = init.target ? "obmd" : "HIL";
  const x: Exchange = { method, path, body: init.body, signal: init.signal, target: init.target };
  for (let tries = 0; ; tries++) {
    if (init.signal?.aborted) throw cancelled(what);
    const result = await tryOnce(t, x, init);
    if ("response" in result) {
      const { status } = result.response;
      t.logger.debug({ hil: { method, path, status, attempt: tries + 1 } }, `${service} request`);
      return result.response;
    }
    const { error, status } = result;
    error.details.attempts = tries + 1;
    const again = repeatable(t, method, error, status, init.sideEffects ?? "hil");
    // obmd answered (e.g. 500: its BMC driver failed): not repeated here, but the caller may retry.
    const answeredByObmd = init.sideEffects === "unknown" && status !== undefined;
    if (!again && !answeredByObmd && method === "POST" && error.retryable && error.code !== "cancelled") {
      t.logger.warn(
        { hil: { method, path, code: error.code, attempts: tries + 1 } },
        `${service} POST outcome unknown`,
      );
      throw unknownOutcome(error, what, service);
    }
    if (!again || error.code === "cancelled" || tries >= t.retries) {
      t.logger.debug(
        { hil: { method, path, code: error.code, attempts: tries + 1 } },
        `${service} request failed`,
      );
      throw error;
    }
    await sleep(backoffDelay(tries, t.retryBaseMs, t.retryMaxMs), init.signal, what);
  }
}

function hilError(t: Transport, method: string, path: string, status: number, text: string): BmiError {
  if (status >= 200 && status < 300) {
    return new BmiError("internal", `HIL ${method} ${path}: unexpected status ${status}`, {
      subsystem: "isolation",
      details: { method, path, status },
    });
  }
  return errorFromResponse(status, text, { method, path, ...(t.username ? { username: t.username } : {}) });
}

export interface CallInit<S> {
  body?: unknown;
  schema?: S;
  expectStatus?: number;
  signal?: AbortSignal | undefined;
}

/** One call with bounded retries; `schema` undefined = the body must be empty. */
export async function call<S extends z.ZodType | undefined>(
  t: Transport,
  method: string,
  path: string,
  init: CallInit<S> = {},
): Promise<S extends z.ZodType ? z.output<S> : undefined> {
  const { expectStatus } = init;
  const response = await send(t, method, path, {
    body: init.body,
    signal: init.signal,
    ...(expectStatus === undefined ? {} : { accept: (status: number) => status === expectStatus }),
  });
  return parseBody(`${method} ${path}`, response.status, response.text, init.schema) as S extends z.ZodType
    ? z.output<S>
    : undefined;
}

function parseBody(what: string, status: number, text: string, schema: z.ZodType | undefined): unknown {
  if (schema === undefined) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (cause) {
    throw new BmiError("internal", `HIL ${what}: the ${status} response is not JSON`, {
      subsystem: "isolation",
      cause,
    });
  }
  const result = schema.safeParse(value);
  if (!result.success) {
    throw new BmiError("internal", `HIL ${what}: unexpected response shape`, {
      subsystem: "isolation",
      cause: result.error,
      details: { issues: result.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`) },
    });
  }
  return result.data;
}
