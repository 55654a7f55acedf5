import { setTimeout as sleep } from "node:timers/promises";
import { z } from "zod";
import type { Provisioning } from "../domain/model.js";
import { NodeName, ProjectName } from "../domain/names.js";
import { parseInput } from "../domain/validate.js";
import { BmiError, isBmiError } from "../errors/index.js";
import type { ExportDriver, InitiatorSession } from "../ports/index.js";
import type { BmiContext } from "./context.js";

/**
 * What BMI can see of a node booting, with no agent on it, in order: its BMC says it is on; the
 * firmware (iPXE's `sanboot`) logs in to the node's target; the OS's initramfs logs in again (a
 * new session, from the iBFT iPXE published).
 */
export type BootStage = "powered_on" | "firmware_login" | "os_login";
export const BOOT_STAGES: readonly BootStage[] = ["powered_on", "firmware_login", "os_login"];

/** The waiter's outcome, in the shape of the AWS SDK's waiters. */
export interface BootWaitResult {
  state: "SUCCESS" | "FAILURE" | "TIMEOUT" | "ABORTED";
  node: string;
  /** The stages seen, in order, with the time since the wait began. */
  stages: { stage: BootStage; atMs: number }[];
  /** Why it did not succeed: the last stage seen and how long the wait stayed there. */
  reason?: string;
  durationMs: number;
}

const WaitInput = z.strictObject({
  project: ProjectName,
  node: NodeName,
  /** The stage that counts as booted (default `os_login`). */
  until: z.enum(["firmware_login", "os_login"]).optional(),
});
export type WaitForBootInput = z.input<typeof WaitInput>;

const WaitOptions = z.strictObject({
  signal: z.instanceof(AbortSignal).optional(),
  /** Give up after this long (default 10 minutes), measured on the clock. */
  timeoutMs: z.number().int().min(1).max(86_400_000).optional(),
  /** Polling starts this often and backs off (with jitter) to `maxDelayMs`; reset by each new stage. */
  minDelayMs: z.number().int().min(1).max(60_000).optional(),
  maxDelayMs: z.number().int().min(1).max(300_000).optional(),
});
export type WaitForBootOptions = z.input<typeof WaitOptions>;

/**
 * Waits until a provisioned node has booted from its disk. Sessions that exist when the wait
 * begins belong to an earlier boot and are ignored, so start it right after powering the node
 * (`provision({ power, wait })` does). Never throws for the outcome: read `state`.
 */
export async function waitForBoot(
  ctx: BmiContext,
  input: WaitForBootInput,
  options: WaitForBootOptions = {},
): Promise<BootWaitResult> {
  return (await prepareBootWait(ctx, input, options)).wait();
}

/**
 * Checks everything and takes the baseline of sessions now; `wait()` then watches. Lets
 * `provision({ power, wait })` power the node between the two, so no stage can be missed.
 */
export async function prepareBootWait(
  ctx: BmiContext,
  input: WaitForBootInput,
  options: WaitForBootOptions = {},
): Promise<{ wait: () => Promise<BootWaitResult> }> {
  const args = parseInput(WaitInput, input, "input");
  const opts = parseInput(WaitOptions, options, "options");
  const record = await requireProvisioned(ctx, args.project, args.node);
  const sessionsOf = requireSessions(ctx.drivers.export);
  await ctx.drivers.isolation.authorize(args.project, args.node, { signal: opts.signal });
  const baseline = maxId(await sessionsOf(record.target.name));
  return {
    wait: () => watchBoot(ctx, record, args.until ?? "os_login", baseline, sessionsOf, opts),
  };
}

async function watchBoot(
  ctx: BmiContext,
  record: Provisioning,
  until: BootStage,
  baseline: number,
  sessionsOf: SessionsOf,
  opts: z.output<typeof WaitOptions>,
): Promise<BootWaitResult> {
  const watch = createWatch(ctx, record, until);
  const timeoutMs = opts.timeoutMs ?? 600_000;
  const minDelay = opts.minDelayMs ?? 250;
  const maxDelay = Math.max(minDelay, opts.maxDelayMs ?? 5_000);
  for (let delay = minDelay; ; ) {
    if (opts.signal?.aborted) return watch.end("ABORTED", "cancelled by the caller");
    const before = watch.stages.length;
    let failure: string | undefined;
    try {
      failure = await watch.observe(baseline, sessionsOf);
    } catch (error) {
      if (opts.signal?.aborted) return watch.end("ABORTED", "cancelled by the caller");
      throw error;
    }
    if (failure) return watch.end("FAILURE", failure);
    if (watch.done()) return watch.end("SUCCESS");
    if (watch.elapsed() >= timeoutMs) return watch.end("TIMEOUT", watch.stuck());
    delay = watch.stages.length > before ? minDelay : Math.min(maxDelay, delay * 2);
    const pause = Math.min(delay / 2 + Math.random() * (delay / 2), timeoutMs - watch.elapsed());
    await sleep(Math.max(pause, 0), undefined, { signal: opts.signal }).catch(() => {});
  }
}

async function requireProvisioned(ctx: BmiContext, project: string, node: string): Promise<Provisioning> {
  const record = await ctx.store.provisionings.get(node);
  if (!record) throw new BmiError("not_found", `node ${node} is not provisioned`, { subsystem: "store" });
  if (record.project !== project) {
    throw new BmiError("forbidden", `node ${node} is not provisioned by project ${project}`);
  }
  return record;
}

