import { createHmac, randomBytes } from "node:crypto";
import { toBmiError } from "@bmi/core";
import type { HilClient } from "@bmi/driver-hil";

/** An HTTP-level refusal (not a BmiError): its status, message and extra headers. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export interface Credentials {
  username: string;
  password: string;
}

const CHALLENGE = { "WWW-Authenticate": 'Basic realm="bmi"' };

/** HTTP Basic (RFC 7617): the password may contain `:` (the original split on every `:`). */
export function basicCredentials(header: string | undefined): Credentials {
  if (!header) throw new HttpError(401, "No Authentication Details Given", CHALLENGE);
  const match = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
  if (!match?.[1]) throw new HttpError(401, "Authorization must be HTTP Basic credentials", CHALLENGE);
  const decoded = Buffer.from(match[1], "base64").toString("utf8");
  const colon = decoded.indexOf(":");
  if (colon <= 0) throw new HttpError(401, "Authorization must be HTTP Basic credentials", CHALLENGE);
  return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

export interface CredentialGate {
  /**
   * Resolves when HIL accepts the credentials (any authenticated call), rejects with a 401
   * otherwise. Runs before the request body is read, so a stranger cannot hold a connection
   * open with a slow body. Project and node rights are still checked per request afterwards.
   */
  admit(credentials: Credentials, client: HilClient): Promise<void>;
}

/**
 * The gate remembers credentials HIL accepted for `ttlMs`, so a steady caller costs HIL one
 * password check per request (the project check), as before. Only keyed digests are kept (HMAC
 * with a key made at start-up), never passwords; a remembered entry opens nothing but the body.
 */
export function createCredentialGate(options: { ttlMs?: number; maxEntries?: number } = {}): CredentialGate {
  const ttlMs = options.ttlMs ?? 60_000;
  const maxEntries = options.maxEntries ?? 1024;
  const key = randomBytes(32);
  const admitted = new Map<string, number>(); // digest → admitted until (ms since epoch)
  const digestOf = (c: Credentials) =>
    createHmac("sha256", key).update(c.username).update("\0").update(c.password).digest("base64");

  return {
    async admit(credentials, client) {
      const digest = digestOf(credentials);
      const until = admitted.get(digest);
      if (until !== undefined && until > Date.now()) return;
      admitted.delete(digest);
      try {
        // Needs authentication only, no rights (hil-api.md §2); the answer itself is not used.
        await client.listNodes("free");
      } catch (error) {
        const e = toBmiError(error, "isolation");
        // HIL's database auth answers 404 for an unknown user: to the caller that is a bad login too.
        if (e.code === "unauthenticated" || e.code === "not_found" || e.code === "forbidden") {
          throw new HttpError(401, "Authentication Failed", CHALLENGE);
        }
        throw e;
      }
      if (admitted.size >= maxEntries) {
        const oldest = admitted.keys().next().value;
        if (oldest !== undefined) admitted.delete(oldest);
      }
      admitted.set(digest, Date.now() + ttlMs);
    },
  };
}
