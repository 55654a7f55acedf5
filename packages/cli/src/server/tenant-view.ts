import type { IncomingMessage } from "node:http";
import { type BmiError, isBmiError } from "@bmi/core";
import { HttpError } from "./credentials.js";

/**
 * Detail keys that describe BMI's machinery, not the tenant's request: command lines (with the
 * Ceph identity, keyring and conf paths), raw daemon output, paths on the server. They stay in
 * the server log.
 */
const INTERNAL_DETAILS = new Set(["command", "stdout", "stderr", "path", "paths", "argv", "timeoutMs"]);

/**
 * The error as a tenant sees it: the same code, fault and retryability, the message with any
 * command line cut down to the program's name, and only the details about their request.
 */
export function tenantView(error: BmiError): ReturnType<BmiError["toJSON"]> {
  const full = error.toJSON();
  const command = typeof full.details.command === "string" ? full.details.command : undefined;
  const details: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(full.details)) {
    if (!INTERNAL_DETAILS.has(key)) details[key] = value;
  }
  return { ...full, message: withoutCommand(full.message, command), details };
}

/** `timed out after 5000 ms: rbd --conf /etc/ceph/… --id bmi clone …` → `timed out after 5000 ms: rbd`. */
function withoutCommand(message: string, command: string | undefined): string {
  if (!command) return message;
  const program = command.split(" ")[0]?.split("/").pop() ?? "a command";
  return message.split(command).join(program);
}

/** The client closed the connection before the request was read or answered: not a server fault. */
export function clientWentAway(req: IncomingMessage, thrown: unknown): boolean {
  const code = (thrown as NodeJS.ErrnoException | undefined)?.code;
  if (code === "ECONNRESET" || code === "ERR_STREAM_PREMATURE_CLOSE" || code === "ECONNABORTED") return true;
  // Our own refusals and BMI's errors are answers, even if the socket is gone by now.
  return !(thrown instanceof HttpError) && !isBmiError(thrown) && req.socket.destroyed;
}
