import type { Bmi, BmiConfig, Logger } from "@bmi/core";
import type { FetchLike, HilClient } from "@bmi/driver-hil";
import type { FastifyRequest } from "fastify";
import { callerClient, ownCredentials } from "./access.js";
import { basicCredentials, type CredentialGate, HttpError } from "./credentials.js";
import type { RequestTracker } from "./drain.js";

/** Who is calling: their name, and a HIL client that acts with their own credentials. */
export interface Caller {
  username: string;
  client: HilClient;
}

declare module "fastify" {
  interface FastifyRequest {
    /** What the request log line names (user, project), filled in as the request is served. */
    seen: { user?: string; project?: string };
    bmiCaller: Caller | null;
    startedAt: number;
  }
}

/** What every route group gets from the server. */
export interface ServerContext {
  bmi: Bmi;
  logger: Logger;
  /** `onRequest` hook: the caller's Basic credentials, checked with HIL before the body is read. */
  authenticate(request: FastifyRequest): Promise<void>;
  /** The authenticated caller (routes with `authenticate` only). */
  caller(request: FastifyRequest): Caller;
  /** Runs an operation with a signal a drain cancels; BMI's own refused credentials become a server fault. */
  run<T>(work: (signal: AbortSignal) => Promise<T>): Promise<T>;
}

export function createServerContext(options: {
  bmi: Bmi;
  logger: Logger;
  hil: BmiConfig["net_isolator"];
  gate: CredentialGate;
  requests: RequestTracker;
  fetch: FetchLike | undefined;
}): ServerContext {
  const { bmi, logger, hil, gate, requests } = options;
  return {
    bmi,
    logger,
    async authenticate(request) {
      const credentials = basicCredentials(request.headers.authorization);
      request.seen.user = credentials.username;
      const client = callerClient(hil, credentials, options.fetch);
      await gate.admit(credentials, client);
      request.bmiCaller = { username: credentials.username, client };
    },
    caller(request) {
      if (!request.bmiCaller) throw new HttpError(401, "No Authentication Details Given");
      return request.bmiCaller;
    },
    run: (work) =>
      requests.track(work).catch((error: unknown) => {
        throw ownCredentials(error);
      }),
  };
}
