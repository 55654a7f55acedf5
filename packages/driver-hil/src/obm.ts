import { BmiError } from "@bmi/core";
import { obmdError } from "./errors.js";
import { send, type Transport } from "./http.js";

/** HIL's OBM calls (spec §5.5) and the method each takes. */
export const OBM_METHODS = {
  power_on: "POST",
  power_off: "POST",
  power_cycle: "POST",
  boot_device: "PUT",
  power_status: "GET",
} as const;
export type ObmOperation = keyof typeof OBM_METHODS;

export interface ObmInit {
  /** `{"force"}` for power_cycle, `{"bootdev"}` for boot_device (obmd needs both). */
  body?: unknown;
  signal?: AbortSignal | undefined;
}

/**
 * An OBM call (HIL v0.4, spec §5.5) on `nodePath` (`/v0/node/<name>`): HIL answers 307 to the
 * node's obmd, and the same method and body go there without HIL's credentials. A token obmd
 * rejects (401: the OBM was re-enabled meanwhile, so HIL holds a new one) is fetched again once.
 * HIL v0.3 answers 200 itself. Resolves with the answer's text.
 */
export async function obmRequest(
  t: Transport,
  nodePath: string,
  op: ObmOperation,
  init: ObmInit = {},
): Promise<string> {
  const method = OBM_METHODS[op];
  const path = `${nodePath}/${op}`;
  for (let fetches = 0; ; fetches++) {
    const hop = await send(t, method, path, {
      body: init.body,
      signal: init.signal,
      sideEffects: "none",
      accept: (status) => status === 307 || (status >= 200 && status < 300),
    });
    if (hop.status !== 307) return hop.text;
    const url = redirectUrl(t.base, hop.location, path);
    const label = url.pathname;
    try {
      const answer = await send(t, method, label, {
        body: init.body,
        signal: init.signal,
        target: { url: url.href },
        sideEffects: "unknown",
        mapError: (status, text) => obmdError(method, label, status, text),
      });
      return answer.text;
    } catch (error) {
      const stale = error instanceof BmiError && error.details.status === 401 && fetches === 0;
      if (!stale) throw error;
    }
  }
}

function redirectUrl(base: string, location: string | null, path: string): URL {
  let url: URL | undefined;
  try {
    url = location ? new URL(location, `${base}/`) : undefined;
  } catch {
    url = undefined;
  }
  if (!url || !/^https?:$/.test(url.protocol)) {
    throw new BmiError("internal", `HIL ${path}: a 307 without a usable http(s) Location`, {
      subsystem: "isolation",
      details: { path },
    });
  }
  return url;
}
