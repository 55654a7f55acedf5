/** Which requests a fault applies to. */
export type RouteMatcher =
  /** `"GET /v0/node/n1"` (exact method and path) or `"/v0/node/n1"` (any method). */
  | string
  /** Tested against `"<METHOD> <path>"`, e.g. `/^POST \/v0\/node\/[^/]+\/nic\/[^/]+\/connect_network$/`. */
  | RegExp
  | ((request: { method: string; path: string }) => boolean);

export interface FaultRule {
  match?: RouteMatcher;
  /** How many matching requests it affects; default 1. `Infinity` for all. */
  times?: number;
}

interface ActiveRule<T> {
  match: RouteMatcher | undefined;
  left: number;
  value: T;
}

export interface StatusFault {
  status: number;
  /** A JSON error body `{type, msg}`, or raw text (HTML); default: a body like HIL's for the status. */
  body?: { type: string; msg: string } | string;
}

export interface NextActionFault {
  /** `error`: the action ends in ERROR (nothing changes); `hold`: it stays PENDING until released. */
  outcome: "error" | "hold";
  node?: string;
  nic?: string;
  times?: number;
}

/** Knobs to make the server misbehave, for testing clients. Each rule is used up by matching requests. */
export interface HilFaults {
  /** Answer matching requests with this status instead of handling them. */
  status(rule: FaultRule & StatusFault): void;
  /** Wait this long before handling matching requests. */
  delay(rule: FaultRule & { ms: number }): void;
  /** Destroy the connection without answering (the client sees a network error). */
  drop(rule?: FaultRule): void;
  /** Make the next networking action(s) end in ERROR or stay PENDING. */
  nextAction(fault: NextActionFault): void;
  /** Removes every rule. */
  clear(): void;
  /** How many requests the server has seen, per `"<METHOD> <path>"`. */
  readonly requests: ReadonlyMap<string, number>;
}

export interface FaultEngine extends HilFaults {
  take(method: string, path: string): { status?: StatusFault; delayMs: number; drop: boolean };
  takeActionOutcome(node: string, nic: string): "done" | "error" | "hold";
  count(method: string, path: string): void;
}

function matches(matcher: RouteMatcher | undefined, method: string, path: string): boolean {
  if (matcher === undefined) return true;
  const line = `${method} ${path}`;
  if (typeof matcher === "string") return matcher.startsWith("/") ? matcher === path : matcher === line;
  if (matcher instanceof RegExp) return matcher.test(line);
  return matcher({ method, path });
}

function takeFirst<T>(rules: ActiveRule<T>[], method: string, path: string): T | undefined {
  const index = rules.findIndex((r) => matches(r.match, method, path));
  if (index < 0) return undefined;
  const rule = rules[index] as ActiveRule<T>;
  rule.left -= 1;
  if (rule.left <= 0) rules.splice(index, 1);
  return rule.value;
}

export function createFaultEngine(): FaultEngine {
  const statuses: ActiveRule<StatusFault>[] = [];
  const delays: ActiveRule<number>[] = [];
  const drops: ActiveRule<true>[] = [];
  const actions: (NextActionFault & { left: number })[] = [];
  const requests = new Map<string, number>();

  return {
    status(rule) {
      statuses.push({
        match: rule.match,
        left: rule.times ?? 1,
        value: { status: rule.status, body: rule.body },
      });
    },
    delay(rule) {
      delays.push({ match: rule.match, left: rule.times ?? 1, value: rule.ms });
    },
    drop(rule = {}) {
      drops.push({ match: rule.match, left: rule.times ?? 1, value: true });
    },
    nextAction(fault) {
      actions.push({ ...fault, left: fault.times ?? 1 });
    },
    clear() {
      statuses.length = 0;
      delays.length = 0;
      drops.length = 0;
      actions.length = 0;
    },
    requests,
    count(method, path) {
      const key = `${method} ${path}`;
      requests.set(key, (requests.get(key) ?? 0) + 1);
    },
    take(method, path) {
      return {
        delayMs: takeFirst(delays, method, path) ?? 0,
        drop: takeFirst(drops, method, path) === true,
        status: takeFirst(statuses, method, path),
      };
    },
    takeActionOutcome(node, nic) {
      const index = actions.findIndex(
        (a) => (a.node === undefined || a.node === node) && (a.nic === undefined || a.nic === nic),
      );
      const fault = actions[index];
      if (!fault) return "done";
      fault.left -= 1;
      if (fault.left <= 0) actions.splice(index, 1);
      return fault.outcome;
    },
  };
}
