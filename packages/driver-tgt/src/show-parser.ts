/** One logical unit as `tgtadm --op show` prints it. */
export interface TgtLun {
  lun: number;
  type: string;
  /** Approximate size in bytes, from tgt's rounded "Size: N MB". */
  sizeBytes: number | null;
  /** `rdwr` for files, `rbd`, `null` for LUN 0 (the controller), ... */
  backingType: string;
  /** A file path, `pool/image` for rbd, or null for `None`. */
  backingPath: string | null;
}

/** One logged-in initiator (an I_T nexus). */
export interface TgtSession {
  nexus: number;
  initiator: string;
  /** The InitiatorAlias it sent (tgt prints `none` for none); absent if tgt did not print one. */
  alias?: string | null;
  addresses: string[];
}

export interface TgtTarget {
  tid: number;
  /** The whole name after `Target <tid>: `: IQNs keep every ':' (COR-7). */
  name: string;
  sessions: TgtSession[];
  luns: TgtLun[];
  /** Incoming CHAP users bound to the target. */
  accounts: string[];
  outgoingAccounts: string[];
  /** ACL entries as tgt prints them: addresses, `ALL`, and initiator names, in one list. */
  acl: string[];
}

type Section = "none" | "system" | "nexus" | "lun" | "account" | "acl";

const SECTIONS: Record<string, Section> = {
  "System information:": "system",
  "I_T nexus information:": "nexus",
  "LUN information:": "lun",
  "Account information:": "account",
  "ACL information:": "acl",
};

// tgt prints sizes in decimal units, rounded (a 16 MiB image shows as "17 MB").
const SIZE_UNITS: Record<string, number> = { B: 1, KB: 1e3, MB: 1e6, GB: 1e9, TB: 1e12 };

/** Whether an ACL entry is an initiator name rather than an address (tgt keeps both in one list). */
export function isInitiatorName(entry: string): boolean {
  return /^(iqn\.|eui\.|naa\.)/i.test(entry);
}

/**
 * Parses `tgtadm --lld iscsi --mode target --op show`. Unknown lines are ignored so a newer tgt
 * that prints more does not break us; a target line without a tid is an error of the caller's.
 */
export function parseTargets(output: string): TgtTarget[] {
  const targets: TgtTarget[] = [];
  let target: TgtTarget | undefined;
  let section: Section = "none";
  let lun: TgtLun | undefined;
  let session: TgtSession | undefined;

  for (const raw of output.split("\n")) {
    const line = raw.trimEnd();
    if (line.length === 0) continue;
    const header = /^Target (\d+): (.*)$/.exec(line);
    if (header) {
      target = {
        tid: Number(header[1]),
        name: header[2] as string,
        sessions: [],
        luns: [],
        accounts: [],
        outgoingAccounts: [],
        acl: [],
      };
      targets.push(target);
      section = "none";
      lun = undefined;
      session = undefined;
      continue;
    }
    if (!target) continue;
    const text = line.trim();
    const next = SECTIONS[text];
    if (next && /^ {4}\S/.test(line)) {
      section = next;
      continue;
    }
    switch (section) {
      case "nexus": {
        const nexus = /^I_T nexus: (\d+)$/.exec(text);
        if (nexus) {
          session = { nexus: Number(nexus[1]), initiator: "", addresses: [] };
          target.sessions.push(session);
          break;
        }
        const initiator = /^Initiator: (\S+)(?: alias: (.*))?$/.exec(text);
        if (initiator && session) {
          session.initiator = initiator[1] as string;
          const alias = initiator[2];
          if (alias !== undefined) session.alias = alias === "none" ? null : alias;
        }
        const address = /^IP Address: (\S+)$/.exec(text);
        if (address && session) session.addresses.push(address[1] as string);
        break;
      }
      case "lun": {
        const start = /^LUN: (\d+)$/.exec(text);
        if (start) {
          lun = { lun: Number(start[1]), type: "", sizeBytes: null, backingType: "", backingPath: null };
          target.luns.push(lun);
          break;
        }
        if (!lun) break;
        const field = /^([A-Za-z -]+): ?(.*)$/.exec(text);
        if (!field) break;
        const [, key, value = ""] = field;
        if (key === "Type") lun.type = value;
        else if (key === "Size") {
          const size = /^(\d+) ([KMGT]?B)/.exec(value);
          if (size) lun.sizeBytes = Number(size[1]) * (SIZE_UNITS[size[2] as string] ?? 1);
        } else if (key === "Backing store type") lun.backingType = value;
        else if (key === "Backing store path") lun.backingPath = value === "None" ? null : value;
        break;
      }
      case "account": {
        const outgoing = /^(\S+) \(outgoing\)$/.exec(text);
        if (outgoing) target.outgoingAccounts.push(outgoing[1] as string);
        else target.accounts.push(text);
        break;
      }
      case "acl":
        target.acl.push(text);
        break;
      default:
        break;
    }
  }
  return targets;
}
