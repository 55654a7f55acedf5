import { execa } from "execa";

/** iproute2 and dnsmasq calls get this long; a netlink call that hangs is a broken kernel, not a slow one. */
const COMMAND_TIMEOUT_MS = 15_000;

export interface CommandResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** Runs a command with an argument array (never a shell), without throwing on a non-zero exit. */
export async function runCommand(command: string, args: readonly string[]): Promise<CommandResult> {
  const result = await execa(command, args, { reject: false, timeout: COMMAND_TIMEOUT_MS, encoding: "utf8" });
  return { exitCode: result.exitCode ?? -1, stdout: String(result.stdout), stderr: String(result.stderr) };
}

/** Like runCommand, but a non-zero exit throws with the command and its stderr. */
export async function mustRun(command: string, args: readonly string[]): Promise<string> {
  const result = await runCommand(command, args);
  if (result.exitCode !== 0) {
    throw new Error(`${command} ${args.join(" ")}: exit ${result.exitCode}: ${result.stderr.trim()}`);
  }
  return result.stdout;
}

/** `ip -n <netns> ...args`: iproute2 inside one namespace. */
export const ipIn = (netns: string, args: readonly string[]) => mustRun("ip", ["-n", netns, ...args]);

/** `bridge -n <netns> ...args`. */
export const bridgeIn = (netns: string, args: readonly string[]) => mustRun("bridge", ["-n", netns, ...args]);

/** The argument array that runs `command` inside `netns` (`ip netns exec` execs it: same PID). */
export const inNetns = (netns: string, command: string, args: readonly string[]): [string, string[]] => [
  "ip",
  ["netns", "exec", netns, command, ...args],
];

/** The namespaces that exist now (`ip netns list` prints `name (id: n)`). */
export async function listNetns(): Promise<string[]> {
  const out = await mustRun("ip", ["netns", "list"]);
  return out
    .split("\n")
    .map((line) => line.trim().split(/\s+/)[0] ?? "")
    .filter((name) => name !== "");
}

/** PIDs of the processes inside `netns` (empty when it is gone). */
export async function pidsIn(netns: string): Promise<number[]> {
  const result = await runCommand("ip", ["netns", "pids", netns]);
  if (result.exitCode !== 0) return [];
  return result.stdout
    .split(/\s+/)
    .filter((word) => /^\d+$/.test(word))
    .map(Number);
}
