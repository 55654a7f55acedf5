import { BmiError, type ErrorCode } from "@bmi/core";

/** What HIL said, kept on every error as `details`. */
export interface HilErrorDetails {
  method: string;
  /** The path below the endpoint, e.g. `/v0/node/n1` (never credentials). */
  path: string;
  status?: number;
  /** HIL's error class, e.g. `BlockedError`; absent for non-JSON bodies. */
  type?: string;
  /** HIL's message, or the text of an HTML error page. */
  msg?: string;
  attempts?: number;
}

const PENDING_ACTION = /networking operation is already active|pending/i;
const AUTH_FAILED = /^Authentication failed/;

/** The text of an HTML error page (HIL puts the reason in `<p>…</p>`), trimmed. */
export function htmlText(body: string): string {
  const p = /<p>([\s\S]*?)(?:<\/p>|$)/i.exec(body)?.[1] ?? body.replace(/<[^>]*>/g, " ");
  return p.replace(/\s+/g, " ").trim().slice(0, 300);
}

/** Parses `{type, msg}` when the body is HIL's JSON error. */
export function parseHilError(body: string): { type: string; msg: string } | undefined {
  try {
    const value: unknown = JSON.parse(body);
    if (typeof value === "object" && value !== null) {
      const { type, msg } = value as Record<string, unknown>;
      if (typeof type === "string" && typeof msg === "string") return { type, msg };
    }
  } catch {
    // not JSON: an HTML page
  }
  return undefined;
}

/**
 * Maps a HIL error response to a BmiError (spec §8): 400 invalid_input; 401 unauthenticated or
 * forbidden by message; 404 not_found (an unknown database user is an authentication failure);
 * 409 BlockedError on a pending action busy (retryable), other 409 conflict (not retryable:
 * retrying "already owned" cannot help); 5xx unavailable (retryable).
 */
export function errorFromResponse(
  status: number,
  body: string,
  request: { method: string; path: string; username?: string },
): BmiError {
  const parsed = parseHilError(body);
  const msg = parsed?.msg ?? htmlText(body);
  const details: HilErrorDetails = { method: request.method, path: request.path, status, msg };
  if (parsed) details.type = parsed.type;
  let code: ErrorCode;
  let retryable: boolean | undefined;
  if (status === 400) code = "invalid_input";
  else if (status === 401) code = AUTH_FAILED.test(msg) ? "unauthenticated" : "forbidden";
  else if (status === 404) {
    code =
      request.username !== undefined && msg === `User ${request.username} does not exist.`
        ? "unauthenticated"
        : "not_found";
  } else if (status === 409) {
    if (parsed?.type === "BlockedError" && PENDING_ACTION.test(msg)) code = "busy";
    else {
      code = "conflict";
      retryable = false;
    }
  } else if (status >= 500) code = "unavailable";
  else code = "internal";
  const what = parsed ? `${msg} (${status} ${parsed.type})` : `${msg || "no message"} (HTTP ${status})`;
  return new BmiError(code, `HIL ${request.method} ${request.path}: ${what}`, {
    subsystem: "isolation",
    details: { ...details },
    ...(retryable === undefined ? {} : { retryable }),
  });
}

/**
 * Maps obmd's answer (an empty body; its status says it all) to a BmiError: 400 bad body or boot
 * device `invalid_input`; 401 bad or stale token `conflict`; 404 node unknown to obmd
 * `not_found`; 5xx a failing BMC driver `unavailable` (retryable).
 */
export function obmdError(method: string, path: string, status: number, body: string): BmiError {
  const reasons: Record<number, [ErrorCode, string]> = {
    400: ["invalid_input", "obmd rejected the request body or boot device"],
    401: ["conflict", "obmd rejected the token (the OBM was disabled or re-enabled meanwhile)"],
    404: ["not_found", "the node is unknown to obmd"],
  };
  const [code, reason] =
    reasons[status] ??
    (status >= 500 ? ["unavailable", "obmd's BMC driver failed"] : ["internal", "unexpected answer"]);
  const msg = htmlText(body);
  return new BmiError(code, `obmd ${method} ${path}: ${reason} (HTTP ${status}${msg ? `: ${msg}` : ""})`, {
    subsystem: "isolation",
    details: { method, path, status, ...(msg ? { msg } : {}) },
    ...(status === 401 ? { retryable: false } : {}),
  });
}
