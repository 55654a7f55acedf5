import { readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { writeFileAtomic } from "@bmi/core";
import { z } from "zod";
import { commandLineOf, isAlive, stopPid } from "../process.js";
import { listNetns, mustRun, pidsIn } from "./commands.js";

/** Every namespace the lab makes starts with this; nothing else is ever removed. */
export const NETNS_PREFIX = "bmi-";

const StateSchema = z.object({
  ownerPid: z.number().int().positive(),
  namespaces: z.array(z.string().startsWith(NETNS_PREFIX)),
  /** Processes we started, with a string their command line carries (a recycled PID does not). */
  processes: z.array(z.object({ pid: z.number().int().positive(), match: z.string().min(1) })),
});

export type NetworkStateRecord = z.infer<typeof StateSchema>;

export const stateFileOf = (dir: string) => join(dir, "network-state.json");

export async function readNetworkState(dir: string): Promise<NetworkStateRecord | null> {
  let text: string;
  try {
    text = await readFile(stateFileOf(dir), "utf8");
  } catch {
    return null;
  }
  const parsed = StateSchema.safeParse(JSON.parse(text));
  if (!parsed.success)
    throw new Error(`${stateFileOf(dir)} is not a lab network state file; remove it by hand`);
  return parsed.data;
}

/** Written before each thing it names is created, so a crash at any point leaves it findable. */
export const writeNetworkState = (dir: string, state: NetworkStateRecord) =>
  writeFileAtomic(stateFileOf(dir), `${JSON.stringify(state, null, 2)}\n`, 0o600);

/**
 * Removes what the state file names: our processes (by PID, when their command line still carries
 * the recorded match), whatever still runs inside our namespaces (only the lab starts processes
 * there: qemu, tgtd, dnsmasq), then the namespaces, which takes their bridge and taps with them.
 */
export async function removeRecorded(state: NetworkStateRecord): Promise<void> {
  for (const { pid, match } of state.processes) {
    if ((await isAlive(pid)) && (await commandLineOf(pid)).includes(match)) {
      await stopPid(pid, { signal: "SIGTERM", graceMs: 3_000 });
    }
  }
  const existing = new Set(await listNetns());
  for (const netns of state.namespaces) {
    if (!netns.startsWith(NETNS_PREFIX) || !existing.has(netns)) continue;
    for (const pid of await pidsIn(netns)) await stopPid(pid, { signal: "SIGKILL", graceMs: 3_000 });
    await mustRun("ip", ["netns", "del", netns]);
  }
}

/**
 * What a lab killed before its stop left in `dir`: removed when its owner is dead. A live owner
 * (another process running this lab, or this one) is refused, never touched.
 */
export async function cleanUpDeadLab(dir: string): Promise<NetworkStateRecord | null> {
  const state = await readNetworkState(dir);
  if (state === null) return null;
  if (await isAlive(state.ownerPid)) {
    throw new Error(
      `the lab network in ${dir} belongs to the live process ${state.ownerPid}; stop that lab first`,
    );
  }
  await removeAndForget(dir, state);
  return state;
}

/** Removes what `state` names, then the state file. */
export async function removeAndForget(dir: string, state: NetworkStateRecord): Promise<void> {
  await removeRecorded(state);
  await rm(stateFileOf(dir), { force: true });
}
