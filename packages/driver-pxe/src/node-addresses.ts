import { mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { type AddressRange, addressesIn, BmiError } from "@bmi/core";

/**
 * Claim files of fixed node addresses: `.addr-<ip>` in the dnsmasq hosts dir (a dotfile, which
 * dnsmasq skips), holding the node's name. Created with O_EXCL, so two BMI processes sharing the
 * directory never hand one address to two nodes; a node keeps its claim until its boot files go.
 */
export const CLAIM_PREFIX = ".addr-";

export interface AddressBook {
  /** Every claimed address and its node. */
  claims(): Promise<Map<string, string>>;
  /** The node's address: the one it claimed, else the lowest free one (claimed now). */
  claim(node: string): Promise<string>;
  /** Drops the node's claims (its address may go to the next node). */
  release(node: string): Promise<void>;
}

const isTaken = (error: unknown) => (error as NodeJS.ErrnoException).code === "EEXIST";

/** The address book of `range` kept in the (absolute) directory `dir`. */
export function createAddressBook(dir: string, range: AddressRange): AddressBook {
  const fileOf = (address: string) => join(dir, `${CLAIM_PREFIX}${address}`);

  const claims = async (): Promise<Map<string, string>> => {
    const names = await readdir(dir).catch((error: NodeJS.ErrnoException) => {
      if (error.code === "ENOENT") return [] as string[];
      throw error;
    });
    const out = new Map<string, string>();
    for (const name of names.filter((n) => n.startsWith(CLAIM_PREFIX))) {
      const node = await readFile(join(dir, name), "utf8").catch(() => null);
      if (node !== null) out.set(name.slice(CLAIM_PREFIX.length), node.trim());
    }
    return out;
  };

  return {
    claims,

    async claim(node) {
      await mkdir(dir, { recursive: true });
      const taken = await claims();
      const own = [...taken].find(([, owner]) => owner === node);
      if (own) return own[0];
      for (const address of addressesIn(range)) {
        if (taken.has(address)) continue;
        try {
          await writeFile(fileOf(address), `${node}\n`, { flag: "wx", mode: 0o644 });
          return address;
        } catch (error) {
          // Another process took it between our listing and now: try the next one.
          if (!isTaken(error)) throw error;
        }
      }
      throw new BmiError(
        "unavailable",
        `no free node address left in ${range.first}-${range.last} for node ${node}`,
        { subsystem: "boot", retryable: false, details: { node, range: `${range.first}-${range.last}` } },
      );
    },

    async release(node) {
      for (const [address, owner] of await claims()) {
        if (owner === node) await rm(fileOf(address), { force: true });
      }
    },
  };
}
