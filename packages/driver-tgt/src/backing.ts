import type { Backing, ExportAccess, ExportedTarget } from "@bmi/core";
import type { TgtTarget } from "./show-parser.js";
import { LUN, type TgtConfig } from "./tgt-options.js";

/** tgtadm's `logicalunit new` arguments for a backing (rbd: the configured conf / id as defaults). */
export function backingArgs(backing: Backing, defaults: TgtConfig["rbd"]): string[] {
  if (backing.kind === "file") return ["--bstype", "rdwr", "--backing-store", backing.path];
  if (backing.kind !== "rbd") throw new Error(`unreachable backing kind ${backing.kind}`);
  const conf = backing.conf ?? defaults?.conf;
  const id = backing.clientId ?? defaults?.clientId;
  const bsopts = [conf && `conf=${conf}`, id && `id=${id}`].filter(Boolean).join(";");
  return [
    "--bstype",
    "rbd",
    "--backing-store",
    `${backing.pool}/${backing.image}`,
    ...(bsopts ? ["--bsopts", bsopts] : []),
  ];
}

/** What the daemon can tell about a backing: rbd loses conf and id (tgt does not show bsopts). */
export const reportedBacking = (backing: Backing): Backing =>
  backing.kind === "rbd" ? { kind: "rbd", pool: backing.pool, image: backing.image } : backing;

/** The backing of a target's LUN 1, or undefined when it has none (not ours, or half-made). */
export function backingOf(target: TgtTarget): Backing | undefined {
  const lun = target.luns.find((l) => l.lun === LUN);
  if (!lun?.backingPath) return undefined;
  if (lun.backingType === "rbd") {
    const slash = lun.backingPath.indexOf("/");
    return { kind: "rbd", pool: lun.backingPath.slice(0, slash), image: lun.backingPath.slice(slash + 1) };
  }
  return { kind: "file", path: lun.backingPath };
}

/** A target as the port reports it: served at the configured portal, as LUN 1, with its ACL. */
export const exportedTarget = (
  config: TgtConfig,
  target: string,
  backing: Backing,
  sessions: number,
  initiators: ExportAccess["initiators"],
): ExportedTarget => ({
  target,
  portal: config.portal,
  port: config.port,
  lun: LUN,
  backing,
  sessions,
  initiators,
});
