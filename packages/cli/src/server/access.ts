import { BmiError, toBmiError } from "@bmi/core";
import { createHilClient, type FetchLike, type HilClient } from "@bmi/driver-hil";
import type { Credentials } from "./credentials.js";

/** A HIL client acting with the caller's own credentials (spec §2.2: HIL decides, per caller). */
export function callerClient(
  hil: { url: string; timeout_ms: number },
  credentials: Credentials,
  fetch: FetchLike | undefined,
): HilClient {
  return createHilClient({
    url: hil.url,
    username: credentials.username,
    password: credentials.password,
    timeoutMs: hil.timeout_ms,
    retries: 1,
    ...(fetch ? { fetch } : {}),
  });
}

/**
 * The original's project check (the caller's HIL credentials can list the project's nodes), plus
 * SEC-2: a node operation only on a node the project holds.
 */
export async function checkAccess(client: HilClient, project: string, node?: string): Promise<void> {
  let nodes: string[];
  try {
    nodes = await client.listProjectNodes(project);
  } catch (error) {
    throw hilError(error, `project ${project}`);
  }
  if (node === undefined || nodes.includes(node)) return;
  try {
    await client.showNode(node);
  } catch (error) {
    throw hilError(error, `node ${node}`);
  }
  throw new BmiError("forbidden", `node ${node} does not belong to project ${project}`, {
    subsystem: "isolation",
    details: { node, project },
  });
}

/** Operations on every project (projects, reconcile) need a HIL administrator: HIL lists projects only to them. */
export async function checkAdmin(client: HilClient): Promise<void> {
  try {
    await client.listProjects();
  } catch (error) {
    const e = hilError(error, "the list of projects");
    if (e.code === "forbidden" || e.code === "unauthenticated" || e.code === "not_found") {
      throw new BmiError("forbidden", "this operation needs a HIL administrator", {
        subsystem: "isolation",
        cause: e,
      });
    }
    throw e;
  }
}

/**
 * After the caller's own credentials were accepted, HIL refusing BMI's shared service account
 * (a rotated password) is a server fault, never a prompt for the caller's credentials.
 */
export function ownCredentials(error: unknown): unknown {
  const e = toBmiError(error);
  if (e.code !== "unauthenticated") return error;
  return new BmiError("permission_denied", "HIL refused BMI's own service account; ask the operator", {
    subsystem: "isolation",
    cause: e,
  });
}

/** HIL answers for the caller: 401 bad credentials, 403 no access, 404 unknown project or node. */
function hilError(error: unknown, what: string): BmiError {
  const e = toBmiError(error, "isolation");
  if (e.code === "unauthenticated") {
    return new BmiError("unauthenticated", "Authentication Failed", { subsystem: "isolation", cause: e });
  }
  if (e.code === "forbidden") {
    return new BmiError("forbidden", `Authorization Failed: no access to ${what}`, {
      subsystem: "isolation",
      cause: e,
    });
  }
  if (e.code === "not_found") {
    return new BmiError("not_found", `${what} not found in HIL`, { subsystem: "isolation", cause: e });
  }
  if (e.code === "invalid_input") {
    return new BmiError("invalid_input", `invalid ${what}`, { subsystem: "isolation", cause: e });
  }
  return e;
}
