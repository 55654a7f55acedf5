import type { BmiEvent, BootStage } from "@bmi/core";
import type { BmiLab } from "@bmi/lab";

/**
 * When each boot stage really happened, as the node shows it, next to when BMI's waiter reported
 * it (`boot:stage` events): the lab's BMC log for power, the serial console for the rest.
 * Console lines are polled every 100 ms, so a "truth" is late by up to that much.
 */
export interface StageTiming {
  stage: BootStage | "ready_line";
  /** From the provision call to the waiter's event (absent for the ready line: no waiter sees it). */
  reportedMs?: number;
  /** From the provision call to the node's own evidence of the stage. */
  happenedMs?: number;
  /** reportedMs - happenedMs: how long the waiter took to notice. */
  noticeMs?: number;
}

/** Console lines that show a stage on the node itself. */
export const STAGE_LINES = {
  // iPXE prints this once its iSCSI login and first read of the disk succeeded.
  firmware_login: /Registered SAN device 0x80/,
  // The kernel prints this when the initramfs's iscsistart creates its session (from the iBFT).
  os_login: /scsi host\d+: iSCSI Initiator over TCP\/IP/,
};

/** Starts watching `node` from now: call right before the provision call. */
export async function watchStages(
  lab: BmiLab,
  node: string,
  lines: Partial<Record<StageTiming["stage"], RegExp>>,
) {
  const t0 = Date.now();
  const from = await lab.console(node).mark();
  const events = new Map<BootStage, number>();
  const off = lab.bmi.on((event: BmiEvent) => {
    if (event.type === "boot:stage" && event.node === node && !events.has(event.stage))
      events.set(event.stage, Date.now());
  });
  const stop = new AbortController();
  const seen = new Map<string, number>();
  const watchers = Object.entries(lines).map(([stage, pattern]) =>
    lab
      .console(node)
      .waitFor(pattern, { from, timeoutMs: 3_600_000, signal: stop.signal })
      .then(
        ({ seenAt }) => seen.set(stage, seenAt),
        () => undefined,
      ),
  );
  return {
    /** Stops watching; the stages in order, each with what was measured. */
    async report(): Promise<StageTiming[]> {
      off();
      stop.abort();
      await Promise.all(watchers);
      const power = lab.powerHistory(node).find((e) => e.at >= t0 && e.event !== "stop");
      if (power) seen.set("powered_on", power.at);
      const order: StageTiming["stage"][] = ["powered_on", "firmware_login", "os_login", "ready_line"];
      return order.flatMap((stage) => {
        const reported = stage === "ready_line" ? undefined : events.get(stage);
        const happened = seen.get(stage);
        if (reported === undefined && happened === undefined) return [];
        return [
          {
            stage,
            ...(reported === undefined ? {} : { reportedMs: reported - t0 }),
            ...(happened === undefined ? {} : { happenedMs: happened - t0 }),
            ...(reported === undefined || happened === undefined ? {} : { noticeMs: reported - happened }),
          },
        ];
      });
    },
  };
}

export const formatTimings = (label: string, timings: StageTiming[]): string =>
  `${label}:\n${timings
    .map(
      (t) =>
        `  ${t.stage.padEnd(15)} node ${t.happenedMs ?? "-"} ms, waiter ${t.reportedMs ?? "-"} ms` +
        `${t.noticeMs === undefined ? "" : ` (noticed after ${t.noticeMs} ms)`}`,
    )
    .join("\n")}`;