type SessionsOf = (target: string) => Promise<InitiatorSession[]>;

function requireSessions(exporter: ExportDriver): SessionsOf {
  const { sessions } = exporter;
  if (!sessions) {
    throw new BmiError(
      "unsupported",
      `export driver ${exporter.name} cannot list initiator sessions, so BMI cannot see a node boot`,
      { subsystem: "export" },
    );
  }
  return (target) => sessions.call(exporter, target);
}

const maxId = (sessions: InitiatorSession[]) => sessions.reduce((max, s) => Math.max(max, s.id), 0);

/** The stages seen so far, and how to look for the next ones. */
function createWatch(ctx: BmiContext, record: Provisioning, until: BootStage) {
  const started = performance.now();
  const stages: { stage: BootStage; atMs: number }[] = [];
  const elapsed = () => Math.round(performance.now() - started);
  const seen = (stage: BootStage) => stages.some((s) => s.stage === stage);
  const mark = (stage: BootStage) => {
    if (seen(stage)) return;
    const atMs = elapsed();
    stages.push({ stage, atMs });
    ctx.events.emit({ type: "boot:stage", node: record.node, stage, atMs });
  };
  const firmware = createFirmwareSession(elapsed);

  return {
    stages,
    elapsed,
    done: () => seen(until),
    /** One look at the BMC and the target; returns why the boot failed, if it did. */
    async observe(baseline: number, sessionsOf: SessionsOf): Promise<string | undefined> {
      const { power } = ctx.drivers;
      if (power) {
        const state = await power.powerState(record.node).catch((e: unknown) => {
          if (isBmiError(e) && e.retryable) return "unknown" as const; // a BMC hiccup: look again
          throw e;
        });
        if (state === "on") mark("powered_on");
        if (state === "off" && seen("powered_on")) return `node ${record.node} powered off while booting`;
      }
      const fresh = (await sessionsOf(record.target.name)).filter((s) => s.id > baseline);
      const kind = firmware.observe(fresh);
      if (kind !== "none") {
        if (power) mark("powered_on"); // it logged in, so it was on even if the poll missed it
        mark("firmware_login");
      }
      if (kind === "os") mark("os_login");
      return undefined;
    },
    /** For a timeout: the last stage seen and how long the wait has been there. */
    stuck(): string {
      const last = stages.at(-1);
      const expected = BOOT_STAGES.filter((stage) => ctx.drivers.power || stage !== "powered_on");
      const next = expected[last ? expected.indexOf(last.stage) + 1 : 0] ?? until;
      const where = last ? `after ${last.stage} (${elapsed() - last.atMs} ms there)` : "before any stage";
      return `node ${record.node} did not reach ${next}: stopped ${where}`;
    },
    end(state: BootWaitResult["state"], reason?: string): BootWaitResult {
      return {
        state,
        node: record.node,
        stages: [...stages],
        ...(reason ? { reason } : {}),
        durationMs: elapsed(),
      };
    },
  };
}

/**
 * How long the firmware's session must have been seen open before a session replacing it counts
 * as the OS's. iPXE under BIOS logs in twice: `sanboot` registers the disk through a session it
 * closes at once (replaced after 0.3 s in the lab, on a loaded host), then opens the one the boot
 * loader reads through.
 */
const FIRMWARE_SETTLE_MS = 1000;

/**
 * Tells the firmware's sessions from the OS's, one poll of the target's fresh sessions at a time.
 * Both log in with the same initiator name from the same address (the OS reads them from the
 * iBFT), so a session newer than the firmware's is the OS's when:
 * - it has another InitiatorAlias (another program: iPXE sends none, open-iscsi its host name);
 * - it joins the firmware's open session (BIOS: iPXE never logs out; its session stays until the
 *   OS's NIC resets);
 * - with no aliases to compare, it replaces a firmware session seen gone in an earlier poll or
 *   open for {@link FIRMWARE_SETTLE_MS} (UEFI: iPXE's session ends at ExitBootServices).
 * Otherwise it is the firmware reopening its disk: at once under BIOS, and in the lab under UEFI
 * too, after a minute's stall on a loaded host (the same alias, the target idle in between).
 */
function createFirmwareSession(elapsed: () => number) {
  type Followed = { id: number; alias?: string | null; since: number; settled: boolean; gone: boolean };
  let current: Followed | undefined;
  let os = false;
  const follow = ({ id, alias }: InitiatorSession) => {
    current = { id, alias, since: elapsed(), settled: false, gone: false };
  };
  const isOs = (firmware: Followed, newer: InitiatorSession[], open: boolean) => {
    const known = firmware.alias !== undefined && newer.every((s) => s.alias !== undefined);
    if (known && newer.some((s) => s.alias !== firmware.alias)) return true;
    if (open) return true;
    return !known && (firmware.settled || firmware.gone);
  };
  return {
    observe(fresh: InitiatorSession[]): "none" | "firmware" | "os" {
      if (!current) {
        if (!fresh[0]) return "none";
        follow(fresh[0]);
      }
      const firmware = current as Followed;
      const open = fresh.some((s) => s.id === firmware.id);
      const newer = fresh.filter((s) => s.id > firmware.id);
      const newest = newer.at(-1);
      if (os || (newest && isOs(firmware, newer, open))) os = true;
      else if (newest) follow(newest);
      else if (!open) firmware.gone = true;
      else if (elapsed() - firmware.since >= FIRMWARE_SETTLE_MS) firmware.settled = true;
      return os ? "os" : "firmware";
    },
  };
}
